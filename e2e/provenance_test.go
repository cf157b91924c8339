package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/sign"
)

// provenanceRunFields are the provenance fields that name the build
// rather than what was built: who ran it (modelci run names itself or the
// workflow, the module names the Dagger builder) and the run's id and
// times. Everything else must be equal.
var provenanceRunFields = []string{
	"runDetails.builder.id",
	"runDetails.metadata.invocationId",
	"runDetails.metadata.startedOn",
	"runDetails.metadata.finishedOn",
}

// checkProvenance compares the SLSA provenance attested to released (by
// `dagger call release`) with the one `modelci run` attests for the same
// inputs, pushed and signed with the same key into repo: field by field,
// apart from provenanceRunFields. Both are read back from the registry,
// verified with pub.
func checkProvenance(t *testing.T, released, repo, keyPath string, pub []byte, srcRev string) {
	t.Helper()
	sp, err := spec.Load(filepath.Join(repoRoot(t), linregSpec))
	if err != nil {
		t.Fatal(err)
	}
	local, err := pipeline.Run(context.Background(), sp,
		pipeline.WithOutput(t.TempDir()), pipeline.WithCreated(time.Unix(0, 0).UTC()),
		pipeline.WithRepository(repo), pipeline.WithRegistryAuth("", "", true),
		pipeline.WithSigner(sign.KeyFile(keyPath, []byte("pw"))))
	if err != nil {
		t.Fatalf("modelci run: %v", err)
	}
	if !strings.HasPrefix(local.Ref, repo+"@") {
		t.Fatalf("modelci run published %q, want %s@…", local.Ref, repo)
	}
	fetch := func(ref string) map[string]any {
		sts, err := sign.VerifiedStatements(context.Background(), ref, sign.ProvenancePredicateType, sign.VerifyPolicy{Key: pub})
		if err != nil || len(sts) != 1 {
			t.Fatalf("provenance attestations of %s: %d (%v), want 1", ref, len(sts), err)
		}
		var p map[string]any
		if err := json.Unmarshal(sts[0].Predicate, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dagger, run := flatten(fetch(released)), flatten(fetch(local.Ref))

	// The ignored fields are there, and say who built it.
	if id, _ := dagger["runDetails.builder.id"].(string); !strings.HasPrefix(id, "https://modelci.dev/builders/dagger@") {
		t.Errorf("the module's builder id %q, want https://modelci.dev/builders/dagger@…", id)
	}
	if dagger["runDetails.builder.id"] == run["runDetails.builder.id"] {
		t.Errorf("both builder ids are %v: the module names itself", run["runDetails.builder.id"])
	}
	for _, f := range provenanceRunFields {
		delete(dagger, f)
		delete(run, f)
	}
	// Not equal by both lacking it: the source commit is named.
	if srcRev == "" {
		t.Fatalf("no source revision: the repository is not a git checkout")
	}
	if !strings.Contains(fmt.Sprint(run), srcRev) {
		t.Errorf("modelci run's provenance does not name the source revision %s: %v", srcRev, run)
	}
	keys := map[string]bool{}
	for k := range dagger {
		keys[k] = true
	}
	for k := range run {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if !reflect.DeepEqual(dagger[k], run[k]) {
			t.Errorf("provenance %s: dagger call release %v, modelci run %v", k, dagger[k], run[k])
		}
	}
	if len(sorted) < 10 {
		t.Errorf("the provenance has %d fields: %v", len(sorted), sorted)
	}
}

// flatten maps each leaf of a JSON value to its path: a.b for object
// keys, a.N for array elements (resolvedDependencies are compared in
// order: the same function makes both).
func flatten(v any) map[string]any {
	out := map[string]any{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(strings.TrimPrefix(path+"."+k, "."), e)
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s.%d", path, i), e)
			}
		default:
			out[path] = v
		}
	}
	walk("", v)
	return out
}

