package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// The HTTP stack is fasthttp (github.com/valyala/fasthttp): on one core it
// answers about 1.7 times the requests net/http does for the same no-op
// handler (bench/serve.sh measures both), and the model routes cost little
// next to it. Server.ServeHTTP keeps the server an http.Handler for those
// who embed it in a net/http server; it converts each request and answers
// exactly what the fasthttp server does.

// readBufferSize bounds a request's line and headers (431 beyond).
const readBufferSize = 8 << 10

// ListenAndServe listens on addr (host:port; port 0 picks a free one) and
// serves until ctx is cancelled; see Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// ErrDrainTimeout is wrapped by Serve's error when in-flight requests did not
// finish within the shutdown timeout.
var ErrDrainTimeout = errors.New("in-flight requests did not finish in time")

// connSet tracks a server's open connections, so that those still busy
// when the drain times out can be closed.
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (c *connSet) state(conn net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		c.mu.Lock()
		c.m[conn] = struct{}{}
		c.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		c.mu.Lock()
		delete(c.m, conn)
		c.mu.Unlock()
	}
}

func (c *connSet) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.m {
		conn.Close()
	}
}

// fastLogger writes fasthttp's own messages (accept errors and the like)
// to the server's log as warnings.
type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) { l.log.Warn(fmt.Sprintf(format, args...)) }

// fastServer is the fasthttp server Serve runs: the server's timeouts and
// body limit, no multipart parsing, JSON errors for requests that cannot
// be read, and Connection: close on every answer once draining.
func (s *Server) fastServer(conns *connSet) *fasthttp.Server {
	t := s.timeouts
	srv := &fasthttp.Server{
		Handler:                      s.HandleFastHTTP,
		ErrorHandler:                 s.handleReadError,
		ReadBufferSize:               readBufferSize,
		MaxRequestBodySize:           int(min(s.maxBody, int64(^uint(0)>>1))),
		ReadTimeout:                  t.Read,
		WriteTimeout:                 t.Write,
		IdleTimeout:                  t.Idle,
		TCPKeepalive:                 true,
		NoDefaultServerHeader:        true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		Logger:                       fastLogger{s.log},
		ConnState:                    conns.state,
	}
	if t.ReadHeader < t.Read {
		// The request line and headers must arrive within ReadHeader of
		// the request's first byte; the body then gets Read.
		srv.ReadTimeout = t.ReadHeader
		cfg := fasthttp.RequestConfig{ReadTimeout: t.Read}
		srv.HeaderReceived = func(*fasthttp.RequestHeader) fasthttp.RequestConfig { return cfg }
	}
	return srv
}

// Serve answers requests on ln until ctx is cancelled, then stops accepting,
// reports not ready, waits for in-flight requests to finish (up to the
// shutdown timeout; connections still busy then are closed) and returns
// nil. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	conns := &connSet{m: make(map[net.Conn]struct{})}
	srv := s.fastServer(conns)
	attrs := []any{slog.String("addr", ln.Addr().String()), slog.String("role", string(s.role))}
	if s.name != "" {
		attrs = append(attrs, slog.String("model", s.name), slog.String("version", s.version))
	}
	if s.onnx != nil {
		attrs = append(attrs, slog.String("format", "onnx"))
	}
	s.log.Info("listening", attrs...)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if err == nil {
			err = net.ErrClosed
		}
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	s.ready.Store(false)
	s.log.Info("shutting down", slog.String("timeout", s.timeouts.Shutdown.String()))
	// Closed here, not only by fasthttp's shutdown, which skips a listener
	// its Serve has not registered yet.
	ln.Close()
	// The drain must not inherit ctx: it is already cancelled.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeouts.Shutdown)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil && !errors.Is(err, net.ErrClosed) {
		conns.closeAll()
		if errors.Is(err, context.DeadlineExceeded) {
			err = ErrDrainTimeout
		}
		return fmt.Errorf("shut down server on %s: %w", ln.Addr(), err)
	}
	<-errc
	s.log.Info("stopped")
	return nil
}

