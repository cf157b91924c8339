package proc_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modelci/modelci/stages/internal/proc"
)

// script writes an executable shell script into dir and returns its name.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunSuccess(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "ok.sh", `echo "out $GREETING"; echo "err $(pwd)" >&2`)
	var log bytes.Buffer
	err := proc.Run(context.Background(), proc.Cmd{
		Argv:    []string{"./ok.sh"}, // relative to Workdir, not to the test's directory
		Workdir: dir,
		SetEnv:  []string{"GREETING=hello"},
		Log:     &log,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"out hello\n", "err " + real + "\n"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log %q lacks %q", log.String(), want)
		}
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	// 30 lines, of which the last proc.TailLines (20) are kept.
	script(t, dir, "fail.sh", `i=1
while [ $i -le 30 ]; do echo line$i >&2; i=$((i+1)); done
exit 3
`)
	script(t, dir, "quiet.sh", "exit 1\n")
	script(t, dir, "killed.sh", "echo dying >&2; kill -9 $$\n")
	tests := []struct {
		name     string
		argv     []string
		wantErr  error
		wantCode int
		wantHead string
		wantTail string
		wantMsg  string
	}{
		{name: "not on PATH", argv: []string{"modelci-no-such-trainer"}, wantErr: proc.ErrNotFound},
		{name: "no such file", argv: []string{"./missing.sh"}, wantErr: proc.ErrNotFound},
		{name: "empty argv", argv: nil, wantErr: proc.ErrNotFound},
		{name: "non-zero exit", argv: []string{"./fail.sh"}, wantErr: proc.ErrExit, wantCode: 3, wantHead: "line11\n", wantTail: "\nline30", wantMsg: "exit status 3"},
		{name: "non-zero exit without stderr", argv: []string{"./quiet.sh"}, wantErr: proc.ErrExit, wantCode: 1, wantMsg: "exit status 1"},
		{name: "killed", argv: []string{"./killed.sh"}, wantErr: proc.ErrExit, wantCode: -1, wantTail: "dying", wantMsg: "signal: killed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := proc.Run(context.Background(), proc.Cmd{Argv: tt.argv, Project: dir})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Run: %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != proc.ErrExit {
				return
			}
			var exit *proc.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("Run: %T, want *proc.ExitError", err)
			}
			if exit.Code != tt.wantCode {
				t.Errorf("Code = %d, want %d", exit.Code, tt.wantCode)
			}
			if !strings.HasPrefix(exit.Stderr, tt.wantHead) {
				t.Errorf("Stderr = %q, want it to start with %q", exit.Stderr, tt.wantHead)
			}
			if !strings.HasSuffix(exit.Stderr, tt.wantTail) {
				t.Errorf("Stderr = %q, want it to end with %q", exit.Stderr, tt.wantTail)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q lacks %q", err, tt.wantMsg)
			}
		})
	}
}

// signalWriter closes started when the program has printed "started", so the
// test cancels only once the program (and its child) are running.
type signalWriter struct {
	once    sync.Once
	started chan struct{}
	buf     bytes.Buffer
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), "started") {
		w.once.Do(func() { close(w.started) })
	}
	return len(p), nil
}

func TestRunCancelKillsChildren(t *testing.T) {
	dir := t.TempDir()
	// sleep is a child holding stdout; without killing the group, Wait would
	// hang until the child exits.
	script(t, dir, "slow.sh", "echo started\nsleep 600\n")
	ctx, cancel := context.WithCancel(context.Background())
	w := &signalWriter{started: make(chan struct{})}
	go func() {
		<-w.started
		cancel()
	}()
	err := proc.Run(ctx, proc.Cmd{Argv: []string{"./slow.sh"}, Project: dir, Log: w})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
}

func TestDecodeFloats(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name    string
		in      string
		want    []float64
		wantErr string
	}{
		{name: "numbers", in: `{"loss":[3, 2.5, 1e-3]}`, want: []float64{3, 2.5, 1e-3}},
		{name: "other keys", in: `{"note":"NaN inside a string","loss":[1]}`, want: []float64{1}},
		{name: "empty", in: `{"loss":[]}`, want: []float64{}},
		{name: "python NaN", in: `{"loss": [1.0, NaN]}`, want: []float64{1, math.NaN()}},
		{name: "python infinities", in: `{"loss": [Infinity, -Infinity]}`, want: []float64{inf, -inf}},
		{name: "overflow", in: `{"loss": [1e999]}`, want: []float64{inf}},
		{name: "not JSON", in: `loss: 1`, wantErr: "decode report"},
		{name: "missing key", in: `{"losses":[1]}`, wantErr: `no key "loss"`},
		{name: "null", in: `{"loss":null}`, wantErr: "is null"},
		{name: "not an array", in: `{"loss":1}`, wantErr: "not an array"},
		{name: "null item", in: `{"loss":[1,null]}`, wantErr: "loss[1]"},
		{name: "string item", in: `{"loss":["1"]}`, wantErr: "loss[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proc.DecodeFloats([]byte(tt.in), "loss")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeFloats: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeFloats: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] && !(math.IsNaN(got[i]) && math.IsNaN(tt.want[i])) {
					t.Errorf("[%d] = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRunIgnoresLogErrors(t *testing.T) {
	err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"/bin/sh", "-c", "echo out; echo err >&2"}, Log: brokenWriter{}})
	if err != nil {
		t.Fatalf("Run: %v, want the run to succeed although its log fails", err)
	}
}
