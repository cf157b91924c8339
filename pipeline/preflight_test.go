package pipeline_test

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/modelci/modelci/pipeline"
	modelreg "github.com/modelci/modelci/stages/registry"
)

// A run that would publish to a registry nobody answers at fails before
// the data stage: no stage runs (no training), no run directory is made.
func TestRunPreflightsTheRegistry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	dir := project(t, nil)
	out := t.TempDir()
	var stages []string
	_, err = runProject(t, dir, pipeline.WithOutput(out), pipeline.WithRepository(closed+"/models/diabetes"),
		pipeline.WithProgress(func(e pipeline.Event) { stages = append(stages, e.Stage) }))
	if !errors.Is(err, modelreg.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	if len(stages) != 0 {
		t.Fatalf("stages ran before the preflight failed: %v", stages)
	}
	if entries, err := os.ReadDir(pipeline.RunsDir(out)); err == nil && len(entries) != 0 {
		t.Fatalf("a failed preflight left %d entries in the runs directory", len(entries))
	}
	t.Logf("error: %v", err)
}
