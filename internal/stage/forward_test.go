package stage

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// echo serves one connection at a time, writing back what it reads in
// upper case until the client closes its side.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			c.Write([]byte(strings.ToUpper(string(b))))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func TestRelay(t *testing.T) {
	target := echo(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go relayAll(ln, target)

	// Two connections in turn: the relay serves more than one, and passes
	// the client's end of stream on (the echo answers only after it).
	for _, msg := range []string{"ping", "registry"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ToUpper(msg); string(got) != want {
			t.Errorf("through the relay: %q, want %q", got, want)
		}
	}
}

func TestForwardCmd(t *testing.T) {
	target := echo(t)
	// A free port for LOCAL, released for forward to take.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := probe.Addr().String()
	probe.Close()

	t.Setenv(clientEnv, local)
	tests := []struct {
		name     string
		args     []string
		wantExit int // -1: an error that is not the command's exit status
	}{
		// The command is this test binary, asking LOCAL as a client would.
		{"the command reaches TARGET at LOCAL", []string{"--listen", local + "=" + target, "--", os.Args[0], "-test.run=^TestForwardClient$"}, 0},
		{"the command's exit status", []string{"--listen", local + "=" + target, "--", "sh", "-c", "exit 3"}, 3},
		{"no command", []string{"--listen", local + "=" + target}, -1},
		{"malformed route", []string{"--listen", local, "--", "true"}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := forwardCmd(context.Background(), tt.args)
			var exit *exec.ExitError
			switch {
			case tt.wantExit == 0 && err != nil:
				t.Fatalf("forward: %v", err)
			case tt.wantExit > 0 && (!errors.As(err, &exit) || exit.ExitCode() != tt.wantExit):
				t.Fatalf("forward: %v, want exit status %d", err, tt.wantExit)
			case tt.wantExit < 0 && (err == nil || errors.As(err, &exit)):
				t.Fatalf("forward: %v, want a usage error", err)
			}
		})
	}
}

// clientEnv names the address TestForwardClient asks; unset, it skips.
const clientEnv = "STAGE_FORWARD_TEST_CLIENT"

// TestForwardClient is TestForwardCmd's command: it fails unless the
// address in clientEnv answers like the echo server.
func TestForwardClient(t *testing.T) {
	addr := os.Getenv(clientEnv)
	if addr == "" {
		t.Skip("run by TestForwardCmd")
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("model"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "MODEL" {
		t.Fatalf("%s answered %q (%v), want MODEL", addr, got, err)
	}
}
