// Command load is bench/serve.sh's fixed-rate load generator: it POSTs one
// body to one URL over keep-alive HTTP/1.1 connections (opened as arrivals
// need them, up to --connections), with requests arriving as a Poisson
// process of the given mean rate, and prints the latency percentiles.
//
//	go run ./bench/load --url http://127.0.0.1:8080/predict --body body.json --rate 20000 --duration 10s
//
// Why not wrk or vegeta: wrk's timers tick in whole milliseconds, so its
// paced connections fire in bursts (at 20k req/s about 20 requests a
// tick, and the last of a burst waits for the other 19); vegeta's HTTP
// client costs more CPU per request than the server it measures and put a
// no-op server's p99 at 1.8 ms. Here one goroutine does everything with
// non-blocking sockets and a busy epoll loop (it takes its CPU whole, as a
// load generator on its own CPU may), so a request leaves within a few
// microseconds of its arrival time. Sleeping until the next arrival
// instead (epoll_pwait2's nanosecond timeout) tripled p50 and p99 on a
// virtual machine, whose idle vCPU wakes slowly.
//
// Each request's latency runs from its arrival time, not from when it was
// written: when all connections are busy an arrival waits for one, and that
// wait counts (no coordinated omission). Output, on stdout, one line:
//
//	p50_ms p90_ms p99_ms p999_ms max_ms success_ratio achieved_req_per_s
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