// TestReleaseChampion: a spec whose gate compares with an environment's
// champion (gate.baseline.from) released by `dagger call release` with the
// kubeconfig and the tunnels is gated against the champion `modelci run`
// finds: the release the environment's namespace of the real control
// plane runs, verified, with its signed metrics. Both decide the same
// verdict with the same checks. Without a kubeconfig the module refuses,
// naming why.
func TestReleaseChampion(t *testing.T) {
	daggerCLI(t)
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	addr := serveRegistry(t)
	repo := addr + "/prod/diabetes"
	priv, pub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MODELCI_KEY_PASSWORD", "pw")
	env := fmt.Sprintf("environments:\n  prod: {repository: %s, context: %s, namespace: %s}\n", repo, k8stest.Context, ns)

	// The champion: 1.0.0 released into prod by modelci run, deployed.
	champDir := releaseProject(t, priv, pub, func(s string) string {
		return s + "sign: {key: cosign.key}\nverify: {key: cosign.pub}\n" +
			"deploy: {enabled: true, context: " + k8stest.Context + ", namespace: " + ns + "}\n"
	})
	champ := runIn(t, champDir, pipeline.WithRepository(repo), pipeline.WithKubeconfig(c.Kubeconfig),
		pipeline.WithRegistryAuth("", "", true))
	checkRunning(t, c, ns, champ.Ref)

	// The candidate: 1.1.0 gated against prod's champion.
	candDir := releaseProject(t, priv, pub, func(s string) string {
		s = strings.Replace(s, "version: 1.0.0", "version: 1.1.0", 1)
		s = strings.Replace(s, "  method: t\n", "  method: t\n  baseline: {from: prod}\n", 1)
		return s + "verify: {key: cosign.pub}\n" + env
	})
	local := runIn(t, candDir, pipeline.WithKubeconfig(c.Kubeconfig))
	if b := local.Record.Inputs.Baseline; b == nil || b.Image != champ.Ref {
		t.Fatalf("modelci run's baseline %+v, want the champion %s", b, champ.Ref)
	}
	var baseline *modelgate.Check
	for i, ch := range local.Report.Checks {
		if ch.Name == modelgate.CheckBaseline {
			baseline = &local.Report.Checks[i]
		}
	}
	if baseline == nil {
		t.Fatalf("modelci run's report has no %s check", modelgate.CheckBaseline)
	}

	out := call(t, "release", "--source", candDir, "--spec", "modelci.yaml",
		"--kubeconfig", "file:"+c.Kubeconfig, "--api-server", apiServerTunnel(t, c), "--registry", "tcp://"+addr, "json")
	checkDocument(t, out, "modelci.dev/dagger-release/v1")
	var rel struct {
		Verdict  string `json:"verdict"`
		Summary  string `json:"summary"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(out), &rel); err != nil {
		t.Fatalf("release output %q: %v", out, err)
	}
	// The exit codes of ARCHITECTURE.md's contract, per decision.
	want := map[modelgate.Decision]int{modelgate.Released: 0, modelgate.Held: 4, modelgate.Refused: 3}[local.Decision]
	if rel.Verdict != string(local.Verdict) || rel.ExitCode != want {
		t.Errorf("release verdict %s (exit %d), modelci run's %s (%s, exit %d)", rel.Verdict, rel.ExitCode, local.Verdict, local.Decision, want)
	}
	// The report renders every check with its estimate, interval and
	// threshold: equal reports, equal checks.
	if want := strings.TrimSpace(local.Report.Markdown()); !strings.Contains(rel.Summary, want) {
		t.Errorf("the release's gate report differs from modelci run's:\n%s\nwant it to contain\n%s", rel.Summary, want)
	}
	if !strings.Contains(rel.Summary, "champion of `prod`") || !strings.Contains(rel.Summary, champ.Ref) {
		t.Errorf("the release summary does not name prod's champion %s:\n%s", champ.Ref, rel.Summary)
	}

	t.Run("no kubeconfig", func(t *testing.T) {
		err := callErr(t, "release", "--source", candDir, "--spec", "modelci.yaml", "json")
		if err == nil || !strings.Contains(err.Error(), "gate.baseline.from needs the champion's metrics") {
			t.Errorf("release without a kubeconfig: %v, want the named refusal", err)
		}
	})
}

// releaseProject is a source directory for `dagger call release` and
// modelci run: the example's spec edited, its data, and the keys.
func releaseProject(t *testing.T, priv, pub []byte, edit func(string) string) string {
	t.Helper()
	root := filepath.Join(repoRoot(t), filepath.Dir(linregSpec))
	sp, err := os.ReadFile(filepath.Join(root, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	csv, err := os.ReadFile(filepath.Join(root, "data", "diabetes.csv"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		"modelci.yaml": []byte(edit(string(sp))), "data/diabetes.csv": csv,
		"cosign.key": priv, "cosign.pub": pub,
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runIn is `modelci run` on dir's spec into a temporary output directory.
func runIn(t *testing.T, dir string, opts ...pipeline.Option) *pipeline.Result {
	t.Helper()
	sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Run(context.Background(), sp, append([]pipeline.Option{
		pipeline.WithOutput(t.TempDir()), pipeline.WithCreated(time.Unix(0, 0).UTC())}, opts...)...)
	if err != nil {
		t.Fatalf("modelci run in %s: %v", dir, err)
	}
	return res
}
