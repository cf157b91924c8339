package stage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/image"
)

// TestSameAsModelciRun runs the stages as the Dagger module runs them, one
// `stage` command after another through files (without the containers),
// and checks every output against `modelci run` on the same example: the
// module's same-digest promise rests on this.
func TestSameAsModelciRun(t *testing.T) {
	ctx := context.Background()
	specPath, err := filepath.Abs("../../examples/linreg/modelci.yaml")
	if err != nil {
		t.Fatal(err)
	}
	projSpec, err := spec.Load(specPath)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Run(ctx, projSpec, pipeline.WithOutput(t.TempDir()), pipeline.WithCreated(time.Unix(0, 0).UTC()))
	if err != nil {
		t.Fatal(err)
	}
	params := projSpec.Train.Params
	pj, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}

	work := t.TempDir()
	split, out := filepath.Join(work, "split"), filepath.Join(work, "out")
	evalOut, imgOut := filepath.Join(work, "eval"), filepath.Join(work, "image")
	for _, dir := range []string{out, evalOut} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(cmd func(context.Context, []string) error, env map[string]string, args ...string) string {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		stdout := os.Stdout
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout = w
		errc := make(chan error, 1)
		go func() { errc <- cmd(ctx, args) }()
		err = <-errc
		w.Close()
		os.Stdout = stdout
		b, _ := io.ReadAll(r)
		if err != nil {
			t.Fatalf("stage %v: %v", args, err)
		}
		return string(bytes.TrimSpace(b))
	}

	run(splitCmd, nil, "--data", projSpec.Path(projSpec.Data.Path), "--target", projSpec.Data.Target,
		"--fraction", "0.2", "--seed", "42", "--out", split)
	run(trainCmd, map[string]string{
		"MODELCI_DATA": filepath.Join(split, "train"), "MODELCI_OUT": out,
		"MODELCI_PARAMS": string(pj), "MODELCI_SEED": "42",
	}, "--name", projSpec.Model.Name, "--version", projSpec.Model.Version, "--target", projSpec.Data.Target)
	if got := run(digestCmd, nil, filepath.Join(out, "model")); got != res.Record.Outputs.Model.Digest {
		t.Errorf("model digest %s, modelci run's %s", got, res.Record.Outputs.Model.Digest)
	}
	run(evaluateCmd, map[string]string{
		"MODELCI_MODEL": filepath.Join(out, "model"), "MODELCI_DATA": filepath.Join(split, "test"), "MODELCI_OUT": evalOut,
	}, "--target", projSpec.Data.Target)

	var sp Split
	mustReadJSON(t, filepath.Join(split, "split.json"), &sp)
	if sp.DatasetDigest != res.Record.Inputs.Dataset.Digest || sp.TestDigest != res.Record.Inputs.Split.TestDigest {
		t.Errorf("split.json %+v, modelci run's inputs %+v %+v", sp, res.Record.Inputs.Dataset, res.Record.Inputs.Split)
	}
	var preds struct {
		PerExample []float64 `json:"per_example_loss"`
	}
	mustReadJSON(t, filepath.Join(evalOut, "predictions.json"), &preds)
	if len(preds.PerExample) != res.Record.Inputs.Split.TestRows {
		t.Errorf("%d losses for %d test rows", len(preds.PerExample), res.Record.Inputs.Split.TestRows)
	}

	// metrics.json and the gate's report: the same bytes as modelci run's.
	metricsPath := filepath.Join(work, "metrics.json")
	run(metricsCmd, nil, "--spec", specPath, "--split", filepath.Join(split, "split.json"),
		"--train", filepath.Join(out, "train.json"), "--predictions", filepath.Join(evalOut, "predictions.json"),
		"--out", metricsPath)
	gotMetrics, err := os.ReadFile(metricsPath)
	if err != nil {
		t.Fatal(err)
	}
	wantMetrics, err := os.ReadFile(filepath.Join(res.RunDir, "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotMetrics, wantMetrics) {
		t.Errorf("stage metrics wrote\n%.300s\nmodelci run wrote\n%.300s", gotMetrics, wantMetrics)
	}
	gateOut := filepath.Join(work, "gate")
	run(func(ctx context.Context, a []string) error { return gateCmd(ctx, a, decisionCode) }, nil, "--metrics", metricsPath, "--spec", specPath, "--out", gateOut)
	var g GateResult
	mustReadJSON(t, filepath.Join(gateOut, "result.json"), &g)
	if g.Schema != GateSchema || g.Verdict != res.Verdict || g.ExitCode != decisionCode(res.Decision) {
		t.Errorf("stage gate: %+v, modelci run: %s (%s)", g, res.Verdict, res.Decision)
	}
	if md, err := os.ReadFile(filepath.Join(gateOut, "report.md")); err != nil || string(md) != res.Report.Markdown() {
		t.Errorf("stage gate's report.md differs from modelci run's (%v)", err)
	}
	predOut := filepath.Join(work, "predicates")
	run(predicatesCmd, nil, "--metrics", metricsPath, "--spec", specPath, "--started", "2026-01-02T03:04:05Z", "--out", predOut)
	var pred modelgate.GatePredicate
	mustReadJSON(t, filepath.Join(predOut, "gate.json"), &pred)
	if pred.Verdict != res.Verdict || pred.Model.Name != projSpec.Model.Name || pred.Model.Version != projSpec.Model.Version {
		t.Errorf("gate predicate %+v, want %s for %s %s", pred, res.Verdict, projSpec.Model.Name, projSpec.Model.Version)
	}
	var prov struct {
		BuildDefinition struct {
			ResolvedDependencies []struct {
				Digest map[string]string `json:"digest"`
			} `json:"resolvedDependencies"`
		} `json:"buildDefinition"`
	}
	mustReadJSON(t, filepath.Join(predOut, "provenance.json"), &prov)
	found := false
	for _, d := range prov.BuildDefinition.ResolvedDependencies {
		found = found || "sha256:"+d.Digest["sha256"] == res.Record.Inputs.Dataset.Digest
	}
	if !found {
		t.Errorf("provenance names no dependency with the dataset's digest %s: %+v", res.Record.Inputs.Dataset.Digest, prov)
	}

	// The plan: what the module wires its containers with.
	planOut := run(planCmd, nil, "--spec", specPath)
	var plan Plan
	if err := json.Unmarshal([]byte(planOut), &plan); err != nil {
		t.Fatalf("plan %q: %v", planOut, err)
	}
	if plan.Schema != PlanSchema || plan.Model.Name != projSpec.Model.Name || plan.Data.Path != projSpec.Data.Path ||
		plan.Data.Seed != *projSpec.Data.Seed || plan.Train.Builtin != projSpec.Train.Builtin || plan.Train.Params["epochs"] != params["epochs"] {
		t.Errorf("plan %+v does not match the spec", plan)
	}

	rt, err := image.Runtime(ctx, v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(projSpec.Dir))
	if err != nil {
		t.Fatal(err)
	}
	run(imageCmd, nil, "--model", filepath.Join(out, "model"), "--runtime", rt,
		"--name", projSpec.Model.Name, "--version", projSpec.Model.Version, "--dataset-digest", sp.DatasetDigest,
		"--created", "0", "--out", imgOut)
	var img Image
	mustReadJSON(t, filepath.Join(imgOut, "image.json"), &img)
	if img.Digest != res.Record.Outputs.Image.Digest {
		t.Errorf("image digest %s, modelci run's %s", img.Digest, res.Record.Outputs.Image.Digest)
	}
	if _, err := os.Stat(filepath.Join(imgOut, "image.tar")); err != nil {
		t.Errorf("no image tarball for Container.Import: %v", err)
	}
}

func mustReadJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestGateNeedsTheChampion: a policy that compares with an environment's
// champion (gate.baseline.from) and no baseline is refused with
// ErrNoChampion, not passed without the comparison.
func TestGateNeedsTheChampion(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("metric: loss\ndirection: minimize\nthreshold: 5000\nbaseline: {from: prod}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	metrics, err := filepath.Abs("../../modelgate/testdata/diabetes-metrics.json")
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), []string{"gate", "--metrics", metrics, "--policy", policy, "--out", filepath.Join(dir, "out")}, decisionCode)
	if !errors.Is(err, ErrNoChampion) {
		t.Fatalf("gate with baseline.from and no baseline: %v, want ErrNoChampion", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "result.json")); err == nil {
		t.Error("a refused gate wrote result.json")
	}
}

// decisionCode stands in for the CLI's exit-code table: distinct numbers,
// so that the gate step is seen to write the code of its decision.
func decisionCode(d modelgate.Decision) int {
	return map[modelgate.Decision]int{modelgate.Released: 10, modelgate.Held: 14, modelgate.Refused: 13}[d]
}

// TestChampionUnreachable: `stage champion` with an environment whose
// cluster does not answer is refused with ErrNoChampion (the module's
// release stops there), writing nothing.
func TestChampionUnreachable(t *testing.T) {
	dir := t.TempDir()
	spec, err := os.ReadFile("../../examples/linreg/modelci.yaml")
	if err != nil {
		t.Fatal(err)
	}
	csv, err := filepath.Abs("../../examples/linreg/data/diabetes.csv")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(spec), "  method: t\n", "  method: t\n  baseline: {from: prod}\n", 1) +
		"verify: {key: cosign.pub}\nenvironments:\n  prod: {repository: 127.0.0.1:1/prod/diabetes, context: gone, namespace: models}\n"
	s = strings.Replace(s, "path: data/diabetes.csv", "path: "+csv, 1)
	kubeconfig := `apiVersion: v1
kind: Config
clusters: [{name: gone, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: gone, user: {token: x}}]
contexts: [{name: gone, context: {cluster: gone, user: gone}}]
`
	files := map[string]string{"modelci.yaml": s, "kubeconfig": kubeconfig}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	metrics, err := filepath.Abs("../../modelgate/testdata/diabetes-metrics.json")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	err = Run(context.Background(), []string{"champion", "--spec", filepath.Join(dir, "modelci.yaml"), "--metrics", metrics,
		"--test", csv, "--kubeconfig", filepath.Join(dir, "kubeconfig"), "--out", out}, decisionCode)
	if !errors.Is(err, ErrNoChampion) {
		t.Fatalf("champion of an unreachable environment: %v, want ErrNoChampion", err)
	}
	if _, err := os.Stat(filepath.Join(out, "champion.json")); err == nil {
		t.Error("a refused champion step wrote champion.json")
	}
}
