package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGateBaselineFromNeedsAFile: modelci gate compares files, so a policy
// naming an environment's champion needs the champion's metrics given.
func TestGateBaselineFromNeedsAFile(t *testing.T) {
	dir := t.TempDir()
	metrics, err := os.ReadFile("../../modelgate/testdata/diabetes-metrics.json")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "metrics.json"), metrics, 0o644)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("metric: loss\nthreshold: 5000\nbaseline: {from: prod}\n"), 0o644)

	code, _, stderr := run(t, "gate", "-C", dir, "--metrics", "metrics.json", "--policy", "policy.yaml")
	if code != 2 || !strings.Contains(stderr, "--baseline") || !strings.Contains(stderr, `"prod"`) {
		t.Fatalf("exit %d, stderr %q; want 2 asking for --baseline", code, stderr)
	}
	code, stdout, stderr := run(t, "gate", "-C", dir, "--metrics", "metrics.json", "--policy", "policy.yaml", "--baseline", "metrics.json", "-o", "json")
	if code != 0 || !strings.Contains(stdout, `"baseline"`) {
		t.Fatalf("exit %d with --baseline, stderr %q", code, stderr)
	}
}
