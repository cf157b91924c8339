package evaluate_test

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

	"github.com/modelci/modelci/stages/evaluate"
)

// TestExternalTimeout: an evaluator that outlives evaluate.timeout is
// killed at the deadline with its process group, and the error is
// ErrTimeout naming the duration.
func TestExternalTimeout(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	dir := t.TempDir()
	script := fmt.Sprintf("echo $$ > %[1]s/child.pid; sleep 300 >/dev/null 2>&1 & echo $! > %[1]s/grandchild.pid; wait", dir)
	_, err := evaluate.External(context.Background(), evaluate.ExternalInput{
		Command: []string{"/bin/sh", "-c", script}, ModelDir: modelDir(t, linear()), Test: synthetic(3), OutDir: t.TempDir(),
		Timeout: 2 * time.Second,
	})
	if !errors.Is(err, evaluate.ErrTimeout) || !strings.Contains(err.Error(), "evaluate.timeout 2s") || errors.Is(err, evaluate.ErrEvaluatorFailed) {
		t.Fatalf("External: %v, want ErrTimeout naming evaluate.timeout 2s", err)
	}
	for _, name := range []string{"child.pid", "grandchild.pid"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("the evaluator did not start before its deadline: %v", err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("%s: pid %d still running 10s after the timeout", name, pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
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
