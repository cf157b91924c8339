package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// example copies examples/linreg into a temporary directory with its spec
// edited by edit.
func example(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	sp, err := os.ReadFile("../../examples/linreg/modelci.yaml")
	if err != nil {
		t.Fatal(err)
	}
	csv, err := os.ReadFile("../../examples/linreg/data/diabetes.csv")
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		sp = []byte(edit(string(sp)))
	}
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	os.WriteFile(filepath.Join(dir, "modelci.yaml"), sp, 0o644)
	os.WriteFile(filepath.Join(dir, "data", "diabetes.csv"), csv, 0o644)
	return dir
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunPrintsTheReferenceLast(t *testing.T) {
	dir := example(t, nil)
	code, stdout, stderr := run(t, "run", "-C", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "oci-layout://"+filepath.Join(dir, ".modelci", "oci")+"@sha256:") {
		t.Fatalf("stdout = %q, want one oci-layout reference", stdout)
	}
	for _, stage := range []string{"data", "train", "evaluate", "gate", "image"} {
		if !strings.Contains(stderr, "\n"+stage+" ") && !strings.HasPrefix(stderr, stage+" ") {
			t.Errorf("no progress line for %s in:\n%s", stage, stderr)
		}
	}
	for _, figure := range []string{"300 epochs", "final loss", "eval loss", "PASS", "sha256:"} {
		if !strings.Contains(stderr, figure) {
			t.Errorf("progress lacks %q:\n%s", figure, stderr)
		}
	}
}

func TestRunFailExits3WithEmptyStdout(t *testing.T) {
	dir := example(t, func(s string) string { return strings.Replace(s, "threshold: 5000", "threshold: 10", 1) })
	code, stdout, stderr := run(t, "run", "-C", dir)
	if code != 3 || stdout != "" {
		t.Fatalf("exit %d, stdout %q; want 3 and nothing\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "FAIL") || strings.Contains(stderr, "\nimage ") {
		t.Fatalf("stderr:\n%s", stderr)
	}
}

func TestExitCodes(t *testing.T) {
	dir := example(t, nil)
	bad := example(t, func(s string) string { return s + "bogus: 1\n" })
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"unknown flag", []string{"run", "--nope"}, 2, "unknown flag"},
		{"extra argument", []string{"run", "x"}, 2, "unknown command"},
		{"missing spec", []string{"run", "-C", t.TempDir()}, 1, "modelci init"},
		{"bad spec", []string{"run", "-C", bad}, 1, "modelci.yaml:"},
		{"init refuses to overwrite", []string{"init", "-C", dir}, 1, "already exists"},
		{"init bad name", []string{"init", "-C", t.TempDir(), "--name", "Not_A_Label"}, 2, "model.name"},
		{"runner without context", []string{"run", "-C", dir, "--runner", "kubernetes", "--repository", "127.0.0.1:1/ml/x"}, 1, "train.kubernetes.context: no kubeconfig context named for training"},
		{"runner unknown context", []string{"run", "-C", dir, "--runner", "kubernetes", "--repository", "127.0.0.1:1/ml/x", "--context", "nowhere", "--kubeconfig", filepath.Join(dir, "none")}, 1, "train on nowhere: kubeconfig"},
		{"runner without repository", []string{"run", "-C", dir, "--runner", "kubernetes", "--context", "lab"}, 1, "train.kubernetes.repository"},
		{"bad runner", []string{"run", "-C", dir, "--runner", "cloud"}, 1, `train.runner: invalid spec: "cloud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tt.code, tt.msg)
			}
		})
	}
}

func TestInitWritesAValidStarter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "churn")
	os.Mkdir(dir, 0o755)
	code, stdout, stderr := run(t, "init", "-C", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "name: churn") || !strings.Contains(string(b), "#") {
		t.Fatalf("starter:\n%s", b)
	}
}

func TestRunPushesAndRebuilds(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New())
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/models/diabetes"
	dir := example(t, nil)
	code, stdout, stderr := run(t, "run", "-C", dir, "--repository", repo)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	ref := strings.TrimSpace(stdout)
	if !strings.HasPrefix(ref, repo+"@sha256:") {
		t.Fatalf("stdout %q, want %s@sha256:…", stdout, repo)
	}
	m := regexp.MustCompile(`run (\S+): `).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no run id in:\n%s", stderr)
	}
	code, stdout, stderr = run(t, "rebuild", m[1], "-C", dir)
	if code != 0 || !strings.Contains(stdout, "ok   image") || strings.Contains(stdout, "DIFF") {
		t.Fatalf("rebuild: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, _, stderr := run(t, "run", "-C", dir, "--repository", "not a repo"); code != 2 {
		t.Fatalf("bad --repository: exit %d, %s", code, stderr)
	}
}
