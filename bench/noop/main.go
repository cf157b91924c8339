// Command noop is bench/serve.sh's no-op peer: an HTTP server that reads
// each request's body and answers a fixed prediction, without decoding
// anything. It measures what the HTTP stack alone costs on this machine,
// so that modelci's server can be reported as a fraction of it.
//
//	go run ./bench/noop --stack fasthttp --addr 127.0.0.1:0
//
// --stack fasthttp serves on the stack modelci's server runs on, with its
// timeouts and body limit but none of its per-request work (routing,
// metrics, the separate header timeout, connection tracking); --stack
// net/http serves on Go's net/http, tuned as modelci's server was before
// it moved to fasthttp (timeouts, a pooled body buffer, no per-request
// allocation in the handler). The first line on stderr is a JSON log line
// {"msg":"listening","addr":"HOST:PORT"}, as modelci's server writes it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// answer is what every request gets: a prediction of the same size as the
// built-in model's answer to one row.
var answer = []byte(`{"prediction":152.13300000000001}` + "\n")

func main() {
	stack := flag.String("stack", "fasthttp", "HTTP stack: fasthttp or net/http")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, `{"msg":"listening","addr":%q,"stack":%q}`+"\n", ln.Addr().String(), *stack)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch *stack {
	case "fasthttp":
		err = serveFast(ctx, ln)
	case "net/http":
		err = serveStd(ctx, ln)
	default:
		err = fmt.Errorf("unknown stack %q: want fasthttp or net/http", *stack)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func serveFast(ctx context.Context, ln net.Listener) error {
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			_ = c.PostBody() // read by the server before the handler runs
			c.SetContentType("application/json")
			c.SetBody(answer)
		},
		NoDefaultServerHeader: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           120 * time.Second,
		MaxRequestBodySize:    1 << 20,
	}
	go func() { <-ctx.Done(); srv.Shutdown() }()
	return srv.Serve(ln)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func serveStd(ctx context.Context, ln net.Listener) error {
	ct := []string{"application/json"}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bp := bufPool.Get().(*[]byte)
			b := (*bp)[:0]
			for {
				if len(b) == cap(b) {
					b = append(b, 0)[:len(b)]
				}
				n, err := r.Body.Read(b[len(b):cap(b)])
				b = b[:len(b)+n]
				if err == io.EOF {
					break
				}
				if err != nil {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
			}
			*bp = b
			bufPool.Put(bp)
			w.Header()["Content-Type"] = ct
			w.Write(answer)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	go func() { <-ctx.Done(); srv.Shutdown(context.Background()) }()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
