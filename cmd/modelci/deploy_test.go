package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/sign"
)

// TestMain stops the test control plane (if a test started one) when the tests end.
func TestMain(m *testing.M) { k8stest.Main(m) }

const (
	cliImage1 = "registry.test:5000/models/diabetes@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	cliImage2 = "registry.test:5000/models/diabetes@sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func decodeReport(t *testing.T, stdout string) deploy.Report {
	t.Helper()
	var rep deploy.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not a report: %v\n%s", err, stdout)
	}
	if rep.Schema != deploy.ReportSchema {
		t.Fatalf("schema %q", rep.Schema)
	}
	return rep
}

func TestDeployStatusHistoryRollbackCLI(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	cluster := []string{"-n", ns, "--kubeconfig", c.Kubeconfig, "--context", k8stest.Context}
	deployArgs := func(ref, version string, extra ...string) []string {
		a := append([]string{"deploy", ref, "--insecure-skip-verify", "--name", "diabetes", "--version", version, "--replicas", "2"}, cluster...)
		return append(a, extra...)
	}

	code, stdout, stderr := run(t, deployArgs(cliImage1, "1.0.0", "-o", "json")...)
	if code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, stderr)
	}
	rep := decodeReport(t, stdout)
	if rep.Action != "deploy" || rep.Result != deploy.ResultRolledOut || rep.Current.Version != "1.0.0" || rep.Current.Image != cliImage1 {
		t.Errorf("deploy report %+v", rep)
	}
	if !strings.Contains(stderr, "WITHOUT verifying") {
		t.Errorf("--insecure-skip-verify did not warn:\n%s", stderr)
	}

	code, stdout, stderr = run(t, deployArgs(cliImage2, "1.1.0", "--strategy", "canary", "--steps", "50,100")...)
	if code != 0 || strings.TrimSpace(stdout) != cliImage2 {
		t.Fatalf("canary deploy: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "canary step 50%: 1 canary, 1 stable replicas") {
		t.Errorf("no canary progress on stderr:\n%s", stderr)
	}

	code, stdout, stderr = run(t, append([]string{"status", "diabetes", "-o", "json"}, cluster...)...)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, stderr)
	}
	if rep := decodeReport(t, stdout); rep.Current.Version != "1.1.0" || len(rep.Workloads) != 1 || rep.Workloads[0].Available != 2 {
		t.Errorf("status report: current %+v, workloads %+v", rep.Current, rep.Workloads)
	}

	// The history only names a release: restoring one needs a verifier, or
	// the flag it was deployed with.
	code, _, stderr = run(t, append([]string{"rollback", "diabetes", "--to", "1.0.0"}, cluster...)...)
	if code != 2 || !strings.Contains(stderr, "--insecure-skip-verify") {
		t.Fatalf("rollback without a verifier: exit %d, want 2\n%s", code, stderr)
	}
	code, stdout, stderr = run(t, append([]string{"rollback", "diabetes", "--to", "1.0.0", "--reason", "drift", "-o", "json", "--insecure-skip-verify"}, cluster...)...)
	if code != 0 {
		t.Fatalf("rollback: exit %d\n%s", code, stderr)
	}
	if rep := decodeReport(t, stdout); rep.Action != "rollback" || rep.Current.Version != "1.0.0" || rep.Current.Reason != "drift" {
		t.Errorf("rollback report: %+v", rep.Current)
	}

	code, stdout, stderr = run(t, append([]string{"history", "diabetes"}, cluster...)...)
	if code != 0 {
		t.Fatalf("history: exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 || !strings.Contains(lines[3], "rollback") || !strings.Contains(lines[3], "drift") || !strings.Contains(lines[2], "1.1.0") {
		t.Errorf("history table:\n%s", stdout)
	}

	code, _, stderr = run(t, append([]string{"status", "unknown"}, cluster...)...)
	if code != 1 || !strings.Contains(stderr, "no release") {
		t.Errorf("status of an unknown app: exit %d\n%s", code, stderr)
	}
	code, _, stderr = run(t, "deploy", cliImage1, "--insecure-skip-verify", "--name", "diabetes", "--version", "1", "-n", "no-such-namespace", "--kubeconfig", c.Kubeconfig, "--context", k8stest.Context)
	if code != 1 || !strings.Contains(stderr, "namespace not found") {
		t.Errorf("missing namespace: exit %d\n%s", code, stderr)
	}
}

