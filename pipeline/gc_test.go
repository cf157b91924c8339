package pipeline_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/oci"
)

// TestGC: three runs of one version with different models move the layout
// tag twice; the old images stay while their runs do, and go with them.
func TestGC(t *testing.T) {
	dir := project(t, nil)
	bin := serverRuntime(t)
	var results []*pipeline.Result
	for _, epochs := range []string{"100", "200", "300"} {
		spec, _ := os.ReadFile(filepath.Join(dir, "modelci.yaml"))
		s := strings.Replace(string(spec), "epochs: 300", "epochs: "+epochs, 1)
		os.WriteFile(filepath.Join(dir, "modelci.yaml"), []byte(s), 0o644)
		res, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", bin))
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
		os.WriteFile(filepath.Join(dir, "modelci.yaml"), spec, 0o644)
	}
	out := filepath.Join(dir, ".modelci")
	blob := func(ref string) string {
		r, err := oci.ParseLayoutRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		d, h := r.Layout(), r.Digest()
		return filepath.Join(d, "blobs", h.Algorithm, h.Hex)
	}

	res, err := pipeline.GC(out, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 0 || res.Blobs != 0 {
		t.Fatalf("gc --keep 3 removed %+v", res)
	}

	res, err = pipeline.GC(out, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 || res.Runs[0] != results[0].RunID || res.Runs[1] != results[1].RunID {
		t.Fatalf("removed runs %v", res.Runs)
	}
	// Each dropped image had its own manifest, config and model layer, and
	// its ModelPack artifact a manifest and config (its layer is the
	// image's); the runtime layer and the runtime image are shared with
	// the kept run.
	if res.Blobs != 10 {
		t.Fatalf("removed %d blobs, want 10", res.Blobs)
	}
	// index.json lists the kept run's artifact and runtime image, untagged,
	// and no longer the dropped runs' artifacts.
	idx, err := os.ReadFile(filepath.Join(pipeline.LayoutDir(out), "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		listed := strings.Contains(string(idx), r.Record.Outputs.ModelPack.Digest)
		if listed != (i == 2) {
			t.Errorf("run %d's modelpack %s listed in index.json: %v", i, r.Record.Outputs.ModelPack.Digest, listed)
		}
	}
	if rt := results[2].Record.Outputs.Runtime.Digest; rt != results[0].Record.Outputs.Runtime.Digest || !strings.Contains(string(idx), rt) {
		t.Errorf("runtime images %s, %s; want one, listed in index.json", results[0].Record.Outputs.Runtime.Digest, rt)
	}
	for _, r := range results[:2] {
		if _, err := os.Stat(blob(r.Ref)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("manifest of pruned run %s still there: %v", r.RunID, err)
		}
	}
	p, err := layout.FromPath(pipeline.LayoutDir(out))
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := oci.ParseLayoutRef(results[2].Ref)
	d := r2.Digest()
	img, err := p.Image(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("kept image after gc: %v", err)
	}
}
