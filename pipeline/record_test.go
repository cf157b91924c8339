package pipeline_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
)

// TestReadRecordSchemas: run.json v3 has snake_case keys (the model is
// {"name", "version"}); v2 records, whose model keys were capitalised, and
// v1 records still read, v1 as succeeded.
func TestReadRecordSchemas(t *testing.T) {
	v3, err := json.Marshal(pipeline.Record{Schema: pipeline.RecordSchema, ID: "c", Status: pipeline.StatusSucceeded, Model: spec.ModelSpec{Name: "diabetes", Version: "1.0.0"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(v3), `"model":{"name":"diabetes","version":"1.0.0"}`) || pipeline.RecordSchema != "modelci.dev/run/v3" {
		t.Fatalf("run.json v3: %s", v3)
	}
	out := t.TempDir()
	for id, body := range map[string]string{
		"a": `{"schema": "modelci.dev/run/v1", "id": "a", "model": {"Name": "diabetes", "Version": "1.0.0"}}`,
		"b": `{"schema": "modelci.dev/run/v2", "id": "b", "status": "failed", "model": {"Name": "diabetes", "Version": "1.0.0"}}`,
		"c": string(v3),
	} {
		os.MkdirAll(filepath.Join(pipeline.RunsDir(out), id), 0o755)
		os.WriteFile(filepath.Join(pipeline.RunsDir(out), id, "run.json"), []byte(body), 0o644)
	}
	for id, want := range map[string]pipeline.Status{"a": pipeline.StatusSucceeded, "b": pipeline.StatusFailed, "c": pipeline.StatusSucceeded} {
		r, err := pipeline.ReadRecord(out, id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if r.Status != want || r.Model.Name != "diabetes" || r.Model.Version != "1.0.0" {
			t.Errorf("%s: status %s, model %+v; want %s, diabetes 1.0.0", id, r.Status, r.Model, want)
		}
	}
}
