package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/stages/kubejob"
)

// sigtermTrainer starts a trainer that stops on SIGTERM, as a trainer should (a container's
// first process gets no default action for it; without a handler the kubelet waits the grace
// period out).
const sigtermTrainer = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"

// Failures on the cluster are named, with the trainer's last lines, and leave no Job: a trainer
// that exits 1, one killed for memory (a 64 MiB limit), one past its timeout.
func TestNodeTrainJobFailures(t *testing.T) {
	c := newClusterRun(t, nil)
	py := k8stest.DebianImage(t, c.node, "python3-minimal")
	sp, err := os.ReadFile(filepath.Join(c.dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(string(sp), "  builtin: linear\n", "", 1)
	for _, tc := range []struct {
		name, program, extra string
		want                 error
		reason               string
	}{
		{"exit 1", `import sys; print("reading rows"); print("column target is empty", file=sys.stderr); sys.exit(1)`, "", kubejob.ErrFailed, "reason Error, exit code 1"},
		{"oom", `print("allocating", flush=True); x = bytearray(1 << 30); print(len(x))`, "    resources: {memory: 32Mi, memory_limit: 64Mi}\n", kubejob.ErrOOMKilled, "reason OOMKilled"},
		{"timeout", sigtermTrainer + `print("epoch 1", flush=True); time.sleep(600)`, "    timeout: 5s\n", kubejob.ErrDeadlineExceeded, "reason DeadlineExceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := withTrain(base, fmt.Sprintf("  command: [python3, -c, %q]\n  format: linear\n", tc.program)+c.kubernetesBlock("    image: "+py+"\n"+tc.extra))
			src += "evaluate:\n  command: [python3, -c, pass]\n"
			if err := os.WriteFile(filepath.Join(c.dir, "modelci.yaml"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			log := &syncLog{}
			res, err := c.run(t, context.Background(), log)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v; want %v", err, tc.want)
			}
			var f *kubejob.Failure
			if !errors.As(err, &f) || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not say %q", err, tc.reason)
			}
			if tc.name == "exit 1" && !strings.Contains(err.Error(), "column target is empty") {
				t.Errorf("the error lacks the trainer's last lines: %v", err)
			}
			if res != nil && res.Ref != "" {
				t.Errorf("a failed training built %s", res.Ref)
			}
			c.noJobsLeft(t)
		})
	}
}

// Ctrl-C during training deletes the Job and its pod before the run returns.
func TestNodeTrainJobInterrupt(t *testing.T) {
	c := newClusterRun(t, nil)
	py := k8stest.DebianImage(t, c.node, "python3-minimal")
	sp, err := os.ReadFile(filepath.Join(c.dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(sp), "  builtin: linear\n", "", 1)
	src = withTrain(src, fmt.Sprintf("  command: [python3, -c, %q]\n", sigtermTrainer+`print("training", flush=True); time.sleep(600)`)+"  format: linear\n"+c.kubernetesBlock("    image: "+py+"\n"))
	src += "evaluate:\n  command: [python3, -c, pass]\n"
	if err := os.WriteFile(filepath.Join(c.dir, "modelci.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncLog{}
	training := log.when(": training")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.run(t, ctx, log)
		done <- err
	}()
	select {
	case <-training:
	case err := <-done:
		t.Fatalf("the run ended before training: %v\n%s", err, log)
	case <-time.After(3 * time.Minute):
		t.Fatalf("the trainer did not start:\n%s", log)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v", err)
	}
	if !strings.Contains(log.String(), "interrupted: deleting job") {
		t.Errorf("log:\n%s", log)
	}
	c.noJobsLeft(t)
}
