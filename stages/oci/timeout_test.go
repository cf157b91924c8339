package oci_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelci/modelci/stages/oci"
)

// blackhole listens on loopback and hands each accepted connection to
// serve, which may stall until done closes at the end of the test.
func blackhole(t *testing.T, serve func(c net.Conn, done <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go serve(c, done)
		}
	}()
	return ln.Addr().String()
}

// readHead reads a request's header block.
func readHead(br *bufio.Reader) (contentLength int64) {
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			return contentLength
		}
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length:"); ok {
			var n int64
			for _, c := range strings.TrimSpace(v) {
				n = n*10 + int64(c-'0')
			}
			contentLength = n
		}
	}
}

// zeros is a request body of n zero bytes, produced as it is read.
type zeros struct{ n int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), z.n)
	clear(p[:k])
	z.n -= k
	return int(k), nil
}

// slowProducer is a request body whose caller takes longer than the idle
// wait to produce the second read: the caller's time, not the registry's.
type slowProducer struct {
	reads int
	pause time.Duration
}

func (s *slowProducer) Read(p []byte) (int, error) {
	s.reads++
	switch s.reads {
	case 1:
		return copy(p, "a"), nil
	case 2:
		time.Sleep(s.pause)
		return copy(p, "b"), nil
	}
	return 0, io.EOF
}

