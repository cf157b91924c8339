package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

func githubFixture(t *testing.T) (*modelgate.Report, *modelgate.Metrics) {
	t.Helper()
	m := &modelgate.Metrics{Schema: modelgate.MetricsSchema, Train: modelgate.TrainMetrics{Loss: []float64{9, 5, 4}}}
	for i := range 20 {
		m.Eval.PerExample = append(m.Eval.PerExample, 4+float64(i%5))
	}
	m.Eval.Loss = 6
	m.Split.TestRows = 20
	p, err := modelgate.DecodePolicy("policy", []byte("threshold: 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := modelgate.Evaluate(p, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != modelgate.Fail {
		t.Fatalf("fixture verdict %s, want FAIL", r.Verdict)
	}
	return r, m
}

// captureStderr runs f with os.Stderr writing to a file and returns what it wrote.
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	tmp, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = tmp
	defer func() { os.Stderr = old }()
	f()
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReportToGitHub(t *testing.T) {
	r, m := githubFixture(t)
	dir := t.TempDir()
	summary, output := filepath.Join(dir, "summary"), filepath.Join(dir, "output")
	t.Setenv("GITHUB_ACTIONS", "true")
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	t.Setenv("GITHUB_OUTPUT", output)
	t.Setenv("GITHUB_SERVER_URL", "https://github.com")
	t.Setenv("GITHUB_REPOSITORY", "acme/models")
	t.Setenv("GITHUB_RUN_ID", "7")
	t.Setenv(envArtifactURL, "")

	var err error
	stderr := captureStderr(t, func() {
		err = reportToGitHub(r, m, map[string]string{"model": "diabetes", "version": "1.0.0"})
	})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := os.ReadFile(summary)
	for _, want := range []string{"## modelci: `diabetes`", "| version | `1.0.0` |", "### modelci gate: ❌ FAIL", "xychart-beta", "(https://github.com/acme/models/actions/runs/7)"} {
		if !strings.Contains(string(s), want) {
			t.Errorf("job summary lacks %q:\n%s", want, s)
		}
	}
	o, _ := os.ReadFile(output)
	for _, want := range []string{"model=diabetes\n", "verdict=FAIL\n", "version=1.0.0\n", "comment<<ghadelimiter_", "<!-- modelci-gate:diabetes -->\n"} {
		if !strings.Contains(string(o), want) {
			t.Errorf("outputs lack %q:\n%s", want, o)
		}
	}
	if !strings.HasPrefix(stderr, "::error title=modelci gate%3A diabetes FAIL::check threshold is FAIL") {
		t.Errorf("annotations on stderr:\n%s", stderr)
	}
}

func TestReportToGitHubOffRunner(t *testing.T) {
	r, m := githubFixture(t)
	summary := filepath.Join(t.TempDir(), "summary")
	t.Setenv("GITHUB_STEP_SUMMARY", summary)
	t.Setenv("GITHUB_OUTPUT", "")

	t.Setenv("GITHUB_ACTIONS", "")
	stderr := captureStderr(t, func() {
		if err := reportToGitHub(r, m, nil); err != nil {
			t.Error(err)
		}
	})
	if _, err := os.Stat(summary); !os.IsNotExist(err) || stderr != "" {
		t.Errorf("off a runner it wrote a summary (stat: %v) or annotations %q", err, stderr)
	}

	// On a runner without an output file (as in a container), the rest is written.
	t.Setenv("GITHUB_ACTIONS", "true")
	captureStderr(t, func() {
		if err := reportToGitHub(r, m, nil); err != nil {
			t.Errorf("a missing GITHUB_OUTPUT: %v, want it skipped", err)
		}
	})
	if b, _ := os.ReadFile(summary); !strings.Contains(string(b), "## modelci: `model`") {
		t.Errorf("summary without a model name: want the fallback name, got\n%s", b)
	}
}
