package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// proxy forwards loopback HTTP to one registry and counts the request
// bodies clients send through it: the bytes a push uploads (blob chunks,
// manifests). With faults > 0 it answers that share of the requests
// itself, drawn in order of arrival from an RNG seeded with seed: it reads
// the request's body in full (counted: the client sent it) and answers
// 503 UNAVAILABLE, as a registry that fails a request after receiving it,
// so that every byte a client sends again shows in the count.
type proxy struct {
	ln     net.Listener
	srv    *http.Server
	faults float64

	mu  sync.Mutex
	rng *rand.Rand

	requests, injected atomic.Int64
	sent, forwarded    atomic.Int64
}

// proxyStats is what the distribution subcommand prints on exit.
type proxyStats struct {
	Requests int64 `json:"requests"`
	Faults   int64 `json:"faults"`     // requests answered 503 by the proxy
	Sent     int64 `json:"sent_bytes"` // request body bytes read from clients, faulted requests' included
	// Forwarded is the part of Sent that went on to the registry.
	Forwarded int64 `json:"forwarded_bytes"`
}

func newProxy(upstream string, faults float64, seed uint64) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, faults: faults, rng: rand.New(rand.NewPCG(seed, 0x6d6f64656c6369))}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream})
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		fault := false
		if p.faults > 0 {
			p.mu.Lock()
			fault = p.rng.Float64() < p.faults
			p.mu.Unlock()
		}
		if fault {
			p.injected.Add(1)
			if r.Body != nil {
				n, _ := io.Copy(io.Discard, r.Body)
				p.sent.Add(n)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected by the bench proxy"}]}`)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = countingBody{r.Body, &p.sent, &p.forwarded}
		}
		rp.ServeHTTP(w, r)
	})}
	go p.srv.Serve(ln)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) Close() error { return p.srv.Close() }

func (p *proxy) stats() proxyStats {
	return proxyStats{
		Requests:  p.requests.Load(),
		Faults:    p.injected.Load(),
		Sent:      p.sent.Load(),
		Forwarded: p.forwarded.Load(),
	}
}

type countingBody struct {
	io.ReadCloser
	sent, forwarded *atomic.Int64
}

func (c countingBody) Read(b []byte) (int, error) {
	k, err := c.ReadCloser.Read(b)
	c.sent.Add(int64(k))
	c.forwarded.Add(int64(k))
	return k, err
}

// distribution runs Debian's docker-registry (distribution 2.8) on a free
// loopback port with its storage under -root, and a proxy in front of it;
// it logs {"msg":"listening","addr":PROXY,"registry":REGISTRY} on stderr
// once both listen, and on SIGTERM or SIGINT stops the registry and prints
// the proxy's proxyStats as one JSON line on stdout.
func distribution(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("distribution", flag.ContinueOnError)
	root := fs.String("root", "", "storage directory of the registry (created)")
	logFile := fs.String("log", "", "docker-registry's log (default ROOT/registry.log)")
	faults := fs.Float64("faults", 0, "share of requests the proxy answers with 503, 0 to 1")
	seed := fs.Uint64("seed", 1, "seed of the fault draws")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *root == "" || fs.NArg() != 0 {
		return errors.New("usage: oci distribution -root DIR [-faults P] [-seed N] [-log FILE]")
	}
	if *faults < 0 || *faults > 1 {
		return fmt.Errorf("-faults %v: want a share from 0 to 1", *faults)
	}
	if *logFile == "" {
		*logFile = filepath.Join(*root, "registry.log")
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()

	// A free port: bound, released, then named in the configuration (the
	// registry takes no port 0). Another process could take it in between;
	// the registry would then fail to start, and so would this command.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	config := "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: " +
		filepath.Join(*root, "data") + "\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: " + addr + "\n"
	cfg := filepath.Join(*root, "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return err
	}
	log, err := os.Create(*logFile)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command("docker-registry", "serve", cfg)
	// The registry dies with this process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	stopRegistry := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}
	// It logs "listening on ADDR" once its socket is bound.
	sc := bufio.NewScanner(out)
	listening := false
	for sc.Scan() {
		fmt.Fprintln(log, sc.Text())
		if strings.Contains(sc.Text(), "listening on") {
			listening = true
			break
		}
	}
	go func() {
		io.Copy(log, out)
		exited <- cmd.Wait()
	}()
	if !listening {
		<-exited
		return fmt.Errorf("docker-registry exited before listening (log: %s)", *logFile)
	}

	p, err := newProxy(addr, *faults, *seed)
	if err != nil {
		stopRegistry()
		return err
	}
	fmt.Fprintf(os.Stderr, "{\"msg\":\"listening\",\"addr\":%q,\"registry\":%q}\n", p.Addr(), addr)
	select {
	case <-ctx.Done():
	case err := <-exited:
		p.Close()
		return fmt.Errorf("docker-registry exited: %v (log: %s)", err, *logFile)
	}
	p.Close()
	stopRegistry()
	return json.NewEncoder(os.Stdout).Encode(p.stats())
}
