package serve_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelci/modelci/serve"
)

func newTestServer(t *testing.T, s *serve.Server) string {
	t.Helper()
	return serveHTTP(t, s)
}

func decodeBody(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return errors.New(resp.Status + ": " + string(b))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// notifyListener reports when the server closes it: the moment shutdown
// stops accepting connections.
type notifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *notifyListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
}

type served struct {
	url    string
	ln     *notifyListener
	cancel context.CancelFunc
	done   chan error
}

func serveOnLoopback(t *testing.T, s *serve.Server) served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nl := &notifyListener{Listener: ln, closed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, nl) }()
	return served{url: "http://" + ln.Addr().String(), ln: nl, cancel: cancel, done: done}
}

type result struct {
	resp *http.Response
	err  error
}

// startSlowPredicts sends n predictions whose bodies the caller writes, and
// returns once every handler is reading its body: the client waits for the
// server's "100 Continue", which Go's server sends on the handler's first read.
func startSlowPredicts(t *testing.T, url string, n int) ([]*io.PipeWriter, chan result) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: time.Hour}}
	t.Cleanup(client.CloseIdleConnections)
	reading := make(chan struct{}, n)
	results := make(chan result, n)
	var writers []*io.PipeWriter
	for range n {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		trace := &httptrace.ClientTrace{Got100Continue: func() { reading <- struct{}{} }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "POST", url+"/predict", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Expect", "100-continue")
		go func() {
			resp, err := client.Do(req)
			results <- result{resp, err}
		}()
	}
	for range n {
		<-reading
	}
	return writers, results
}

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	m := testModel(t)
	var logs bytes.Buffer
	s, err := serve.New(m, serve.WithRegistry(prometheus.NewRegistry()),
		serve.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	srv := serveOnLoopback(t, s)
	const inFlight = 4
	writers, results := startSlowPredicts(t, srv.url, inFlight)

	srv.cancel()
	<-srv.ln.closed
	if c, err := net.Dial("tcp", srv.ln.Addr().String()); err == nil {
		c.Close()
		t.Error("a new connection was accepted after shutdown began")
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: code %d, want 503", rec.Code)
	}

	for i, pw := range writers {
		body := mustJSON(t, map[string]any{"instances": rows[:1+i%len(rows)]})
		// Two writes: the handler has already read part of the body when
		// the rest arrives.
		if _, err := io.WriteString(pw, body[:5]); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(pw, body[5:]); err != nil {
			t.Fatal(err)
		}
		pw.Close()
	}
	var got [][]float64
	for range inFlight {
		r := <-results
		if r.err != nil {
			t.Fatalf("in-flight request lost: %v", r.err)
		}
		var body struct{ Predictions []float64 }
		if err := decodeBody(r.resp, &body); err != nil {
			t.Fatalf("in-flight request: %v", err)
		}
		got = append(got, body.Predictions)
	}
	for i := range inFlight {
		want := predictions(m, rows[:1+i%len(rows)])
		if !slices.ContainsFunc(got, func(g []float64) bool { return slices.Equal(g, want) }) {
			t.Errorf("no response %v among %v", want, got)
		}
	}
	if err := <-srv.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}

	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct{ Msg, Addr string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec.Msg == "listening" && rec.Addr != srv.ln.Addr().String() {
			t.Errorf("listening at %q, want %q", rec.Addr, srv.ln.Addr())
		}
		msgs = append(msgs, rec.Msg)
	}
	if want := []string{"listening", "shutting down", "stopped"}; !slices.Equal(msgs, want) {
		t.Errorf("log messages %q, want %q", msgs, want)
	}
}

func TestShutdownDeadline(t *testing.T) {
	s, err := serve.New(testModel(t), serve.WithRegistry(prometheus.NewRegistry()),
		serve.WithTimeouts(serve.Timeouts{Shutdown: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	srv := serveOnLoopback(t, s)
	writers, results := startSlowPredicts(t, srv.url, 1)
	srv.cancel()
	// The body never comes: the drain must give up.
	if err := <-srv.done; !errors.Is(err, serve.ErrDrainTimeout) {
		t.Errorf("Serve: %v, want ErrDrainTimeout", err)
	}
	writers[0].Close()
	if r := <-results; r.err == nil {
		r.resp.Body.Close()
		t.Errorf("request cut off at the drain deadline got %s", r.resp.Status)
	}
}

func TestListenAndServe(t *testing.T) {
	pr, pw := io.Pipe()
	s, err := serve.New(testModel(t), serve.WithRegistry(prometheus.NewRegistry()),
		serve.WithLogger(slog.New(slog.NewJSONHandler(pw, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0") }()

	// Find the port as a supervisor would: from the "listening" log line.
	lines := bufio.NewScanner(pr)
	if !lines.Scan() {
		t.Fatalf("no log line: %v", lines.Err())
	}
	var first struct{ Msg, Addr string }
	if err := json.Unmarshal(lines.Bytes(), &first); err != nil || first.Msg != "listening" {
		t.Fatalf("first log line %s (%v), want msg listening", lines.Bytes(), err)
	}
	go io.Copy(io.Discard, pr)

	resp, err := http.Get("http://" + first.Addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenAndServe: %v", err)
	}
	pw.Close()
}

func TestListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := serve.New(testModel(t), serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	err = s.ListenAndServe(context.Background(), ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "listen on "+ln.Addr().String()) {
		t.Errorf("listening on a taken port: %v", err)
	}
}