func timeoutErr(t *testing.T, err error, phase string) {
	t.Helper()
	if !errors.Is(err, oci.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	var te *oci.TimeoutError
	if !errors.As(err, &te) || te.Phase != phase {
		t.Fatalf("err = %v, want a %q timeout", err, phase)
	}
	if retry := phase == oci.PhaseSend || phase == oci.PhaseReceive; oci.Retryable(err) != retry {
		t.Fatalf("a %s timeout: retryable %v, want %v", phase, !retry, retry)
	}
	t.Logf("error: %v", err)
}

// Each wait, run out by a server (or a dial) that stops answering, fails
// the request with a TimeoutError naming it.
func TestTimeouts(t *testing.T) {
	short := oci.Access{ConnectTimeout: time.Second, FirstByteTimeout: time.Second, IdleTimeout: time.Second}
	ctx := context.Background()

	t.Run("connect", func(t *testing.T) {
		a := short
		// A dial that never completes, as to a host that drops SYNs.
		a.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/v2/", nil)
		_, err := (&http.Client{Transport: a.HTTPTransport()}).Do(req)
		timeoutErr(t, err, oci.PhaseConnect)
	})

	t.Run("first byte", func(t *testing.T) {
		// Accepts, reads the request, never answers.
		addr := blackhole(t, func(c net.Conn, _ <-chan struct{}) { io.Copy(io.Discard, c) })
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		_, err := (&http.Client{Transport: short.HTTPTransport()}).Do(req)
		timeoutErr(t, err, oci.PhaseFirstByte)
	})

	t.Run("request body", func(t *testing.T) {
		// Reads the headers and a little of the body, then stops reading:
		// the client's writes block once the socket buffers are full.
		addr := blackhole(t, func(c net.Conn, done <-chan struct{}) {
			br := bufio.NewReader(c)
			readHead(br)
			io.CopyN(io.Discard, br, 1<<20)
			<-done
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, "http://"+addr+"/v2/m/blobs/uploads/x", &zeros{n: 256 << 20})
		req.ContentLength = 256 << 20
		_, err := (&http.Client{Transport: short.HTTPTransport()}).Do(req)
		timeoutErr(t, err, oci.PhaseSend)
	})

	t.Run("response body", func(t *testing.T) {
		// Takes the whole PATCH, answers its headers and 10 of 1000 body
		// bytes, then stalls.
		addr := blackhole(t, func(c net.Conn, done <-chan struct{}) {
			br := bufio.NewReader(c)
			n := readHead(br)
			io.CopyN(io.Discard, br, n)
			io.WriteString(c, "HTTP/1.1 202 Accepted\r\nContent-Length: 1000\r\nLocation: /v2/m/blobs/uploads/x\r\n\r\n0123456789")
			<-done
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, "http://"+addr+"/v2/m/blobs/uploads/x", strings.NewReader("chunk"))
		resp, err := (&http.Client{Transport: short.HTTPTransport()}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		timeoutErr(t, err, oci.PhaseReceive)
	})
}

// The idle wait counts only the network's time: a caller slower than the
// wait to produce the request body, or to read the response, is not timed
// out.
func TestTimeoutCountsOnlyTheNetwork(t *testing.T) {
	a := oci.Access{IdleTimeout: 200 * time.Millisecond, FirstByteTimeout: time.Minute}
	addr := blackhole(t, func(c net.Conn, _ <-chan struct{}) {
		defer c.Close()
		br := bufio.NewReader(c)
		n := readHead(br)
		io.CopyN(io.Discard, br, n)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/v2/", &slowProducer{pause: time.Second})
	req.ContentLength = 2
	resp, err := (&http.Client{Transport: a.HTTPTransport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	time.Sleep(time.Second) // a slow consumer
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "ok" {
		t.Fatalf("body %q, %v; want ok", b, err)
	}
}

func TestAccessTimeoutsAndChunk(t *testing.T) {
	c, f, i := oci.Access{}.Timeouts()
	if c != oci.DefaultConnectTimeout || f != oci.DefaultFirstByteTimeout || i != oci.DefaultIdleTimeout {
		t.Fatalf("defaults = %v %v %v", c, f, i)
	}
	c, f, i = oci.Access{}.WithTimeout(time.Minute * 5).Timeouts()
	if c != oci.DefaultConnectTimeout || f != 5*time.Minute || i != 5*time.Minute {
		t.Fatalf("WithTimeout(5m) = %v %v %v", c, f, i)
	}
	c, f, i = oci.Access{}.WithTimeout(time.Second).Timeouts()
	if c != time.Second || f != time.Second || i != time.Second {
		t.Fatalf("WithTimeout(1s) = %v %v %v", c, f, i)
	}
	if c, f, i = (oci.Access{ConnectTimeout: -1, FirstByteTimeout: -1, IdleTimeout: -1}).Timeouts(); c != 0 || f != 0 || i != 0 {
		t.Fatalf("negative = %v %v %v, want no limits", c, f, i)
	}
	for _, tc := range []struct{ set, want int64 }{{0, oci.DefaultChunkSize}, {-1, 0}, {5 << 20, 5 << 20}} {
		if got := (oci.Access{ChunkSize: tc.set}).Chunk(); got != tc.want {
			t.Errorf("ChunkSize %d: Chunk() = %d, want %d", tc.set, got, tc.want)
		}
	}
}

func TestBackoffFor(t *testing.T) {
	a := oci.Access{}
	want := []time.Duration{0, time.Second, 1500 * time.Millisecond, 2250 * time.Millisecond}
	for i, w := range want {
		if got := a.BackoffFor(i); got != w {
			t.Errorf("BackoffFor(%d) = %v, want %v", i, got, w)
		}
	}
	if got := a.BackoffFor(100); got != oci.MaxBackoff {
		t.Errorf("BackoffFor(100) = %v, want the cap %v", got, oci.MaxBackoff)
	}
	var total time.Duration
	for i := range oci.DefaultAttempts {
		total += a.BackoffFor(i)
	}
	t.Logf("%d attempts wait %v in all", oci.DefaultAttempts, total)
	if (oci.Access{Backoff: -1}).BackoffFor(3) != 0 {
		t.Error("no backoff still waits")
	}
}

// A timeout among joined errors (a ping's https and http attempts)
// decides, whatever net.Error comes first: a stalled body is retried, no
// answer is not.
func TestRetryableJoinedTimeout(t *testing.T) {
	https := &url.Error{Op: "Get", URL: "https://r/v2/", Err: errors.New("http: server gave HTTP response to HTTPS client")}
	if oci.Retryable(https) {
		t.Fatal("a protocol error is retryable")
	}
	if !oci.Retryable(errors.Join(https, &oci.TimeoutError{Phase: oci.PhaseReceive})) {
		t.Fatal("a stalled body joined after another error is not retryable")
	}
	if oci.Retryable(errors.Join(https, &oci.TimeoutError{Phase: oci.PhaseFirstByte})) {
		t.Fatal("no answer joined after another error is retryable")
	}
}
