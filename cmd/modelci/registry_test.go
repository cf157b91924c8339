package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/modelci/modelci/stages/registry"
)

// regRun runs modelci with args in-process and returns stdout and the error.
func regRun(ctx context.Context, stdin string, args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetIn(strings.NewReader(stdin))
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func regCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1
	}
}

// startRegistry runs `modelci registry serve` on a free port and returns
// its address (from the first stderr line) and a stop that returns the
// command's error.
func startRegistry(t *testing.T, root string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cmd := newRootCmd()
	cmd.SetArgs([]string{"registry", "serve", "--addr", "127.0.0.1:0", "--root", root})
	cmd.SetErr(pw)
	errc := make(chan error, 1)
	go func() {
		err := cmd.ExecuteContext(ctx)
		pw.Close()
		errc <- err
	}()
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		cancel()
		t.Fatalf("registry serve: no log line: %v (%v)", err, <-errc)
	}
	go io.Copy(io.Discard, pr)
	var msg struct{ Msg, Addr string }
	if err := json.Unmarshal(line, &msg); err != nil || msg.Msg != "listening" || msg.Addr == "" {
		t.Fatalf("first log line %q: want JSON with msg listening and addr (%v)", line, err)
	}
	stop := func() error { cancel(); return <-errc }
	t.Cleanup(func() { cancel() })
	return msg.Addr, stop
}

func TestRegistryServeAndCopy(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	addr, stop := startRegistry(t, root)
	img, err := random.Image(1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := registry.Push(ctx, img, addr+"/src", registry.WithTags("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}

	out, err := regRun(ctx, "", "copy", addr+"/src:1.0.0", addr+"/dst")
	if err != nil {
		t.Fatal(err)
	}
	if want := addr + "/dst@" + pushed.Digest.String() + "\n"; out != want {
		t.Fatalf("stdout = %q, want %q", out, want)
	}
	other, err := random.Image(1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(ctx, other, addr+"/other", registry.WithTags("1.0.0")); err != nil {
		t.Fatal(err)
	}
	// The version tag is immutable unless --allow-overwrite.
	if _, err := regRun(ctx, "", "copy", addr+"/other:1.0.0", addr+"/dst"); regCode(err) != 1 || !errors.Is(err, registry.ErrTagExists) {
		t.Fatalf("copy over a taken tag: %v (exit %d), want ErrTagExists, exit 1", err, regCode(err))
	}
	if _, err := regRun(ctx, "", "copy", "--allow-overwrite", addr+"/other:1.0.0", addr+"/dst"); err != nil {
		t.Fatal(err)
	}

	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	// Another server on the same root still has it.
	addr2, _ := startRegistry(t, root)
	h, err := registry.Resolve(ctx, addr2+"/dst:1.0.0")
	if err != nil || h != regDigest(t, other) {
		t.Fatalf("after restart dst:1.0.0 = %s, %v; want %s", h, err, regDigest(t, other))
	}
}

func regDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// zeroDigest is a well-formed digest no registry holds.
var zeroDigest = "sha256:" + strings.Repeat("0", 64)

func TestRegistryCommandsUsage(t *testing.T) {
	t.Setenv("MODELCI_KEY_PASSWORD", "unused")
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  int
	}{
		{"copy one argument", "", []string{"copy", "127.0.0.1:1/a:1"}, 2},
		{"copy malformed source", "", []string{"copy", "a:1", "127.0.0.1:1/b"}, 2},
		{"copy malformed destination", "", []string{"copy", "127.0.0.1:1/a:1", "B"}, 2},
		{"username without password", "", []string{"copy", "--registry-username", "u", "127.0.0.1:1/a:1", "127.0.0.1:1/b"}, 2},
		{"password without username", "p", []string{"copy", "--registry-password-stdin", "127.0.0.1:1/a:1", "127.0.0.1:1/b"}, 2},
		{"empty password", "", []string{"copy", "--registry-username", "u", "--registry-password-stdin", "127.0.0.1:1/a:1", "127.0.0.1:1/b"}, 2},
		// Every command that reaches a registry takes the same credential flags.
		{"sign half a credential", "", []string{"sign", "--key", "k", "--registry-username", "u", "127.0.0.1:1/a@" + zeroDigest}, 2},
		{"verify half a credential", "", []string{"verify", "--key", "k.pub", "--registry-username", "u", "127.0.0.1:1/a@" + zeroDigest}, 2},
		{"deploy half a credential", "p", []string{"deploy", "--registry-password-stdin", "--insecure-skip-verify", "-n", "m", "--name", "a", "--version", "1", "127.0.0.1:1/a@" + zeroDigest}, 2},
		{"history half a credential", "", []string{"history", "a", "-n", "m", "--registry-username", "u"}, 2},
		{"unreachable", "", []string{"copy", "127.0.0.1:1/a:1", "127.0.0.1:1/b"}, 1},
		{"serve without root", "", []string{"registry", "serve"}, 2},
		{"serve bad address", "", []string{"registry", "serve", "--root", t.TempDir(), "--addr", "256.0.0.1:0"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := regRun(context.Background(), tc.stdin, tc.args...)
			if got := regCode(err); got != tc.want {
				t.Fatalf("exit %d (%v), want %d", got, err, tc.want)
			}
			if out != "" {
				t.Fatalf("stdout = %q, want nothing on failure", out)
			}
			if strings.Contains(tc.name, "half a credential") && !strings.Contains(err.Error(), "--registry-") {
				t.Fatalf("error %q does not name the credential flags", err)
			}
		})
	}
}
