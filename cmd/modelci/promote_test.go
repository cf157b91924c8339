package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/internal/ocitest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/sign"
)

// promoteProject is a project whose staging and prod environments are two
// in-process registries and two namespaces of the test control plane.
type promoteProject struct {
	dir, staging, prod, prodNS string
	key                        sign.SignerSource
	c                          *k8stest.Cluster
}

func newPromoteProject(t *testing.T) *promoteProject {
	t.Helper()
	c := k8stest.Start(t)
	const pw = "promote-cli-password"
	t.Setenv(sign.EnvKeyPassword, pw)
	t.Setenv(sign.EnvCosignPassword, "")
	priv, pub, err := sign.GenerateKeys([]byte(pw))
	if err != nil {
		t.Fatal(err)
	}
	p := &promoteProject{staging: ocitest.Registry(t) + "/staging/diabetes", prod: ocitest.Registry(t) + "/prod/diabetes", prodNS: c.Namespace(t), key: sign.Key(priv, []byte(pw)), c: c}
	stagingNS := c.Namespace(t)
	p.dir = example(t, func(s string) string {
		return s + fmt.Sprintf(`
sign:
  key: cosign.key
verify:
  key: cosign.pub
deploy:
  replicas: 2
  progress_deadline_seconds: 30
environments:
  staging:
    repository: %s
    context: %s
    namespace: %s
  prod:
    repository: %s
    context: %s
    namespace: %s
    constraint: ">= 1.0, < 2.0"
`, p.staging, k8stest.Context, stagingNS, p.prod, k8stest.Context, p.prodNS)
	})
	os.WriteFile(filepath.Join(p.dir, "cosign.key"), priv, 0o600)
	os.WriteFile(filepath.Join(p.dir, "cosign.pub"), pub, 0o644)
	return p
}

