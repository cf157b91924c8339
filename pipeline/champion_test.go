package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/modelci/modelci/spec"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/evaluate"
	"github.com/modelci/modelci/stages/sign"
)

// championWorld is a prod environment (a registry repository and a
// namespace of the real control plane) running a signed champion 1.0.0,
// released by modelci run with deploy.enabled.
type championWorld struct {
	c        *k8stest.Cluster
	ns       string
	reg      *countingRegistry
	priv     []byte
	pub      []byte
	champion *pipeline.Result
}

func newChampionWorld(t *testing.T) *championWorld {
	t.Helper()
	w := &championWorld{c: k8stest.Start(t), reg: newCountingRegistry(t)}
	w.ns = w.c.Namespace(t)
	var err error
	if w.priv, w.pub, err = sign.GenerateKeys([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MODELCI_KEY_PASSWORD", "pw")
	dir := w.project(t, func(s string) string {
		return s + "deploy:\n  enabled: true\n  context: " + k8stest.Context + "\n  namespace: " + w.ns + "\n"
	})
	if w.champion, err = runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)),
		pipeline.WithRepository(w.reg.repo()), pipeline.WithKubeconfig(w.c.Kubeconfig)); err != nil {
		t.Fatalf("releasing the champion: %v", err)
	}
	return w
}

// project is the example signed and verified with the world's keys.
func (w *championWorld) project(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := project(t, func(s string) string {
		return edit(s + "sign: {key: cosign.key}\nverify: {key: cosign.pub}\n")
	})
	os.WriteFile(filepath.Join(dir, "cosign.key"), w.priv, 0o600)
	os.WriteFile(filepath.Join(dir, "cosign.pub"), w.pub, 0o644)
	return dir
}

// candidate is version 1.1.0 gated against prod's champion, in namespace
// ns; it verifies but, built only into the OCI layout, does not sign.
func (w *championWorld) candidate(t *testing.T, ns string, edit func(string) string) string {
	t.Helper()
	return w.project(t, func(s string) string {
		s = strings.Replace(s, "sign: {key: cosign.key}\n", "", 1)
		s = strings.Replace(s, "version: 1.0.0", "version: 1.1.0", 1)
		s = strings.Replace(s, "  method: t\n", "  method: t\n  baseline: {from: prod}\n", 1)
		s += "environments:\n  prod:\n    repository: " + w.reg.repo() + "\n    context: " + k8stest.Context + "\n    namespace: " + ns + "\n"
		if edit != nil {
			s = edit(s)
		}
		return s
	})
}

func baselineCheck(t *testing.T, r *modelgate.Report) modelgate.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == modelgate.CheckBaseline {
			return c
		}
	}
	t.Fatalf("the gate report has no %s check: %+v", modelgate.CheckBaseline, r.Checks)
	return modelgate.Check{}
}

