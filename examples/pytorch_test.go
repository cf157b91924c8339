// Package examples_test runs the examples end to end as a user would.
package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/smoke"
)

// torchPython makes `python3` one with torch and onnx: the first on PATH,
// else Debian's (/usr/bin, where python3-torch installs), put first on
// PATH. It skips the test, naming why, when there is none.
func torchPython(t *testing.T) {
	t.Helper()
	has := func(py string) bool {
		return exec.Command(py, "-c", "import torch, onnx").Run() == nil
	}
	if py, err := exec.LookPath("python3"); err == nil && has(py) {
		return
	}
	if has("/usr/bin/python3") {
		t.Setenv("PATH", "/usr/bin:"+os.Getenv("PATH"))
		return
	}
	t.Skip("python3 -c 'import torch, onnx' fails: apt-get install python3-torch python3-onnx (.ci/run does)")
}

// copyExample copies examples/pytorch and the linreg data it reads into a
// temporary directory, keeping their relative paths.
func copyExample(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range []string{"pytorch/modelci.yaml", "pytorch/mlp.yaml", "pytorch/train.py", "pytorch/evaluate.py", "linreg/data/diabetes.csv"} {
		b, err := os.ReadFile(filepath.FromSlash(f))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "pytorch")
}

// TestPyTorchExample: `modelci run -C examples/pytorch` (and its MLP
// variant) trains with torch, evaluates, passes the gate and builds an
// image that serves the ONNX export from modelci's own runtime; that image,
// started from its layers, answers every test row as torch itself does with
// model.pt loaded in a fresh python3 that imports nothing of the example.
func TestPyTorchExample(t *testing.T) {
	torchPython(t)
	rt, err := image.Runtime(t.Context(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"modelci.yaml", "mlp.yaml"} {
		t.Run(file, func(t *testing.T) {
			dir := copyExample(t)
			sp, err := spec.Load(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			res, err := pipeline.Run(t.Context(), sp, pipeline.WithRuntime("linux/amd64", rt), pipeline.WithLog(&log))
			if err != nil {
				t.Fatalf("modelci run: %v\n%s", err, log.String())
			}
			if res.Verdict != modelgate.Pass || res.Decision != modelgate.Released {
				t.Fatalf("verdict %s, decision %s", res.Verdict, res.Decision)
			}
			sm := res.Record.Outputs.Smoke
			if sm == nil || !sm.Compared || sm.Rows != res.Record.Inputs.Split.TestRows || sm.MaxRelDiff > pipeline.SmokeToleranceFloat32 {
				t.Fatalf("smoke record %+v: want every test row served as evaluated", sm)
			}
			if f := res.Record.Inputs.Trainer.Format; f != model.FormatONNX || len(res.Record.Inputs.Trainer.ONNXOps) == 0 {
				t.Fatalf("record trainer %+v", res.Record.Inputs.Trainer)
			}

			img := built(t, res.Ref)
			modelDir := t.TempDir()
			if err := image.ExtractModel(img, modelDir); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{model.ONNXFileName, model.ONNXInfoFileName, "model.pt"} {
				if _, err := os.Stat(filepath.Join(modelDir, f)); err != nil {
					t.Errorf("the image's /model lacks %s: %v", f, err)
				}
			}

			// torch's own predictions on every test row, from the image's
			// model.pt, in a python3 that knows nothing of the example.
			ds, err := data.Load(context.Background(), sp.Path(sp.Data.Path), sp.Data.Target)
			if err != nil {
				t.Fatal(err)
			}
			_, test, err := data.Split(ds, *sp.Data.TestFraction, *sp.Data.Seed)
			if err != nil {
				t.Fatal(err)
			}
			rows := make([][]float64, test.Rows())
			instances := make([]any, test.Rows())
			for i := range rows {
				rows[i] = test.Row(i)
				instances[i] = rows[i]
			}
			want := torchPredict(t, filepath.Join(modelDir, "model.pt"), rows)
			got, err := smoke.Serve(t.Context(), smoke.Input{Image: img, Instances: instances, Want: want, Tolerance: pipeline.SmokeToleranceFloat32})
			if err != nil {
				t.Fatalf("the image's server against torch: %v", err)
			}
			t.Logf("%s: %d test rows, max relative difference %.3g between the served ONNX model and torch", file, got.Rows, got.MaxRelDiff)
		})
	}
}

// built is the image res.Ref names in its OCI layout.
func built(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := oci.ParseLayoutRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(r.Layout())
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(r.Digest())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

const predictPy = `import json, sys, torch
m = torch.jit.load(sys.argv[1])
m.eval()
rows = json.load(sys.stdin)
with torch.no_grad():
    print(json.dumps([float(v) for v in m(torch.tensor(rows, dtype=torch.float32))]))
`

// torchPredict runs model.pt on rows in a fresh python3, in an empty
// directory.
func torchPredict(t *testing.T, modelPT string, rows [][]float64) []float64 {
	t.Helper()
	in, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", "-c", predictPy, modelPT)
	cmd.Dir = t.TempDir()
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("torch.jit.load %s in a fresh python3: %v\n%s", modelPT, err, stderr.String())
	}
	var pred []float64
	if err := json.Unmarshal(bytes.TrimSpace(out), &pred); err != nil || len(pred) != len(rows) {
		t.Fatalf("torch predictions %q: %v", strings.TrimSpace(string(out)), err)
	}
	return pred
}