// publish pushes diabetes@version to staging, signed and gate-attested with verdict.
func (p *promoteProject) publish(t *testing.T, version string, verdict modelgate.Verdict) string {
	t.Helper()
	sp, err := spec.Load(filepath.Join(p.dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return ocitest.Publish(t, p.staging, "diabetes", version, ocitest.Keys{Signer: p.key}, ocitest.Published{Verdict: verdict, Gate: &sp.Gate})
}

func (p *promoteProject) promote(t *testing.T, ref string, extra ...string) (int, string, string) {
	t.Helper()
	a := append([]string{"promote", ref, "--from", "staging", "--to", "prod", "-C", p.dir, "--kubeconfig", p.c.Kubeconfig}, extra...)
	return run(t, a...)
}

func TestPromoteCLI(t *testing.T) {
	p := newPromoteProject(t)
	d1 := p.publish(t, "1.0.0", modelgate.Pass)
	d2 := p.publish(t, "1.1.0", modelgate.Pass)
	p.publish(t, "1.2.0", modelgate.Inconclusive)

	code, stdout, stderr := p.promote(t, "diabetes@1.0.0", "--reason", "first release")
	t.Logf("modelci promote diabetes@1.0.0 (stderr):\n%s", stderr)
	if code != 0 || strings.TrimSpace(stdout) != p.prod+"@"+d1 {
		t.Fatalf("promote 1.0.0: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = p.promote(t, "diabetes@1.1.0", "-o", "json")
	var res struct {
		Image string `json:"image"`
		Steps []struct {
			Name     string `json:"name"`
			Duration int64  `json:"duration_ns"`
		} `json:"steps"`
		Previous *struct{ Version string } `json:"previous"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); code != 0 || err != nil {
		t.Fatalf("promote 1.1.0 -o json: exit %d, %v\n%s\n%s", code, err, stdout, stderr)
	}
	if res.Image != p.prod+"@"+d2 || len(res.Steps) != 5 || res.Steps[4].Name != "deploy" || res.Steps[4].Duration <= 0 || res.Previous == nil || res.Previous.Version != "1.0.0" {
		t.Fatalf("promote 1.1.0 result %+v", res)
	}

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"inconclusive without approval", []string{"diabetes@1.2.0"}, 3},
		{"downgrade", []string{"diabetes@1.0.0"}, 3},
		{"approve without reason", []string{"diabetes@1.2.0", "--approve"}, 2},
		{"not NAME@VERSION", []string{"diabetes"}, 2},
		{"unknown environment", []string{"diabetes@1.2.0", "--to", "qa"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := p.promote(t, tc.args[0], tc.args[1:]...)
			if code != tc.want || stdout != "" {
				t.Fatalf("exit %d, stdout %q, want exit %d and no output\n%s", code, stdout, tc.want, stderr)
			}
		})
	}

	env := []string{"-C", p.dir, "--kubeconfig", p.c.Kubeconfig}
	code, stdout, stderr = run(t, append([]string{"history", "diabetes", "--env", "prod", "-o", "json"}, env...)...)
	rep := decodeReport(t, stdout)
	if code != 0 || rep.Namespace != p.prodNS || len(rep.History) != 2 || rep.History[0].Reason != "first release" || rep.History[1].Reason != "promoted from staging" {
		t.Fatalf("history --env prod: exit %d, %+v\n%s", code, rep.History, stderr)
	}
	// The registry's signed promotion attestations join the cluster's records.
	for i, want := range []struct{ reason, previous string }{{"first release", ""}, {"", "1.0.0"}} {
		pr := rep.History[i].Promotion
		if pr == nil || pr.From != "staging" || pr.Who == "" || pr.Reason != want.reason || pr.PreviousVersion != want.previous || pr.When.IsZero() {
			t.Fatalf("history entry %d promotion = %+v, want from staging, reason %q, previous %q", i, pr, want.reason, want.previous)
		}
	}
	code, stdout, _ = run(t, append([]string{"history", "diabetes", "--env", "prod"}, env...)...)
	if code != 0 || !strings.Contains(stdout, "PROMOTED") || strings.Count(stdout, "from staging by ") != 2 {
		t.Fatalf("history --env prod (text): exit %d\n%s", code, stdout)
	}

	// A history that names an image prod's policy does not verify: exit 3,
	// nothing changed.
	unsigned := p.prod + "@" + ocitest.Publish(t, p.prod, "diabetes", "0.9.0", ocitest.Keys{}, ocitest.Published{Unsigned: true})
	cms := p.c.Client.CoreV1().ConfigMaps(p.prodNS)
	cm, err := cms.Get(t.Context(), deploy.HistoryName("diabetes"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	original := cm.Data["history.json"]
	cm.Data["history.json"] = strings.Replace(original, p.prod+"@"+d1, unsigned, 1)
	if cm, err = cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = run(t, append([]string{"rollback", "diabetes", "--env", "prod", "--reason", "p99 latency"}, env...)...)
	if code != 3 || stdout != "" || !strings.Contains(stderr, "no signatures found") {
		t.Fatalf("rollback --env prod to a forged release: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	cm.Data["history.json"] = original
	if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr = run(t, append([]string{"rollback", "diabetes", "--env", "prod", "--reason", "p99 latency"}, env...)...)
	if code != 0 || strings.TrimSpace(stdout) != p.prod+"@"+d1 {
		t.Fatalf("rollback --env prod: exit %d, stdout %q\n%s", code, stdout, stderr)
	}

	code, stdout, stderr = run(t, append([]string{"status", "diabetes", "-o", "json"}, env...)...)
	var st pipeline.EnvStatusReport
	if err := json.Unmarshal([]byte(stdout), &st); code != 0 || err != nil {
		t.Fatalf("status across environments: exit %d, %v\n%s\n%s", code, err, stdout, stderr)
	}
	if len(st.Environments) != 2 {
		t.Fatalf("status rows = %+v", st.Environments)
	}
	prod, staging := st.Environments[0], st.Environments[1]
	if prod.Environment != "prod" || prod.Version != "1.0.0" || prod.Digest != d1 || prod.Verdict != "PASS" || prod.Health != "healthy" || prod.Since == nil {
		t.Errorf("prod row = %+v", prod)
	}
	if staging.Environment != "staging" || staging.Version != "" || staging.Health != "no release" {
		t.Errorf("staging row = %+v", staging)
	}
	code, stdout, _ = run(t, append([]string{"status", "diabetes"}, env...)...)
	t.Logf("modelci status diabetes:\n%s", stdout)
	if code != 0 || !strings.Contains(stdout, "prod") || !strings.Contains(stdout, "1.0.0") || !strings.Contains(stdout, shortDigest(d1)) {
		t.Errorf("status table: exit %d\n%s", code, stdout)
	}
	code, _, _ = run(t, append([]string{"status", "diabetes", "--env", "prod", "-n", "x"}, env...)...)
	if code != 2 {
		t.Errorf("status --env with -n: exit %d, want 2", code)
	}
	code, stdout, _ = run(t, append([]string{"status", "diabetes", "--env", "prod", "-o", "json"}, env...)...)
	if rep := decodeReport(t, stdout); code != 0 || rep.Current == nil || rep.Current.Action != deploy.ActionRollback || rep.Current.Reason != "p99 latency" {
		t.Errorf("status --env prod: exit %d, current %+v", code, rep.Current)
	}
}
