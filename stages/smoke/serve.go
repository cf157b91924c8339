package smoke

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/internal/proc"
)

// DefaultTimeout bounds a smoke test: unpacking, start, readiness and
// every request.
const DefaultTimeout = 2 * time.Minute

// batch is how many rows go in one request, well under the server's
// default body limit.
const batch = 256

// maxDiffs is how many differing rows a Result lists.
const maxDiffs = 10

// Input is a smoke test of an image whose server speaks modelci's
// /predict: its own runtime.
type Input struct {
	Image v1.Image
	// Instances are the test rows in the order the evaluator scored them,
	// as /predict takes them ({"instances": [...]}): raw cells.
	Instances []any
	// Want are the evaluator's predictions, one per row; nil checks only
	// that every row gets a finite answer.
	Want []float64
	// Tolerance is the largest difference allowed, relative to
	// max(|want|, 1).
	Tolerance float64
	// Timeout bounds the whole test; zero means DefaultTimeout.
	Timeout time.Duration
	// Log takes the server's output (nil: discarded).
	Log io.Writer
}

// Result is what the smoke test found.
type Result struct {
	// Entrypoint is the image's, as started (paths inside the image).
	Entrypoint []string `json:"entrypoint"`
	Rows       int      `json:"rows"`
	// Compared says whether the answers were compared with the
	// evaluator's predictions (else only checked to be finite).
	Compared   bool    `json:"compared"`
	MaxRelDiff float64 `json:"max_rel_diff"`
	Tolerance  float64 `json:"tolerance"`
	// Differ lists the first rows whose answers differ beyond Tolerance.
	Differ   []Diff        `json:"differ,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// Diff is one row the server answered otherwise.
type Diff struct {
	Row  int     `json:"row"`
	Got  float64 `json:"got"`
	Want float64 `json:"want"`
}

// Serve starts in.Image's entrypoint from its layers (paths inside the
// image mapped to where they were unpacked, the listen address moved to a
// free loopback port), waits for /readyz, sends every row to /predict and
// compares the answers with in.Want. A server that does not start or
// answer is ErrNotReady; answers beyond the tolerance are ErrMismatch, with
// the rows in the Result.
func Serve(ctx context.Context, in Input) (*Result, error) {
	start := time.Now()
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := &Result{Rows: len(in.Instances), Tolerance: in.Tolerance, Compared: in.Want != nil}
	if in.Want != nil && len(in.Want) != len(in.Instances) {
		return res, fmt.Errorf("smoke: %d predictions for %d rows", len(in.Want), len(in.Instances))
	}
	cf, err := in.Image.ConfigFile()
	if err != nil {
		return res, fmt.Errorf("smoke: the image's config: %w", err)
	}
	argv := append(append([]string{}, cf.Config.Entrypoint...), cf.Config.Cmd...)
	res.Entrypoint = argv
	if len(argv) == 0 {
		return res, fmt.Errorf("smoke: %w: the image names no entrypoint", ErrEntrypoint)
	}
	dir, err := os.MkdirTemp("", "modelci-smoke-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	prefixes := []string{}
	for _, a := range argv {
		if strings.HasPrefix(a, "/") {
			prefixes = append(prefixes, strings.TrimPrefix(filepath.Clean(a), "/"))
		}
	}
	fs, err := unpack(in.Image, dir, prefixes...)
	if err != nil {
		return res, fmt.Errorf("smoke: %w", err)
	}
	bin, err := fs.executable(argv[0], cf.Config.Env)
	if err != nil {
		return res, fmt.Errorf("smoke: %w: %v", ErrEntrypoint, err)
	}
	args := hostArgs(fs, argv[1:])

	srv, err := startServer(ctx, filepath.Join(dir, filepath.FromSlash(bin)), args, cf.Config.Env, in.Log)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	if err := srv.ready(ctx); err != nil {
		return res, err
	}
	got, err := srv.predict(ctx, in.Instances)
	if err != nil {
		return res, err
	}
	res.Duration = time.Since(start)
	for i, g := range got {
		if math.IsNaN(g) || math.IsInf(g, 0) {
			res.Differ = append(res.Differ, Diff{Row: i, Got: g})
			res.MaxRelDiff = math.Inf(1)
			continue
		}
		if in.Want == nil {
			continue
		}
		d := math.Abs(g-in.Want[i]) / math.Max(math.Abs(in.Want[i]), 1)
		res.MaxRelDiff = math.Max(res.MaxRelDiff, d)
		if d > in.Tolerance && len(res.Differ) < maxDiffs {
			res.Differ = append(res.Differ, Diff{Row: i, Got: g, Want: in.Want[i]})
		}
	}
	if len(res.Differ) > 0 {
		rows := make([]string, len(res.Differ))
		for i, d := range res.Differ {
			rows[i] = fmt.Sprintf("row %d: served %v, evaluated %v", d.Row, d.Got, d.Want)
		}
		return res, fmt.Errorf("smoke: %w: max relative difference %.3g > %.3g (%s)", ErrMismatch, res.MaxRelDiff, in.Tolerance, strings.Join(rows, "; "))
	}
	return res, nil
}

// hostArgs maps the image's arguments to the unpacked filesystem: an
// absolute path the image holds becomes its unpacked path, and the listen
// address a free loopback port.
func hostArgs(fs *rootfs, args []string) []string {
	out := make([]string, 0, len(args)+2)
	addr := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--addr" || a == "-addr":
			out = append(out, a, "127.0.0.1:0")
			addr = true
			i++
			continue
		case strings.HasPrefix(a, "--addr=") || strings.HasPrefix(a, "-addr="):
			out = append(out, "--addr=127.0.0.1:0")
			addr = true
			continue
		case strings.HasPrefix(a, "/"):
			if _, ok := fs.headers[strings.TrimPrefix(filepath.Clean(a), "/")]; ok {
				a = filepath.Join(fs.dir, filepath.FromSlash(a))
			}
		}
		out = append(out, a)
	}
	if !addr {
		out = append(out, "--addr", "127.0.0.1:0")
	}
	return out
}

// server is the image's server running on this host.
type server struct {
	cmd    *exec.Cmd
	addr   chan string // from the "listening" line
	host   string      // host:port to send requests to, once ready
	exited chan struct{}
	mu     sync.Mutex
	tail   []string // the last lines of its stderr
	err    error    // how it exited
}

func startServer(ctx context.Context, bin string, args, env []string, log io.Writer) (*server, error) {
	if log == nil {
		log = io.Discard
	}
	// stdout is copied by os/exec's goroutine, stderr by ours.
	log = &proc.LockedWriter{W: log}
	cmd := exec.Command(bin, args...)
	// The image's environment, as a container would have it; nothing of
	// modelci's own.
	cmd.Env = env
	cmd.Stdout = log
	setProcAttr(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("smoke: start %s: %w: %w", bin, ErrNotReady, err)
	}
	s := &server{cmd: cmd, addr: make(chan string, 1), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(log, line)
			s.mu.Lock()
			s.tail = append(s.tail, line)
			if len(s.tail) > 20 {
				s.tail = s.tail[1:]
			}
			s.mu.Unlock()
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" && l.Addr != "" {
				select {
				case s.addr <- l.Addr:
				default:
				}
			}
		}
		err := cmd.Wait()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.exited)
	}()
	return s, nil
}

// why says how the server ended, with the end of its stderr.
func (s *server) why() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := "it is still running"
	if s.err != nil {
		msg = "it exited: " + s.err.Error()
	} else {
		select {
		case <-s.exited:
			msg = "it exited"
		default:
		}
	}
	if len(s.tail) > 0 {
		msg += "; its stderr ends with:\n" + strings.Join(s.tail, "\n")
	}
	return msg
}

// ready waits for the "listening" line, then for /readyz to answer 200.
func (s *server) ready(ctx context.Context) error {
	var addr string
	select {
	case addr = <-s.addr:
	case <-s.exited:
		return fmt.Errorf("smoke: %w: %s", ErrNotReady, s.why())
	case <-ctx.Done():
		return fmt.Errorf("smoke: %w: no \"listening\" line: %v; %s", ErrNotReady, ctx.Err(), s.why())
	}
	host := addr
	if strings.HasPrefix(host, "[::]") || strings.HasPrefix(host, "0.0.0.0") {
		host = "127.0.0.1" + host[strings.LastIndex(host, ":"):]
	}
	s.host = host
	url := "http://" + host + "/readyz"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-tick.C:
		case <-s.exited:
			return fmt.Errorf("smoke: %w: %s", ErrNotReady, s.why())
		case <-ctx.Done():
			return fmt.Errorf("smoke: %w: /readyz answered %s until %v", ErrNotReady, last, ctx.Err())
		}
	}
}

// predict sends the rows to /predict in batches and returns the answers.
func (s *server) predict(ctx context.Context, rows []any) ([]float64, error) {
	host := s.host
	out := make([]float64, 0, len(rows))
	for i := 0; i < len(rows); i += batch {
		chunk := rows[i:min(i+batch, len(rows))]
		body, err := json.Marshal(map[string]any{"instances": chunk})
		if err != nil {
			return nil, fmt.Errorf("smoke: encode rows %d-%d: %w", i, i+len(chunk)-1, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+host+"/predict", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("smoke: /predict rows %d-%d: %w: %w; %s", i, i+len(chunk)-1, ErrNotReady, err, s.why())
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("smoke: /predict rows %d-%d: %w", i, i+len(chunk)-1, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("smoke: /predict rows %d-%d: %w: %s: %s", i, i+len(chunk)-1, ErrMismatch, resp.Status, strings.TrimSpace(string(b)))
		}
		var p struct {
			Predictions []float64 `json:"predictions"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("smoke: /predict rows %d-%d: %w: %v", i, i+len(chunk)-1, ErrMismatch, err)
		}
		if len(p.Predictions) != len(chunk) {
			return nil, fmt.Errorf("smoke: /predict rows %d-%d: %w: %d answers for %d rows", i, i+len(chunk)-1, ErrMismatch, len(p.Predictions), len(chunk))
		}
		out = append(out, p.Predictions...)
	}
	return out, nil
}

// stop asks the server to drain (SIGTERM), and kills its process group if
// it has not exited shortly after.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
		killGroup(s.cmd)
		<-s.exited
	}
}
