package stage

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

// forwardCmd is `stage forward --listen LOCAL=TARGET… -- CMD ARGS…`: it
// accepts connections on each LOCAL address and relays them to TARGET
// while CMD runs, and exits with CMD's status.
//
// The module uses it to make a service on the caller's host, bound into
// the container under an alias (registry:5000), answer at the loopback
// address the caller knows it by (127.0.0.1:5000). Repositories in a spec,
// image references and a kubeconfig's server then work unchanged inside
// the container, and what the command records (the deployed image, the
// promotion's repositories) names the caller's address, not the alias.
func forwardCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("forward", flag.ContinueOnError)
	var routes []route
	fs.Func("listen", "LOCAL=TARGET: relay connections to LOCAL to TARGET (repeatable)", func(s string) error {
		local, target, ok := strings.Cut(s, "=")
		if !ok || local == "" || target == "" {
			return fmt.Errorf("--listen %q: want LOCAL=TARGET", s)
		}
		routes = append(routes, route{local, target})
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no command to run after the flags (stage forward --listen LOCAL=TARGET -- CMD ARGS…)")
	}
	for _, r := range routes {
		ln, err := net.Listen("tcp", r.local)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", r.local, err)
		}
		defer ln.Close()
		go relayAll(ln, r.target)
	}
	cmd := exec.CommandContext(ctx, fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

type route struct{ local, target string }

// relayAll relays every connection ln accepts to target, until ln closes.
func relayAll(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go relay(c, target)
	}
}

// relay copies c to a new connection to target and back, passing each
// side's end of stream on to the other.
func relay(c net.Conn, target string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", target, 30*time.Second)
	if err != nil {
		// The client sees its connection closed; say why on stderr.
		fmt.Fprintf(os.Stderr, "stage forward: %s: %v\n", target, err)
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(up, c)
		closeWrite(up)
		close(done)
	}()
	io.Copy(c, up)
	closeWrite(c)
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
