package pipeline_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/smoke"
)

// offByOneEvaluator scores the built-in model as modelci's own evaluator
// does, but reports predictions one higher than the model makes: the model
// that was evaluated is not the one the image serves.
const offByOneEvaluator = `import csv, json, os
m = json.load(open(os.path.join(os.environ["MODELCI_MODEL"], "model.json")))
with open(os.path.join(os.environ["MODELCI_DATA"], "test.csv")) as f:
    rows = list(csv.reader(f))[1:]
pred, loss = [], []
for r in rows:
    x, y = [float(v) for v in r[:-1]], float(r[-1])
    p = m["bias"] + sum(w * (v - mu) / s for w, v, mu, s in zip(m["weights"], x, m["mean"], m["scale"]))
    pred.append(p + 1)
    loss.append((p - y) ** 2)
with open(os.path.join(os.environ["MODELCI_OUT"], "predictions.json"), "w") as f:
    json.dump({"per_example_loss": loss, "predictions": pred}, f)
`

// TestSmokeRefusesWhatWasNotEvaluated: when the image serves other
// predictions than the evaluator scored, the run fails at the smoke stage,
// naming the rows, and nothing is pushed.
func TestSmokeRefusesWhatWasNotEvaluated(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	reg := newCountingRegistry(t)
	dir := project(t, func(s string) string { return s + "evaluate:\n  command: [python3, evaluator.py]\n" })
	if err := os.WriteFile(filepath.Join(dir, "evaluator.py"), []byte(offByOneEvaluator), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)), pipeline.WithRepository(reg.repo()))
	if !errors.Is(err, smoke.ErrMismatch) || !strings.Contains(err.Error(), "smoke: ") || !strings.Contains(err.Error(), "row 0: served") {
		t.Fatalf("run = %v, want the smoke stage to refuse it, naming rows", err)
	}
	if n := reg.take(); n != 0 {
		t.Fatalf("%d blobs pushed after a failed smoke test", n)
	}
	out := filepath.Join(dir, ".modelci")
	ids, _ := pipeline.ListRuns(out)
	if len(ids) != 1 {
		t.Fatalf("runs %v, want the failed run's record alone", ids)
	}
	if rec, err := pipeline.ReadRecord(out, ids[0]); err != nil || rec.Status != pipeline.StatusFailed || rec.FailedStage != "smoke" || rec.Outputs.Smoke == nil || len(rec.Outputs.Smoke.Differ) == 0 {
		t.Fatalf("failed record %+v, %v", rec, err)
	}
	if _, err := os.Stat(filepath.Join(pipeline.LayoutDir(out), "index.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the first run failed, yet the layout has an index.json: %v", err)
	}
}