func TestChampionFromEnvironment(t *testing.T) {
	w := newChampionWorld(t)
	stub := serverRuntime(t)
	run := func(t *testing.T, dir string) (*pipeline.Result, error) {
		return runProject(t, dir, pipeline.WithKubeconfig(w.c.Kubeconfig), pipeline.WithRuntime("linux/amd64", stub))
	}

	t.Run("same split", func(t *testing.T) {
		res, err := run(t, w.candidate(t, w.ns, nil))
		if err != nil {
			t.Fatal(err)
		}
		b := res.Record.Inputs.Baseline
		if b == nil || b.Source != "environment:prod" || b.Image != w.champion.Ref || b.Version != "1.0.0" || b.Rescored {
			t.Fatalf("record baseline = %+v, want prod's champion %s as published", b, w.champion.Ref)
		}
		// The same trainer on the same split: no regression, the champion's own losses.
		if c := baselineCheck(t, res.Report); c.Verdict != modelgate.Pass {
			t.Fatalf("baseline check %+v, want PASS", c)
		}
		if bs := res.Report.Baseline; bs == nil || bs.EvalLoss == nil || *bs.EvalLoss != w.champion.Metrics.Eval.Loss {
			t.Fatalf("report baseline %+v, want the champion's eval loss %v", bs, w.champion.Metrics.Eval.Loss)
		}
	})

	t.Run("another split is re-scored", func(t *testing.T) {
		res, err := run(t, w.candidate(t, w.ns, func(s string) string {
			return strings.Replace(s, "seed: 42", "seed: 7", 1)
		}))
		if err != nil {
			t.Fatal(err)
		}
		b := res.Record.Inputs.Baseline
		if b == nil || !b.Rescored || b.RescoredDigest == "" || b.Image != w.champion.Ref {
			t.Fatalf("record baseline = %+v, want the champion re-scored", b)
		}
		got := rescored(t, res)
		if got.Split.TestDigest != res.Metrics.Split.TestDigest || got.Split.TestDigest == w.champion.Metrics.Split.TestDigest {
			t.Fatalf("re-scored split %s; candidate %s, champion %s", got.Split.TestDigest, res.Metrics.Split.TestDigest, w.champion.Metrics.Split.TestDigest)
		}
		// Independently: the champion's model (from its run) on seed 7's test rows.
		want := scoreModel(t, filepath.Join(w.champion.RunDir, "model", model.FileName), 7)
		if len(got.Eval.PerExample) != len(want) {
			t.Fatalf("%d re-scored losses, want %d", len(got.Eval.PerExample), len(want))
		}
		for i := range want {
			if got.Eval.PerExample[i] != want[i] {
				t.Fatalf("re-scored loss %d = %v, want %v", i, got.Eval.PerExample[i], want[i])
			}
		}
		if bs := res.Report.Baseline; bs == nil || bs.EvalLoss == nil || *bs.EvalLoss != evaluate.Mean(want) {
			t.Fatalf("report baseline %+v, want eval loss %v", bs, evaluate.Mean(want))
		}
	})

	t.Run("re-scored by the external evaluator", func(t *testing.T) {
		dir := w.candidate(t, w.ns, func(s string) string {
			return strings.Replace(s, "seed: 42", "seed: 7", 1) + "evaluate: {command: [python3, evaluator.py]}\n"
		})
		py, err := os.ReadFile(filepath.Join("..", "stages", "evaluate", "testdata", "evaluator.py"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "evaluator.py"), py, 0o644)
		res, err := run(t, dir)
		if err != nil {
			t.Fatal(err)
		}
		got := rescored(t, res)
		want := scoreModel(t, filepath.Join(w.champion.RunDir, "model", model.FileName), 7)
		if !res.Record.Inputs.Baseline.Rescored || len(got.Eval.PerExample) != len(want) {
			t.Fatalf("re-scored %d losses (record %+v), want %d", len(got.Eval.PerExample), res.Record.Inputs.Baseline, len(want))
		}
		for i := range want { // Python sums in another order than Go
			if d := got.Eval.PerExample[i] - want[i]; d > 1e-6*want[i]+1e-9 || -d > 1e-6*want[i]+1e-9 {
				t.Fatalf("re-scored loss %d = %v, built-in %v", i, got.Eval.PerExample[i], want[i])
			}
		}
	})

	t.Run("no release yet", func(t *testing.T) {
		res, err := run(t, w.candidate(t, w.c.Namespace(t), nil))
		if err != nil {
			t.Fatal(err)
		}
		if res.Record.Inputs.Baseline != nil || res.Report.Baseline != nil {
			t.Fatalf("baseline %+v with an empty environment", res.Record.Inputs.Baseline)
		}
	})

	t.Run("champion signed by another key", func(t *testing.T) {
		_, otherPub, err := sign.GenerateKeys(nil)
		if err != nil {
			t.Fatal(err)
		}
		dir := w.candidate(t, w.ns, nil)
		os.WriteFile(filepath.Join(dir, "cosign.pub"), otherPub, 0o644)
		_, err = run(t, dir)
		if !errors.Is(err, pipeline.ErrChampion) || !errors.Is(err, sign.ErrRefused) || !strings.Contains(err.Error(), "champion of prod ("+w.champion.Ref+")") {
			t.Fatalf("run = %v, want the champion refused", err)
		}
		// The refusal is recorded as a failed run, and built nothing.
		list, err := pipeline.Runs(filepath.Join(dir, ".modelci"))
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Runs) != 1 || list.Runs[0].Status != pipeline.StatusFailed || list.Runs[0].ImageDigest != "" {
			t.Fatalf("runs after a refused champion: %+v, want one failed run that built nothing", list.Runs)
		}
	})
}

