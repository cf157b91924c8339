package pipeline_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
)

// project copies the linreg example into a temporary directory, with the
// spec edited by edit.
func project(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "examples", "linreg")
	sp, err := os.ReadFile(filepath.Join(src, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		sp = []byte(edit(string(sp)))
	}
	csv, err := os.ReadFile(filepath.Join(src, "data", "diabetes.csv"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "modelci.yaml"), sp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "diabetes.csv"), csv, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runProject(t *testing.T, dir string, opts ...pipeline.Option) (*pipeline.Result, error) {
	t.Helper()
	sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run log:\n%s", log.String())
		}
	})
	return pipeline.Run(context.Background(), sp, append([]pipeline.Option{pipeline.WithLog(&log)}, opts...)...)
}

// TestEndToEnd runs the example, then starts the server binary taken out of
// the image's layers and checks that it predicts what the trained model does.
func TestEndToEnd(t *testing.T) {
	dir := project(t, nil)
	var stages []string
	res, err := runProject(t, dir, pipeline.WithProgress(func(e pipeline.Event) { stages = append(stages, e.Stage) }))
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != modelgate.Released || res.Verdict != modelgate.Pass {
		t.Fatalf("verdict %s, decision %s", res.Verdict, res.Decision)
	}
	if got := strings.Join(stages, ","); got != "data,train,evaluate,gate,image,smoke" {
		t.Fatalf("stages = %s", got)
	}
	// The image that ships served every test row as the evaluator scored it.
	if sm := res.Record.Outputs.Smoke; sm == nil || sm.Kind != "served" || !sm.Compared || sm.Rows != res.Record.Inputs.Split.TestRows || sm.MaxRelDiff > pipeline.SmokeTolerance || sm.Entrypoint[0] != image.RuntimePath {
		t.Fatalf("smoke record %+v", res.Record.Outputs.Smoke)
	}
	out := filepath.Join(dir, ".modelci")
	resRef, err := oci.ParseLayoutRef(res.Ref)
	if err != nil {
		t.Fatalf("result ref %q: %v", res.Ref, err)
	}
	layoutDir, digest := resRef.Layout(), resRef.Digest()
	if layoutDir != filepath.Join(out, "oci") {
		t.Fatalf("layout %s, want %s", layoutDir, filepath.Join(out, "oci"))
	}

	// The run record and reports.
	for _, f := range []string{"run.json", "metrics.json", "gate.json", "gate.md", "loss.svg", "loss.png", "losses.svg", "losses.png", "predictions.svg", "predictions.png", "model/model.json"} {
		if _, err := os.Stat(filepath.Join(res.RunDir, f)); err != nil {
			t.Errorf("run output %s: %v", f, err)
		}
	}
	// The plots' titles name the model, its version and the verdict; the
	// predictions are the evaluator's, one per test row.
	for f, title := range map[string]string{
		"loss.svg":        ">diabetes 1.0.0: gate PASS — loss</text>",
		"losses.svg":      ">diabetes 1.0.0: gate PASS — per-example eval loss (88 test rows)</text>",
		"predictions.svg": ">diabetes 1.0.0: gate PASS — predicted vs actual (88 test rows)</text>",
	} {
		if b, err := os.ReadFile(filepath.Join(res.RunDir, f)); err != nil || !bytes.Contains(b, []byte(title)) {
			t.Errorf("%s lacks its title %q (%v)", f, title, err)
		}
	}
	rec, err := pipeline.ReadRecord(out, res.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Outputs.Image == nil || rec.Outputs.Image.Digest != digest.String() || rec.Verdict != modelgate.Pass {
		t.Fatalf("record image %+v verdict %s, want digest %s", rec.Outputs.Image, rec.Verdict, digest)
	}
	if rec.Inputs.Dataset.Rows != 442 || rec.Inputs.Split.TestRows+rec.Inputs.Split.TrainRows != 442 {
		t.Fatalf("record dataset %+v split %+v", rec.Inputs.Dataset, rec.Inputs.Split)
	}
	mb, err := os.ReadFile(filepath.Join(res.RunDir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := modelgate.DecodeMetrics(mb)
	if err != nil {
		t.Fatalf("metrics.json: %v", err)
	}
	if metrics.Split.TestDigest != rec.Inputs.Split.TestDigest || len(metrics.Eval.PerExample) != rec.Inputs.Split.TestRows {
		t.Fatalf("metrics split %+v vs record %+v", metrics.Split, rec.Inputs.Split)
	}

	// The image, as go-containerregistry reads it from the layout.
	p, err := layout.FromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Fatalf("config user %q platform %s/%s", cf.Config.User, cf.OS, cf.Architecture)
	}
	files := extract(t, img)
	bin, ok := files["usr/local/bin/modelci-serve"]
	if !ok {
		t.Fatalf("no runtime binary in the image; files: %v", keys(files))
	}
	modelJSON, ok := files["model/model.json"]
	if !ok {
		t.Fatalf("no model in the image; files: %v", keys(files))
	}
	m, err := model.Decode(modelJSON)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "diabetes" || m.Version != "1.0.0" {
		t.Fatalf("model %s %s", m.Name, m.Version)
	}

	// Start the server from the image's own files.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "model"), 0o755)
	os.WriteFile(filepath.Join(root, "model", "model.json"), modelJSON, 0o644)
	binPath := filepath.Join(root, "modelci-serve")
	if err := os.WriteFile(binPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := startServer(t, binPath, filepath.Join(root, "model"))

	ds, err := data.Load(context.Background(), filepath.Join(dir, "data", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	instances := make([][]float64, 20)
	for i := range instances {
		instances[i] = ds.Row(i)
	}
	body, _ := json.Marshal(map[string]any{"instances": instances})
	resp, err := http.Post("http://"+addr+"/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Predictions []float64 }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("predict: status %d, %v", resp.StatusCode, err)
	}
	if len(got.Predictions) != len(instances) {
		t.Fatalf("%d predictions for %d instances", len(got.Predictions), len(instances))
	}
	for i, x := range instances {
		if want := m.Predict(x); got.Predictions[i] != want {
			t.Errorf("prediction %d = %v, in-process model says %v", i, got.Predictions[i], want)
		}
	}

	// Reproducible: the same inputs in another output directory give the
	// same model and image digests.
	res2, err := runProject(t, dir, pipeline.WithOutput(filepath.Join(t.TempDir(), "out")))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Record.Outputs.Image.Digest != digest.String() || res2.Record.Outputs.Model.Digest != rec.Outputs.Model.Digest {
		t.Fatalf("second build: image %s model %s, first: image %s model %s",
			res2.Record.Outputs.Image.Digest, res2.Record.Outputs.Model.Digest, digest, rec.Outputs.Model.Digest)
	}
}

// startServer runs the image's server and returns the address it listens
// on, read from its "listening" log line.
func startServer(t *testing.T, bin, modelDir string) string {
	t.Helper()
	cmd := exec.Command(bin, "--model", modelDir, "--addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" && line.Addr != "" {
			go io.Copy(io.Discard, stderr)
			return line.Addr
		}
	}
	t.Fatalf("server exited before listening: %v", sc.Err())
	return ""
}

// extract returns every regular file of the image's flattened layers.
func extract(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				files[strings.TrimPrefix(h.Name, "/")] = b
			}
		}
		rc.Close()
	}
	return files
}

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestGateFailBuildsNothing: a FAIL verdict writes the report and the run
// record, builds no image and says exit 3.
func TestGateFailBuildsNothing(t *testing.T) {
	dir := project(t, func(s string) string { return strings.Replace(s, "threshold: 5000", "threshold: 100", 1) })
	res, err := runProject(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != modelgate.Fail || res.Decision != modelgate.Refused || res.Ref != "" {
		t.Fatalf("verdict %s decision %s ref %q", res.Verdict, res.Decision, res.Ref)
	}
	if _, err := os.Stat(filepath.Join(dir, ".modelci", "oci")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an image layout was written: %v", err)
	}
	rec, err := pipeline.ReadRecord(filepath.Join(dir, ".modelci"), res.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Verdict != modelgate.Fail || rec.Outputs.Image != nil || rec.Decision != modelgate.Refused {
		t.Fatalf("record verdict %s image %+v decision %s", rec.Verdict, rec.Outputs.Image, rec.Decision)
	}
	if _, err := os.Stat(filepath.Join(res.RunDir, "gate.md")); err != nil {
		t.Fatal(err)
	}
}

// TestFailedRunKeepsEarlierResults: a run that errors part-way leaves its
// failed record, no temporary files, and earlier runs intact.
func TestFailedRunKeepsEarlierResults(t *testing.T) {
	dir := project(t, func(s string) string { return strings.Replace(s, "threshold: 5000", "threshold: 100", 1) })
	out := filepath.Join(dir, ".modelci")
	first, err := runProject(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, first.RunDir)
	// Break the data: the next run fails in the data stage.
	csv := filepath.Join(dir, "data", "diabetes.csv")
	if err := os.WriteFile(csv, []byte("age,target\n1,2\nNaN,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := runProject(t, dir)
	if err == nil || !strings.Contains(err.Error(), "diabetes.csv:3:1") {
		t.Fatalf("err = %v, want a data error at diabetes.csv:3:1", err)
	}
	entries, err := os.ReadDir(pipeline.RunsDir(out))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if res == nil || len(entries) != 2 || names[0] != first.RunID || names[1] != res.RunID {
		t.Fatalf("runs = %v, want %s and the failed run", names, first.RunID)
	}
	rec, err := pipeline.ReadRecord(out, res.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != pipeline.StatusFailed || rec.FailedStage != "data" || !strings.Contains(rec.Error, "diabetes.csv:3:1") {
		t.Fatalf("failed record: status %s stage %q error %q", rec.Status, rec.FailedStage, rec.Error)
	}
	if after := snapshot(t, first.RunDir); !maps.Equal(before, after) {
		t.Fatalf("the failed run changed the earlier run's files")
	}
}

// snapshot maps every file under dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestBaselineIsLastPassingRun: a second run compares with the first.
func TestBaselineIsLastPassingRun(t *testing.T) {
	dir := project(t, nil)
	bin := serverRuntime(t)
	first, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", bin))
	if err != nil {
		t.Fatal(err)
	}
	if first.Record.Inputs.Baseline != nil {
		t.Fatalf("first run has a baseline: %+v", first.Record.Inputs.Baseline)
	}
	second, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", bin))
	if err != nil {
		t.Fatal(err)
	}
	b := second.Record.Inputs.Baseline
	if b == nil || b.Source != "run:"+first.RunID || b.Digest != first.Record.Outputs.Metrics.Digest {
		t.Fatalf("baseline = %+v, want run:%s with digest %s", b, first.RunID, first.Record.Outputs.Metrics.Digest)
	}
	var hasBaselineCheck bool
	for _, c := range second.Report.Checks {
		hasBaselineCheck = hasBaselineCheck || c.Name == modelgate.CheckBaseline
	}
	if !hasBaselineCheck || second.Verdict != modelgate.Pass {
		t.Fatalf("second run: verdict %s, baseline check %v", second.Verdict, hasBaselineCheck)
	}
}

// TestOneRunAtATime: a second run on a locked output directory is refused.
func TestOneRunAtATime(t *testing.T) {
	dir := project(t, nil)
	l, err := pipeline.LockDir(filepath.Join(dir, ".modelci"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if _, err := runProject(t, dir); !errors.Is(err, pipeline.ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
}

// serverRuntime is the image server for linux/amd64.
func serverRuntime(t *testing.T) string {
	t.Helper()
	// The real server, built from this checkout and cached by source
	// digest: the smoke test starts it from every image a test builds. A
	// copy, so that a test may change it without touching the cache.
	bin, err := image.Runtime(t.Context(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(".."))
	if err != nil {
		t.Fatalf("the runtime: %v", err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), image.RuntimeName)
	if err := os.WriteFile(cp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return cp
}

func appendByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0})
	f.Close()
}
