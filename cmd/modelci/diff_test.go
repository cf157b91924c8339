package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiff: modelci diff prints the metrics table, takes the direction
// from DIR/modelci.yaml's gate, treats a missing BASE as no base, and
// wants exactly two arguments.
func TestDiff(t *testing.T) {
	dir := t.TempDir()
	metrics, err := os.ReadFile("../../modelgate/testdata/diabetes-metrics.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "metrics.json"), metrics, 0o644); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := run(t, "diff", "-C", dir, "--base-name", "main at 1a2b3c4", "metrics.json", "metrics.json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"#### Metrics against main at 1a2b3c4\n", "| metric | base | candidate | change | % |", "| eval loss (mean) |", "| 0 | 0.00% |", "Lower is better", "- Data set: unchanged"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("missing %q in\n%s", want, stdout)
		}
	}

	// -o json: one document with a schema and snake_case keys.
	code, stdout, stderr = run(t, "diff", "-C", dir, "-o", "json", "metrics.json", "metrics.json")
	var doc struct {
		Schema string `json:"schema"`
		Rows   []struct {
			Metric string   `json:"metric"`
			Change *float64 `json:"change"`
			Trend  string   `json:"trend"`
		} `json:"rows"`
		SameData bool `json:"same_data"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); code != 0 || err != nil || doc.Schema != diffSchema || len(doc.Rows) == 0 || !doc.SameData {
		t.Fatalf("diff -o json: exit %d, %v\n%s\n%s", code, err, stdout, stderr)
	}
	for _, r := range doc.Rows {
		if r.Change == nil || *r.Change != 0 || r.Trend != "unchanged" {
			t.Errorf("row %+v of a diff with itself", r)
		}
	}

	code, stdout, stderr = run(t, "diff", "-C", dir, "base/metrics.json", "metrics.json")
	if code != 0 || !strings.Contains(stdout, "No base metrics") || !strings.Contains(stderr, "no base metrics at "+filepath.Join(dir, "base/metrics.json")) {
		t.Errorf("missing base: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	spec := "apiVersion: modelci.dev/v1\nmodel: {name: m, version: 1.0.0}\ndata: {path: d.csv, target: y}\ngate: {direction: maximize, threshold: 0.5}\n"
	if err := os.WriteFile(filepath.Join(dir, "modelci.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr = run(t, "diff", "-C", dir, "metrics.json", "metrics.json"); code != 0 || !strings.Contains(stdout, "| eval loss (mean) |") || !strings.Contains(stdout, "Higher eval loss is better") {
		t.Errorf("maximize spec: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	if code, _, _ = run(t, "diff", "metrics.json"); code != 2 {
		t.Errorf("one argument: exit %d, want 2", code)
	}
	if code, _, _ = run(t, "diff", "-C", dir, "metrics.json", "nope.json"); code != 1 {
		t.Errorf("a missing candidate: exit %d, want 1", code)
	}
}