// TestChampionIsWhatTheEnvironmentRuns: the champion is the image prod's
// Deployment runs, verified, never what prod's history says; a live image
// that is not a digest in prod's repository is refused.
func TestChampionIsWhatTheEnvironmentRuns(t *testing.T) {
	w := newChampionWorld(t)
	stub := serverRuntime(t)
	run := func(t *testing.T) (*pipeline.Result, error) {
		return runProject(t, w.candidate(t, w.ns, nil), pipeline.WithKubeconfig(w.c.Kubeconfig), pipeline.WithRuntime("linux/amd64", stub))
	}
	cms := w.c.Client.CoreV1().ConfigMaps(w.ns)
	cm, err := cms.Get(t.Context(), deploy.HistoryName("diabetes"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A history forged to name another image (here one that does not even
	// exist) is not asked.
	cm.Data["history.json"] = strings.ReplaceAll(cm.Data["history.json"], w.champion.Ref, w.reg.repo()+"@sha256:"+strings.Repeat("0", 64))
	if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := run(t)
	if err != nil {
		t.Fatalf("run against a forged history: %v", err)
	}
	if b := res.Record.Inputs.Baseline; b == nil || b.Image != w.champion.Ref || b.Version != "1.0.0" {
		t.Fatalf("baseline %+v, want what prod runs: %s", b, w.champion.Ref)
	}

	setImage := func(t *testing.T, img string) {
		t.Helper()
		patch := fmt.Appendf(nil, `{"spec":{"template":{"spec":{"containers":[{"name":"model","image":%q}]}}}}`, img)
		// Not t.Context(): it is cancelled before a cleanup runs.
		if _, err := w.c.Client.AppsV1().Deployments(w.ns).Patch(context.Background(), "diabetes", types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	repo, digest, _ := strings.Cut(w.champion.Ref, "@")
	for _, tc := range []struct{ name, image string }{
		{"a tag", repo + ":1.0.0"},
		{"another repository", strings.Replace(repo, "/diabetes", "/other", 1) + "@" + digest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setImage(t, tc.image)
			t.Cleanup(func() { setImage(t, w.champion.Ref) })
			if _, err := run(t); !errors.Is(err, pipeline.ErrChampion) {
				t.Fatalf("prod runs %s: %v, want ErrChampion", tc.image, err)
			}
		})
	}
}

// rescored is the champion's metrics re-scored by the run res.
func rescored(t *testing.T, res *pipeline.Result) *modelgate.Metrics {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(res.RunDir, "champion", "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := modelgate.DecodeMetrics(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scoreModel evaluates the model document at path on the example's test
// split for seed.
func scoreModel(t *testing.T, path string, seed int64) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lin, err := model.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := data.Load(context.Background(), filepath.Join("..", "examples", "linreg", "data", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	_, test, err := data.Split(ds, 0.2, seed)
	if err != nil {
		t.Fatal(err)
	}
	losses, err := evaluate.Builtin(lin, test)
	if err != nil {
		t.Fatal(err)
	}
	return losses
}

func TestBaselineFromSpecErrors(t *testing.T) {
	for _, tt := range []struct {
		name, add, want string
	}{
		{"unknown environment", "environments:\n  staging: {repository: r.example/x, context: c}\nverify: {key: k.pub}\n", `"prod" is not an environment (defined: [staging])`},
		{"no context", "environments:\n  prod: {repository: r.example/x}\nverify: {key: k.pub}\n", "environments.prod.context is empty"},
		{"no verify", "environments:\n  prod: {repository: r.example/x, context: c}\n", "needs verify.key or verify.certificate_identity"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := project(t, func(s string) string {
				return strings.Replace(s, "  method: t\n", "  method: t\n  baseline: {from: prod}\n", 1) + tt.add
			})
			_, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
			if !errors.Is(err, spec.ErrSpec) || !strings.Contains(err.Error(), "gate.baseline.from") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadSpec = %v, want spec.ErrSpec naming gate.baseline.from: %s", err, tt.want)
			}
		})
	}
}
