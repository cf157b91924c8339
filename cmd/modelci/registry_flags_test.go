package main

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/stages/oci"
)

// Every command with registry flags has them all, from registryOptions:
// the timeout and the chunk size too.
func TestRegistryFlagsEverywhere(t *testing.T) {
	var walk func(c *cobra.Command)
	seen := map[string]bool{}
	walk = func(c *cobra.Command) {
		if c.Flags().Lookup("registry-username") != nil {
			seen[c.CommandPath()] = true
			for _, f := range []string{"registry-timeout", "registry-chunk-size", "insecure-registry", "registry-password-stdin"} {
				if c.Flags().Lookup(f) == nil {
					t.Errorf("%s has --registry-username but not --%s", c.CommandPath(), f)
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	for _, want := range []string{"modelci run", "modelci copy", "modelci sign", "modelci verify", "modelci deploy", "modelci promote"} {
		if !seen[want] {
			t.Errorf("%s has no registry flags", want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1048576", 1 << 20, true},
		{"16MiB", 16 << 20, true},
		{"16mib", 16 << 20, true},
		{"16M", 16 << 20, true},
		{"5MB", 5_000_000, true},
		{"100 KB", 100_000, true},
		{"2GiB", 2 << 30, true},
		{"512B", 512, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5MiB", 0, false},
		{"16XB", 0, false},
		{"99999999999GiB", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if got := formatSize(oci.DefaultChunkSize); got != "16MiB" {
		t.Errorf("formatSize(default) = %q", got)
	}
}

// The flags become oci.Access: the timeout sets the waits, the chunk size
// the uploads (0: one request per blob); bad values are usage errors.
func TestRegistryFlagsAccess(t *testing.T) {
	for _, tc := range []struct {
		args              []string
		first, idle, conn time.Duration
		chunk             int64
		usage             bool
	}{
		{nil, oci.DefaultFirstByteTimeout, oci.DefaultIdleTimeout, oci.DefaultConnectTimeout, oci.DefaultChunkSize, false},
		{[]string{"--registry-timeout", "5s", "--registry-chunk-size", "5MB"}, 5 * time.Second, 5 * time.Second, 5 * time.Second, 5_000_000, false},
		{[]string{"--registry-timeout", "10m"}, 10 * time.Minute, 10 * time.Minute, oci.DefaultConnectTimeout, oci.DefaultChunkSize, false},
		{[]string{"--registry-chunk-size", "0"}, oci.DefaultFirstByteTimeout, oci.DefaultIdleTimeout, oci.DefaultConnectTimeout, 0, false},
		{[]string{"--registry-timeout", "0s"}, 0, 0, 0, 0, true},
		{[]string{"--registry-chunk-size", "lots"}, 0, 0, 0, 0, true},
	} {
		var o registryOptions
		cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
		o.AddFlags(cmd)
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		a, err := o.Access(cmd)
		if tc.usage {
			if regCode(err) != exitUsage {
				t.Errorf("%v: err = %v (exit %d), want a usage error", tc.args, err, regCode(err))
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		conn, first, idle := a.Timeouts()
		if conn != tc.conn || first != tc.first || idle != tc.idle || a.Chunk() != tc.chunk {
			t.Errorf("%v: waits %v %v %v, chunk %d; want %v %v %v, %d", tc.args, conn, first, idle, a.Chunk(), tc.conn, tc.first, tc.idle, tc.chunk)
		}
	}
}

// modelci copy from a registry that accepts connections and never answers
// fails with a named timeout after --registry-timeout, exit 1.
func TestCopyRegistryTimeout(t *testing.T) {
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
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	silent := ln.Addr().String()
	_, err = regRun(context.Background(), "", "copy", silent+"/m:1.0.0", "oci-layout://"+t.TempDir(), "--registry-timeout", "1s")
	if regCode(err) != exitFailed || !errors.Is(err, oci.ErrTimeout) {
		t.Fatalf("copy from a silent registry: %v (exit %d), want oci.ErrTimeout, exit 1", err, regCode(err))
	}
	t.Logf("error: %v", err)
}
