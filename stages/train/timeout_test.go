package train_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelci/modelci/stages/train"
)

// TestExternalTimeout: a trainer that outlives train.timeout is killed at
// the deadline with its process group (its background child too), and the
// error is ErrTimeout naming the duration.
func TestExternalTimeout(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	dir := t.TempDir()
	script := fmt.Sprintf("echo $$ > %[1]s/child.pid; sleep 300 >/dev/null 2>&1 & echo $! > %[1]s/grandchild.pid; wait", dir)
	_, err := train.External(context.Background(), train.ExternalInput{
		Command: []string{"/bin/sh", "-c", script}, Train: line(), OutDir: t.TempDir(), Timeout: 2 * time.Second,
	})
	if !errors.Is(err, train.ErrTimeout) || !strings.Contains(err.Error(), "train.timeout 2s") {
		t.Fatalf("External: %v, want ErrTimeout naming train.timeout 2s", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, train.ErrTrainerFailed) {
		t.Fatalf("External: %v: a timeout, not a deadline of the caller's or a failure", err)
	}
	for _, name := range []string{"child.pid", "grandchild.pid"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("the trainer did not start before its deadline: %v", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		waitGone(t, name, pid)
	}
}

// TestExternalCancelledIsNoTimeout: the caller's cancellation is not a
// timeout, even with train.timeout set.
func TestExternalCancelledIsNoTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := train.External(ctx, train.ExternalInput{
		Command: []string{"/bin/sh", "-c", "exit 0"}, Train: line(), OutDir: t.TempDir(), Timeout: time.Hour,
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, train.ErrTimeout) {
		t.Fatalf("External: %v, want context.Canceled", err)
	}
}

// alive says whether pid is a process that has not exited: not gone from
// /proc, and not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// waitGone polls until pid has exited (SIGKILL is delivered
// asynchronously), failing after 10s; it kills pid should the test fail.
func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s: pid %d still running 10s after the timeout", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
