package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelci/modelci/pipeline"
)

// slowTrainer records its pid and its background child's, then waits for
// that child, a sleep of five minutes: a run that is still training.
const slowTrainer = `sleep 300 &
echo $! > "$PIDDIR/sleep.tmp" && mv "$PIDDIR/sleep.tmp" "$PIDDIR/sleep.pid"
echo $$ > "$PIDDIR/sh.tmp" && mv "$PIDDIR/sh.tmp" "$PIDDIR/sh.pid"
wait
`

// slowProject is the linreg example trained by slowTrainer.
func slowProject(t *testing.T) (dir, pids string) {
	t.Helper()
	dir = example(t, func(s string) string {
		i, j := strings.Index(s, "train:\n"), strings.Index(s, "gate:\n")
		return s[:i] + "train:\n  command: [sh, train.sh]\n  format: linear\n  env: [PIDDIR]\nevaluate:\n  command: [sh, evaluate.sh]\n" + s[j:]
	})
	if err := os.WriteFile(filepath.Join(dir, "train.sh"), []byte(slowTrainer), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "evaluate.sh"), []byte("exit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, t.TempDir()
}

// buildModelci builds this command into a temporary directory.
func buildModelci(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "modelci")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startRun starts `modelci run -C dir` with PIDDIR set, and returns once
// the trainer has written both pids.
func startRun(t *testing.T, bin, dir, pids string) (cmd *exec.Cmd, stderr *bytes.Buffer, trainer []int) {
	t.Helper()
	cmd = exec.Command(bin, "run", "-C", dir)
	cmd.Env = append(os.Environ(), "PIDDIR="+pids)
	stderr = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for _, name := range []string{"sh.pid", "sleep.pid"} {
		trainer = append(trainer, readPidFile(t, filepath.Join(pids, name), cmd))
	}
	t.Cleanup(func() {
		for _, pid := range trainer {
			if processAlive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return cmd, stderr, trainer
}

// readPidFile waits for a pid the trainer writes (the run reaches its
// train stage in seconds; 60s bounds a broken one), failing early when
// modelci has already exited.
func readPidFile(t *testing.T, path string, cmd *exec.Cmd) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s: %q", path, b)
			}
			return pid
		}
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil || time.Now().After(deadline) {
			t.Fatalf("no pid in %s (modelci: %v)", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive says whether pid has not exited: in /proc, and no zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// waitProcessesGone polls until no pid is alive (a SIGKILL is delivered
// asynchronously), failing after 10s.
func waitProcessesGone(t *testing.T, what string, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			if processAlive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: trainer processes %v still running", what, left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("wait: %v", err)
	}
	if ee == nil {
		return 0
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()) // killed by the signal: no cleanup ran
	}
	return ee.ExitCode()
}

// TestRunSignals drives a real modelci process in its train stage.
//
// SIGTERM and SIGINT: modelci kills the trainer and its process group,
// records the run as failed (stage train, the signal named), releases the
// lock, and exits 143 or 130 (not killed by the signal: it exited after its
// cleanup). kill -9: the trainer dies with modelci (its parent-death
// signal and watcher), and the next run in the output directory removes
// what the killed one left (its .tmp- run directory, temporary blobs).
func TestRunSignals(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	bin := buildModelci(t)
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		t.Run(tt.sig.String(), func(t *testing.T) {
			dir, pids := slowProject(t)
			out := filepath.Join(dir, ".modelci")
			cmd, stderr, trainer := startRun(t, bin, dir, pids)
			if err := cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			if code := exitStatus(t, cmd.Wait()); code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", code, tt.code, stderr)
			}
			waitProcessesGone(t, "after modelci exited", trainer)
			lock, err := pipeline.LockDir(out)
			if err != nil {
				t.Fatalf("the lock after modelci exited: %v", err)
			}
			lock.Unlock()
			if left, _ := filepath.Glob(filepath.Join(out, "runs", ".tmp-*")); len(left) > 0 {
				t.Fatalf("temporary run directories left: %v", left)
			}

			// modelci runs -o json lists the run, failed in training.
			var listing bytes.Buffer
			runs := exec.Command(bin, "runs", "-C", dir, "-o", "json")
			runs.Stdout, runs.Stderr = &listing, &listing
			if err := runs.Run(); err != nil {
				t.Fatalf("modelci runs: %v\n%s", err, listing.String())
			}
			var list struct {
				Schema string `json:"schema"`
				Runs   []struct {
					ID          string `json:"id"`
					Status      string `json:"status"`
					FailedStage string `json:"failed_stage"`
					Error       string `json:"error"`
				} `json:"runs"`
			}
			if err := json.Unmarshal(listing.Bytes(), &list); err != nil {
				t.Fatalf("modelci runs -o json: %v\n%s", err, listing.String())
			}
			if list.Schema != pipeline.RunsSchema || len(list.Runs) != 1 {
				t.Fatalf("runs: %s", listing.String())
			}
			r := list.Runs[0]
			if r.Status != "failed" || r.FailedStage != "train" || !strings.Contains(r.Error, "interrupted by a signal: "+tt.sig.String()) {
				t.Fatalf("run %+v, want failed in train, interrupted by %s", r, tt.sig)
			}
			if !strings.Contains(stderr.String(), "run "+r.ID+" failed in its train stage") {
				t.Fatalf("stderr does not name the failed run:\n%s", stderr)
			}
		})
	}

	// train.timeout: the trainer and its group are killed at the deadline;
	// the run fails (exit 1) with the timeout named, and is recorded.
	t.Run("train.timeout", func(t *testing.T) {
		dir, pids := slowProject(t)
		b, _ := os.ReadFile(filepath.Join(dir, "modelci.yaml"))
		sp := strings.Replace(string(b), "  format: linear\n", "  format: linear\n  timeout: 5s\n", 1)
		if err := os.WriteFile(filepath.Join(dir, "modelci.yaml"), []byte(sp), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd, stderr, trainer := startRun(t, bin, dir, pids)
		if code := exitStatus(t, cmd.Wait()); code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, stderr)
		}
		if !strings.Contains(stderr.String(), "training timed out: train.timeout 5s reached") {
			t.Fatalf("stderr does not name the timeout:\n%s", stderr)
		}
		waitProcessesGone(t, "after train.timeout", trainer)
		ids, _ := pipeline.ListRuns(filepath.Join(dir, ".modelci"))
		if len(ids) != 1 {
			t.Fatalf("runs %v, want the timed-out run's record", ids)
		}
		rec, err := pipeline.ReadRecord(filepath.Join(dir, ".modelci"), ids[0])
		if err != nil || rec.Status != pipeline.StatusFailed || rec.FailedStage != "train" || !strings.Contains(rec.Error, "train.timeout 5s") {
			t.Fatalf("record %+v, %v", rec, err)
		}
	})

	t.Run("SIGKILL", func(t *testing.T) {
		dir, pids := slowProject(t)
		out := filepath.Join(dir, ".modelci")
		cmd, stderr, trainer := startRun(t, bin, dir, pids)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := exitStatus(t, cmd.Wait()); code != 137 {
			t.Fatalf("exit %d after kill -9\n%s", code, stderr)
		}
		waitProcessesGone(t, "after kill -9 of modelci", trainer)
		left, _ := filepath.Glob(filepath.Join(out, "runs", ".tmp-*"))
		if len(left) != 1 {
			t.Fatalf("leftovers of the killed run: %v, want its temporary run directory", left)
		}
		// What a run killed in its image stage leaves in the layout.
		blobs := filepath.Join(out, "oci", "blobs", "sha256")
		if err := os.MkdirAll(blobs, 0o755); err != nil {
			t.Fatal(err)
		}
		partial := filepath.Join(blobs, ".tmp-layer-4242")
		if err := os.WriteFile(partial, bytes.Repeat([]byte{1}, 4096), 0o644); err != nil {
			t.Fatal(err)
		}

		// The next run: built-in training, refused by the gate (exit 3,
		// nothing built); it starts by removing the leftovers.
		b, _ := os.ReadFile(filepath.Join(dir, "modelci.yaml"))
		s := string(b)
		i, j := strings.Index(s, "train:\n"), strings.Index(s, "gate:\n")
		s = s[:i] + "train:\n  builtin: linear\n" + strings.Replace(s[j:], "threshold: 5000", "threshold: 1", 1)
		if err := os.WriteFile(filepath.Join(dir, "modelci.yaml"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		var next bytes.Buffer
		again := exec.Command(bin, "run", "-C", dir)
		again.Stdout, again.Stderr = &next, &next
		if code := exitStatus(t, again.Run()); code != 3 {
			t.Fatalf("the next run: exit %d, want 3\n%s", code, next.String())
		}
		if !strings.Contains(next.String(), "removed what interrupted runs left") {
			t.Errorf("the next run did not say it removed leftovers:\n%s", next.String())
		}
		for _, p := range append(left, partial) {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s survived the next run: %v", p, err)
			}
		}
		ids, err := pipeline.ListRuns(out)
		if err != nil || len(ids) != 1 {
			t.Fatalf("runs %v (%v), want the next run's alone: a killed run leaves no record", ids, err)
		}
	})
}