func TestDeployCLIRefusals(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	kc := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: test\n  context: {cluster: c, user: u}\n"
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--kubeconfig", kubeconfig, "--context", "test", "--name", "diabetes", "--version", "1.0.0"}
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"tag", append([]string{"deploy", "registry.test/models/diabetes:1.0.0", "-n", "models", "--insecure-skip-verify"}, common...), 1, "not by digest"},
		{"layout", append([]string{"deploy", "oci-layout:///tmp/oci@sha256:1111111111111111111111111111111111111111111111111111111111111111", "-n", "models", "--insecure-skip-verify"}, common...), 1, "oci-layout"},
		{"steps", append([]string{"deploy", cliImage1, "-n", "models", "--insecure-skip-verify", "--strategy", "canary", "--steps", "50,10"}, common...), 2, "invalid canary steps"},
		{"strategy", append([]string{"deploy", cliImage1, "-n", "models", "--insecure-skip-verify", "--strategy", "blue-green"}, common...), 2, "strategy"},
		{"model source", append([]string{"deploy", cliImage1, "-n", "models", "--insecure-skip-verify", "--model-source", "layer"}, common...), 2, "--model-source \"layer\": want image or volume"},
		{"no namespace", append([]string{"deploy", cliImage1, "--insecure-skip-verify"}, common...), 2, "-n NAMESPACE"},
		{"no verification", append([]string{"deploy", cliImage1, "-n", "models"}, common...), 2, "--insecure-skip-verify"},
		{"key and identity", append([]string{"deploy", cliImage1, "-n", "models", "--key", "k.pub", "--certificate-identity", "a", "--certificate-oidc-issuer", "b"}, common...), 2, "mutually exclusive"},
		{"unknown context", []string{"deploy", cliImage1, "-n", "models", "--insecure-skip-verify", "--kubeconfig", kubeconfig, "--context", "prod", "--name", "d", "--version", "1"}, 1, "context \"prod\""},
		{"unreachable", append([]string{"deploy", cliImage1, "-n", "models", "--insecure-skip-verify"}, common...), 1, "unreachable"},
		{"status output", []string{"status", "diabetes", "-n", "models", "-o", "yaml"}, 2, "want text or json"},
		{"history namespace", []string{"history", "diabetes"}, 2, "-n NAMESPACE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Errorf("exit %d; want %d with %q\nstdout: %s\nstderr: %s", code, tt.code, tt.msg, stdout, stderr)
			}
		})
	}
}

func TestDeployDryRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploy")
	sp := filepath.Join(t.TempDir(), "modelci.yaml")
	if err := os.WriteFile(sp, []byte("apiVersion: modelci.dev/v1\ndeploy:\n  namespace: staging\n  replicas: 2\n  services: [predict, preprocess]\n  pdb: {min_available: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "deploy", cliImage1, "--dry-run", dir, "--spec", sp, "--name", "diabetes", "--version", "1.0.0")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, stderr)
	}
	files := strings.Fields(stdout)
	if len(files) != 6 {
		t.Fatalf("dry run wrote %d files; want 6 (2 services, 2 deployments, 2 pdbs):\n%s", len(files), stdout)
	}
	b, err := os.ReadFile(filepath.Join(dir, "deployment-diabetes-preprocess.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"namespace: staging", "replicas: 2", "- --role", "- preprocess", cliImage1} {
		if !strings.Contains(string(b), want) {
			t.Errorf("rendered deployment lacks %q:\n%s", want, b)
		}
	}
}

// TestDeploySpecKeyIsTheSpecDirectorys deploys with --spec from a directory
// that holds another cosign.pub: verify.key: cosign.pub is the spec
// directory's key, so the image signed with it deploys.
func TestDeploySpecKeyIsTheSpecDirectorys(t *testing.T) {
	p := newPromoteProject(t)
	digest := p.publish(t, "1.0.0", modelgate.Pass)
	ref := p.staging + "@" + digest

	other := t.TempDir()
	_, otherPub, err := sign.GenerateKeys([]byte("another-password"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "cosign.pub"), otherPub, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(other)

	ns := p.c.Namespace(t)
	code, stdout, stderr := run(t, "deploy", ref, "--spec", filepath.Join(p.dir, "modelci.yaml"),
		"-n", ns, "--kubeconfig", p.c.Kubeconfig, "--context", k8stest.Context, "-o", "json")
	if code != 0 {
		t.Fatalf("deploy --spec from another directory: exit %d\n%s", code, stderr)
	}
	if rep := decodeReport(t, stdout); rep.Current == nil || rep.Current.Image != ref || rep.Current.Verdict != string(modelgate.Pass) {
		t.Errorf("deploy report %+v", rep)
	}

	// --name and --version are bound to the signed annotations: another
	// model's image cannot be deployed under this name, nor as another
	// version, and the refusal changes nothing.
	history := func() string {
		t.Helper()
		code, out, stderr := run(t, "history", "diabetes", "-n", ns, "--kubeconfig", p.c.Kubeconfig, "--context", k8stest.Context, "-o", "json")
		if code != 0 {
			t.Fatalf("history: exit %d\n%s", code, stderr)
		}
		return out
	}
	before := history()
	for _, flags := range [][]string{{"--name", "other-model"}, {"--version", "9.9.9"}} {
		args := append([]string{"deploy", ref, "--spec", filepath.Join(p.dir, "modelci.yaml"), "-n", ns,
			"--kubeconfig", p.c.Kubeconfig, "--context", k8stest.Context}, flags...)
		code, _, stderr := run(t, args...)
		if code != 3 || !strings.Contains(stderr, "signed as") {
			t.Errorf("deploy %v: exit %d, want 3 naming the signed annotation\n%s", flags, code, stderr)
		}
	}
	if after := history(); after != before {
		t.Errorf("a refused deploy changed the history:\nbefore %s\nafter %s", before, after)
	}

	// The key in the working directory is not the signer's: naming it refuses.
	code, _, stderr = run(t, "deploy", ref, "--key", "cosign.pub", "-n", ns,
		"--kubeconfig", p.c.Kubeconfig, "--context", k8stest.Context)
	if code != 3 {
		t.Errorf("deploy --key of another signer: exit %d, want 3\n%s", code, stderr)
	}
}

// TestDeployModelSource: --model-source overrides the spec's
// deploy.model_source. volume renders the runtime image with the serving
// image's ModelPack artifact mounted (as run.json records both); image,
// over a spec that says volume, renders the serving image and no volume.
func TestDeployModelSource(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/models/diabetes"
	project := example(t, nil)
	code, stdout, stderr := run(t, "run", "-C", project, "--repository", repo, "-o", "json")
	if code != 0 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	doc := decodeOne(t, stdout)
	b, err := os.ReadFile(filepath.Join(doc["run_dir"].(string), "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Outputs struct {
			Push struct{ Ref, ModelPack, Runtime string }
		}
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	push := rec.Outputs.Push
	if push.ModelPack == "" || push.Runtime == "" {
		t.Fatalf("run.json pushed %+v; want the artifact and the runtime image", push)
	}
	sp := filepath.Join(t.TempDir(), "modelci.yaml")
	if err := os.WriteFile(sp, []byte("apiVersion: modelci.dev/v1\ndeploy:\n  namespace: staging\n  model_source: volume\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	render := func(args ...string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "deploy")
		code, _, stderr := run(t, append([]string{"deploy", push.Ref, "--dry-run", dir}, args...)...)
		if code != 0 {
			t.Fatalf("deploy %v: exit %d\n%s", args, code, stderr)
		}
		b, err := os.ReadFile(filepath.Join(dir, "deployment-"+deploy.WorkloadName("diabetes", deploy.RolePredict)+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if d := render("--model-source", "volume"); !strings.Contains(d, "image: "+push.Runtime) || !strings.Contains(d, "reference: "+push.ModelPack) {
		t.Errorf("--model-source volume rendered:\n%s\nwant %s with %s mounted", d, push.Runtime, push.ModelPack)
	}
	if d := render("--spec", sp, "--model-source", "image"); !strings.Contains(d, "image: "+push.Ref) || strings.Contains(d, "reference:") || !strings.Contains(d, "namespace: staging") {
		t.Errorf("--model-source image over the spec's volume rendered:\n%s\nwant %s and no model volume", d, push.Ref)
	}
}