func main() {
	target := flag.String("url", "", "http://HOST:PORT/PATH to POST to")
	bodyFile := flag.String("body", "", "file whose bytes are each request's body")
	rate := flag.Float64("rate", 1000, "mean arrivals per second")
	duration := flag.Duration("duration", 10*time.Second, "how long arrivals are generated")
	conns := flag.Int("connections", 64, "the most connections open at once (keep-alive, opened as arrivals need them)")
	contentType := flag.String("content-type", "application/json", "the requests' Content-Type")
	flag.Parse()
	if err := run(*target, *bodyFile, *contentType, *rate, *duration, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(target, bodyFile, contentType string, rate float64, duration time.Duration, conns int) error {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("--url %q: want http://HOST:PORT/PATH", target)
	}
	if !(rate > 0) || duration <= 0 || conns < 1 {
		return fmt.Errorf("--rate, --duration and --connections must be positive")
	}
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		return fmt.Errorf("--body: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp4", u.Host)
	if err != nil {
		return fmt.Errorf("--url %q: %w", target, err)
	}
	req := request(u, contentType, body)
	g, err := newGenerator(addr, conns, req, int(rate*duration.Seconds()*1.1)+16)
	if err != nil {
		return err
	}
	defer g.close()
	if err := g.run(rate, duration); err != nil {
		return err
	}
	fmt.Println(g.summary(duration))
	return nil
}

// request is the bytes of one POST.
func request(u *url.URL, contentType string, body []byte) []byte {
	path := u.RequestURI()
	h := "POST " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: " + contentType +
		"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	return append([]byte(h), body...)
}

type conn struct {
	fd       int
	due      int64 // the arrival time of the request in flight
	inFlight bool
	resp     response
}

type generator struct {
	epfd    int
	addr    syscall.SockaddrInet4
	conns   []conn
	idle    []int   // indices of open connections with no request in flight
	closed  []int   // indices of connections not open: dialled when needed
	pending []int64 // arrivals waiting for a connection, oldest first
	req     []byte
	lat     []int64 // nanoseconds
	failed  int
	start   time.Time
	buf     []byte
}

func newGenerator(addr *net.TCPAddr, n int, req []byte, expect int) (*generator, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	g := &generator{epfd: epfd, req: req, lat: make([]int64, 0, expect), buf: make([]byte, 64<<10)}
	g.addr.Port = addr.Port
	copy(g.addr.Addr[:], addr.IP.To4())
	g.conns = make([]conn, n)
	for i := range g.conns {
		g.conns[i].fd = -1
		g.closed = append(g.closed, n-1-i)
	}
	return g, nil
}

// dial opens connection i: a blocking connect, then non-blocking
// reads and writes, watched by the epoll set.
func (g *generator) dial(i int) error {
	c := &g.conns[i]
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	c.fd = fd
	if err := syscall.Connect(fd, &g.addr); err != nil {
		return fmt.Errorf("connect to port %d: %w", g.addr.Port, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		return fmt.Errorf("TCP_NODELAY: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(i)}
	if err := syscall.EpollCtl(g.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// hangUp closes connection i, to be dialled again when needed.
func (g *generator) hangUp(i int) {
	syscall.Close(g.conns[i].fd) // also leaves the epoll set
	g.conns[i].fd = -1
	g.closed = append(g.closed, i)
}

func (g *generator) close() {
	for _, c := range g.conns {
		if c.fd >= 0 {
			syscall.Close(c.fd)
		}
	}
	syscall.Close(g.epfd)
}

// run generates arrivals for duration and waits (up to 10 s more) for the
// answers to all of them.
func (g *generator) run(rate float64, duration time.Duration) error {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	mean := 1e9 / rate
	g.start = time.Now()
	end := int64(duration)
	next := int64(rng.ExpFloat64() * mean)
	events := make([]syscall.EpollEvent, len(g.conns))
	for {
		now := int64(time.Since(g.start))
		for next <= now && next < end {
			g.pending = append(g.pending, next)
			next += int64(rng.ExpFloat64() * mean)
		}
		// Connections are opened as arrivals need them, as an HTTP
		// client's pool does: a server that serves one connection at a
		// time (gunicorn's sync workers) would otherwise sit on an idle
		// one while requests wait on the others.
		for len(g.pending) > 0 && len(g.idle)+len(g.closed) > 0 {
			var i int
			if len(g.idle) > 0 {
				i = g.idle[len(g.idle)-1]
				g.idle = g.idle[:len(g.idle)-1]
			} else {
				i = g.closed[len(g.closed)-1]
				g.closed = g.closed[:len(g.closed)-1]
				if err := g.dial(i); err != nil {
					return err
				}
			}
			if err := g.send(i, g.pending[0]); err != nil {
				return err
			}
			g.pending = g.pending[1:]
		}
		inFlight := len(g.conns) - len(g.idle) - len(g.closed)
		if now >= end && len(g.pending) == 0 && inFlight == 0 {
			return nil
		}
		if now >= end+int64(10*time.Second) {
			return fmt.Errorf("%d requests unanswered 10 s after the last arrival", inFlight+len(g.pending))
		}
		n, err := syscall.EpollWait(g.epfd, events, 0)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:max(n, 0)] {
			if err := g.receive(int(ev.Fd)); err != nil {
				return err
			}
		}
	}
}

func (g *generator) send(i int, due int64) error {
	c := &g.conns[i]
	c.due, c.inFlight = due, true
	c.resp.reset()
	for b := g.req; len(b) > 0; {
		n, err := syscall.Write(c.fd, b)
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

func (g *generator) receive(i int) error {
	c := &g.conns[i]
	for {
		n, err := syscall.Read(c.fd, g.buf)
		if errors.Is(err, syscall.EAGAIN) {
			return nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			if c.inFlight {
				return errors.New("the server closed a connection before answering")
			}
			// Closed while idle (a keep-alive timeout).
			g.idle = slices.DeleteFunc(g.idle, func(j int) bool { return j == i })
			g.hangUp(i)
			return nil
		}
		done, ok, err := c.resp.add(g.buf[:n])
		if err != nil {
			return err
		}
		if done {
			g.lat = append(g.lat, int64(time.Since(g.start))-c.due)
			if !ok {
				g.failed++
			}
			c.inFlight = false
			if c.resp.close {
				// Connection: close (gunicorn's sync workers answer so):
				// the next request's connect counts in its latency.
				g.hangUp(i)
				return nil
			}
			g.idle = append(g.idle, i)
			return nil
		}
	}
}

// response accumulates one HTTP/1.1 response with a Content-Length.
type response struct {
	head  []byte
	need  int // body bytes still to come, once the head is complete; -1 before
	code  int
	close bool // Connection: close
}

func (r *response) reset() { r.head, r.need, r.code, r.close = r.head[:0], -1, 0, false }

// add takes the next bytes of the response: done when it is complete, ok
// when its status is 200.
func (r *response) add(b []byte) (done, ok bool, err error) {
	if r.need < 0 {
		r.head = append(r.head, b...)
		end := bytes.Index(r.head, []byte("\r\n\r\n"))
		if end < 0 {
			return false, false, nil
		}
		code, length, closing, err := parseHead(r.head[:end])
		if err != nil {
			return false, false, err
		}
		r.code, r.need, r.close = code, length, closing
		b = r.head[end+4:]
	}
	r.need -= len(b)
	if r.need < 0 {
		return false, false, errors.New("more bytes than Content-Length: pipelined or malformed response")
	}
	return r.need == 0, r.code == 200, nil
}

// parseHead reads a response head's status code, Content-Length and
// whether it closes the connection.
func parseHead(h []byte) (code, length int, closing bool, err error) {
	line, rest, _ := bytes.Cut(h, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return 0, 0, false, fmt.Errorf("malformed status line %q", line)
	}
	if code, err = strconv.Atoi(string(f[1])); err != nil {
		return 0, 0, false, fmt.Errorf("malformed status line %q", line)
	}
	closing = bytes.Equal(f[0], []byte("HTTP/1.0"))
	length = -1
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		k, v, found := bytes.Cut(l, []byte(":"))
		k, v = bytes.TrimSpace(k), bytes.TrimSpace(v)
		switch {
		case !found:
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 {
				return 0, 0, false, fmt.Errorf("malformed Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	if length < 0 {
		return 0, 0, false, errors.New("response without Content-Length (chunked answers are not read)")
	}
	return code, length, closing, nil
}

func (g *generator) summary(duration time.Duration) string {
	lat := slices.Clone(g.lat)
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return math.NaN()
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6
	}
	ok := 0.0
	if len(lat) > 0 {
		ok = float64(len(lat)-g.failed) / float64(len(lat))
	}
	return fmt.Sprintf("%.3f %.3f %.3f %.3f %.3f %.4f %.0f", q(0.5), q(0.9), q(0.99), q(0.999), q(1),
		ok, float64(len(lat))/duration.Seconds())
}