// HandleFastHTTP answers one request: the server as a
// fasthttp.RequestHandler. The fasthttp server that Serve runs enforces
// the body limit before the handler runs (handleReadError answers 413);
// a server of the caller's should set MaxRequestBodySize likewise, though
// the model routes check it too.
func (s *Server) HandleFastHTTP(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	rt, t := parseRoute(ctx.Path())
	if rt.predicts() && !s.role.predicts() || rt == routeProcess && !s.role.preprocesses() {
		rt = routeOther
	}
	var code int
	switch rt {
	case routePredict:
		code = s.handleModel(ctx, false)
	case routeProcess:
		code = s.handleModel(ctx, true)
	case routeV2Infer, routeV2InferVersion:
		code = s.handleV2Infer(ctx, t)
	case routeV1Predict:
		code = s.handleV1Predict(ctx, t)
	case routeInvocations:
		code = s.handleInvocations(ctx)
	case routeHealthz, routeV2Live:
		code = s.handleProbe(ctx, rt, true)
	case routeReadyz, routeV2Ready, routePing:
		code = s.handleProbe(ctx, rt, s.ready.Load())
	case routeV2Server:
		code = s.handleV2Server(ctx)
	case routeV2Model, routeV2ModelVersion:
		code = s.handleV2Metadata(ctx, t)
	case routeV2ModelReady, routeV2ModelVersionReady, routeV1Model:
		code = s.handleModelReady(ctx, t)
	case routeMetrics:
		code = s.handleMetrics(ctx)
	default:
		code = s.writeError(ctx, http.StatusNotFound, "no route for "+string(ctx.Path()))
	}
	s.metrics.observe(rt, code, time.Since(start))
}

// handleReadError answers a request the server could not read: a body over
// the limit (413), headers too large (431), a timeout (408), anything
// else (400). The connection is closed afterwards.
func (s *Server) handleReadError(ctx *fasthttp.RequestCtx, err error) {
	start := time.Now()
	rt, _ := parseRoute(ctx.Path())
	if rt.predicts() && !s.role.predicts() || rt == routeProcess && !s.role.preprocesses() {
		rt = routeOther
	}
	var code int
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		limit := strconv.FormatInt(s.maxBody, 10)
		if n := ctx.Request.Header.ContentLength(); n > 0 {
			code = s.writeError(ctx, http.StatusRequestEntityTooLarge, "request body of "+strconv.Itoa(n)+" bytes exceeds the limit of "+limit)
		} else {
			code = s.writeError(ctx, http.StatusRequestEntityTooLarge, "request body exceeds the limit of "+limit+" bytes")
		}
	case errors.As(err, &small):
		code = s.writeError(ctx, http.StatusRequestHeaderFieldsTooLarge, "request line and headers exceed "+strconv.Itoa(readBufferSize)+" bytes")
	case errors.As(err, &netErr) && netErr.Timeout():
		code = s.writeError(ctx, http.StatusRequestTimeout, "request not received in time: "+err.Error())
	default:
		code = s.writeError(ctx, http.StatusBadRequest, err.Error())
	}
	ctx.SetConnectionClose()
	s.metrics.observe(rt, code, time.Since(start))
}

var ctxPool = sync.Pool{New: func() any { return new(fasthttp.RequestCtx) }}

// ServeHTTP answers a request of a net/http server: the request is
// converted (method, path, Content-Type, the body read up to the limit)
// and answered by HandleFastHTTP, whose status, headers and body are
// copied back; /metrics is served by the Prometheus handler directly.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == routeLabels[routeMetrics] {
		start := time.Now()
		code := s.serveMetricsHTTP(w, r)
		s.metrics.observe(routeMetrics, code, time.Since(start))
		return
	}
	ctx := ctxPool.Get().(*fasthttp.RequestCtx)
	buf := bufPool.Get().(*buffers)
	defer func() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctxPool.Put(ctx)
		putBuffers(buf)
	}()
	req := &ctx.Request
	req.Header.SetMethod(r.Method)
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	req.Header.SetRequestURI(uri)
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.SetContentType(ct)
	}
	var err error
	buf.body, err = readBody(buf.body[:0], r.Body, r.ContentLength, s.maxBody)
	switch {
	case errors.Is(err, errTooLarge):
		req.Header.SetContentLength(int(min(r.ContentLength, int64(^uint(0)>>1))))
		s.handleReadError(ctx, fasthttp.ErrBodyTooLarge)
	case err != nil:
		s.handleReadError(ctx, fmt.Errorf("read request body: %w", err))
	default:
		req.SetBodyRaw(buf.body)
		s.HandleFastHTTP(ctx)
	}
	resp := &ctx.Response
	h := w.Header()
	if ct := resp.Header.ContentType(); string(ct) == contentTypeJSON[0] {
		h["Content-Type"] = contentTypeJSON
	} else if len(ct) > 0 {
		h.Set("Content-Type", string(ct))
	}
	if allow := resp.Header.Peek("Allow"); len(allow) > 0 {
		h.Set("Allow", string(allow))
	}
	if resp.ConnectionClose() {
		h.Set("Connection", "close")
	}
	w.WriteHeader(resp.StatusCode())
	w.Write(resp.Body())
}
