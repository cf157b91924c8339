package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// ErrTimeout: a registry request ran out of one of its waits (Access's
// ConnectTimeout, FirstByteTimeout, IdleTimeout). The error is a
// *TimeoutError naming the wait, the limit and the request.
var ErrTimeout = errors.New("registry timed out")

// The waits a TimeoutError names.
const (
	PhaseConnect   = "connect"            // no connection within ConnectTimeout
	PhaseSend      = "request body idle"  // the request body stopped moving for IdleTimeout
	PhaseFirstByte = "first byte"         // no response within FirstByteTimeout of the request being sent
	PhaseReceive   = "response body idle" // the response body stopped moving for IdleTimeout
)

// TimeoutError is ErrTimeout for one request: which wait ran out, after how
// long. It is a net.Error whose Timeout is true. Only a stalled body is
// tried again (Retryable): a registry that gives no connection or no
// answer within its wait is not waited for again, so that it fails the
// command after about that wait.
type TimeoutError struct {
	Phase  string
	Limit  time.Duration
	Method string
	URL    string
}

func (e *TimeoutError) Error() string {
	what := map[string]string{
		PhaseConnect:   "no connection",
		PhaseSend:      "the request body stalled",
		PhaseFirstByte: "no response",
		PhaseReceive:   "the response body stalled",
	}[e.Phase]
	if what == "" {
		what = e.Phase
	}
	return fmt.Sprintf("%s %s: %v: %s for %s", e.Method, e.URL, ErrTimeout, what, e.Limit)
}

// Is makes errors.Is(err, ErrTimeout) true.
func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }

// Timeout reports true (net.Error).
func (e *TimeoutError) Timeout() bool { return true }

// Temporary reports whether the request is worth another attempt
// (net.Error): Retryable.
func (e *TimeoutError) Temporary() bool { return e.Retryable() }

// Retryable reports whether the wait that ran out was a stalled body
// (PhaseSend, PhaseReceive), which another attempt (an upload resumed, a
// read again) may get past; a connection or an answer that never came is
// not.
func (e *TimeoutError) Retryable() bool { return e.Phase == PhaseSend || e.Phase == PhaseReceive }

var _ net.Error = (*TimeoutError)(nil)

// timeouts bounds each request's waits: connect (from the start until a
// connection is had), first byte (from the request being written until the
// response headers), and idle (a request or response body that moves no
// byte for that long: time spent by the transport writing, or blocked in a
// read of the response; never time the caller spends producing or
// consuming bytes). A wait that runs out cancels the request, whose error
// becomes a *TimeoutError. A zero or negative duration is no limit.
type timeouts struct {
	inner                    http.RoundTripper
	connect, firstByte, idle time.Duration
}

func (t *timeouts) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.connect <= 0 && t.firstByte <= 0 && t.idle <= 0 {
		return t.inner.RoundTrip(req)
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watch{cancel: cancel, method: req.Method, url: redactURL(req)}
	hasBody := req.Body != nil && req.Body != http.NoBody
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) {
			if hasBody {
				w.arm(sending, t.idle, PhaseSend)
			} else {
				w.arm(sending, t.firstByte, PhaseFirstByte)
			}
		},
		WroteRequest: func(httptrace.WroteRequestInfo) { w.arm(sending, t.firstByte, PhaseFirstByte) },
	})
	r := req.Clone(ctx)
	if hasBody {
		r.Body = &sendBody{ReadCloser: req.Body, w: w, idle: t.idle}
		if req.GetBody != nil {
			r.GetBody = func() (io.ReadCloser, error) {
				b, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				return &sendBody{ReadCloser: b, w: w, idle: t.idle}, nil
			}
		}
	}
	w.arm(sending, t.connect, PhaseConnect)
	resp, err := t.inner.RoundTrip(r)
	w.received()
	if err != nil {
		cancel(nil)
		if te := w.fired(); te != nil {
			return nil, te
		}
		if ne := (net.Error)(nil); errors.As(err, &ne) && ne.Timeout() && req.Context().Err() == nil {
			// The transport's own limits (dial, TLS handshake).
			return nil, &TimeoutError{Phase: PhaseConnect, Limit: t.connect, Method: req.Method, URL: w.url}
		}
		return nil, err
	}
	resp.Body = &recvBody{ReadCloser: resp.Body, w: w, idle: t.idle}
	return resp, nil
}

func redactURL(req *http.Request) string {
	if req.URL == nil {
		return ""
	}
	u := *req.URL
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

const (
	sending   = iota // RoundTrip has not returned
	receiving        // the response body is being read
)

// watch is one request's timer: armed for one wait at a time.
type watch struct {
	cancel      context.CancelCauseFunc
	method, url string

	mu    sync.Mutex
	state int
	timer *time.Timer
	gen   int
	phase string
	limit time.Duration
	out   *TimeoutError // set when a wait ran out
}

// arm starts the wait for phase, replacing any other, when the request is
// in state.
func (w *watch) arm(state int, d time.Duration, phase string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != state || w.out != nil {
		return
	}
	w.disarmLocked()
	if d <= 0 {
		return
	}
	w.gen++
	gen := w.gen
	w.phase, w.limit = phase, d
	w.timer = time.AfterFunc(d, func() {
		w.mu.Lock()
		if w.gen != gen || w.timer == nil || w.out != nil {
			w.mu.Unlock()
			return
		}
		w.out = &TimeoutError{Phase: w.phase, Limit: w.limit, Method: w.method, URL: w.url}
		out := w.out
		w.mu.Unlock()
		w.cancel(out)
	})
}

// pause stops the wait in state (the caller's own time is not the
// registry's).
func (w *watch) pause(state int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state == state {
		w.disarmLocked()
	}
}

func (w *watch) disarmLocked() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
}

// received ends the sending state: RoundTrip returned.
func (w *watch) received() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.disarmLocked()
	w.state = receiving
}

func (w *watch) fired() *TimeoutError {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out
}

// sendBody is the request body: the idle wait runs while the transport is
// writing what it read, and stops while it reads more from the caller.
type sendBody struct {
	io.ReadCloser
	w    *watch
	idle time.Duration
}

func (b *sendBody) Read(p []byte) (int, error) {
	b.w.pause(sending)
	n, err := b.ReadCloser.Read(p)
	b.w.arm(sending, b.idle, PhaseSend)
	return n, err
}

// recvBody is the response body: the idle wait runs while a read blocks.
type recvBody struct {
	io.ReadCloser
	w    *watch
	idle time.Duration
}

func (b *recvBody) Read(p []byte) (int, error) {
	b.w.arm(receiving, b.idle, PhaseReceive)
	n, err := b.ReadCloser.Read(p)
	b.w.pause(receiving)
	if err != nil && err != io.EOF {
		if te := b.w.fired(); te != nil {
			return n, te
		}
	}
	return n, err
}

func (b *recvBody) Close() error {
	b.w.pause(receiving)
	err := b.ReadCloser.Close()
	b.w.cancel(nil)
	return err
}
