package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRuns: a run the gate refused is a succeeded run with verdict FAIL
// and no image; modelci runs lists it as a table and as JSON.
func TestRuns(t *testing.T) {
	dir := example(t, func(s string) string { return strings.Replace(s, "threshold: 5000", "threshold: 10", 1) })
	if code, _, stderr := run(t, "run", "-C", dir); code != 3 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	code, stdout, stderr := run(t, "runs", "-C", dir)
	if code != 0 {
		t.Fatalf("runs: exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ID STATUS VERDICT VERSION IMAGE STARTED STAGE" {
		t.Fatalf("runs table:\n%s", stdout)
	}
	if f := strings.Fields(lines[1]); len(f) != 7 || f[1] != "succeeded" || f[2] != "FAIL" || f[3] != "1.0.0" || f[4] != "-" || f[6] != "-" {
		t.Fatalf("runs row %q", lines[1])
	}

	code, stdout, stderr = run(t, "runs", "-C", dir, "-o", "json")
	if code != 0 {
		t.Fatalf("runs -o json: exit %d\n%s", code, stderr)
	}
	var list map[string]any
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatalf("runs -o json: %v\n%s", err, stdout)
	}
	runs, _ := list["runs"].([]any)
	if list["schema"] != "modelci.dev/runs/v1" || len(runs) != 1 {
		t.Fatalf("runs -o json:\n%s", stdout)
	}
	r := runs[0].(map[string]any)
	for _, key := range []string{"id", "status", "verdict", "decision", "model", "version", "started", "finished"} {
		if _, ok := r[key]; !ok {
			t.Errorf("run lacks %q: %v", key, r)
		}
	}
	if _, ok := r["image_digest"]; ok {
		t.Errorf("a refused run has an image: %v", r)
	}

	if code, _, _ := run(t, "runs", "-C", dir, "-o", "yaml"); code != 2 {
		t.Fatalf("runs -o yaml: exit %d, want 2", code)
	}
}
