package pipeline_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
)

func TestRebuild(t *testing.T) {
	dir := project(t, nil)
	bin := serverRuntime(t)
	first, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", bin))
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, ".modelci")
	res, err := pipeline.Rebuild(context.Background(), sp, out, first.RunID, pipeline.WithRuntime("linux/amd64", bin))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Match || len(res.Checks) < 8 {
		t.Fatalf("rebuild: %+v", res)
	}
	// The ModelPack artifact and the runtime image are reproducible too.
	checked := map[string]bool{}
	for _, c := range res.Checks {
		checked[c.Name] = c.Match && c.Recorded != ""
	}
	if !checked["modelpack"] || !checked["runtime"] {
		t.Fatalf("rebuild checked no modelpack or runtime digest: %+v", res.Checks)
	}
	if ids, _ := pipeline.ListRuns(out); len(ids) != 1 {
		t.Fatalf("rebuild wrote runs into the output: %v", ids)
	}

	// Another server binary: the image digest must not match, and the
	// check says the runtime is why.
	other := serverRuntime(t)
	appendByte(t, other)
	res, err = pipeline.Rebuild(context.Background(), sp, out, first.RunID, pipeline.WithRuntime("linux/amd64", other))
	if err != nil {
		t.Fatal(err)
	}
	failed := map[string]bool{}
	for _, c := range res.Checks {
		if !c.Match {
			failed[c.Name] = true
		}
	}
	if res.Match || !failed["image"] || !failed["runtime linux/amd64"] || !failed["runtime"] || !failed["modelpack"] || failed["model"] {
		t.Fatalf("rebuild with another runtime: %+v", res)
	}

	// A changed spec is refused before anything runs.
	setSpec(t, dir, [2]string{"epochs: 300", "epochs: 299"})
	sp, _ = spec.Load(filepath.Join(dir, "modelci.yaml"))
	if _, err := pipeline.Rebuild(context.Background(), sp, out, first.RunID); !errors.Is(err, pipeline.ErrSpecChanged) {
		t.Fatalf("err = %v, want ErrSpecChanged", err)
	}
	if _, err := pipeline.Rebuild(context.Background(), sp, out, "nope"); !errors.Is(err, pipeline.ErrNoRun) {
		t.Fatalf("err = %v, want ErrNoRun", err)
	}
}
