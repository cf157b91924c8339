package pipeline_test

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/pipeline"
	modelreg "github.com/modelci/modelci/stages/registry"
)

// countingRegistry is go-containerregistry's registry over real HTTP,
// counting blob uploads (the PUT that completes one).
type countingRegistry struct {
	*httptest.Server
	mu      sync.Mutex
	uploads int
}

func newCountingRegistry(t *testing.T) *countingRegistry {
	c := &countingRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			c.mu.Lock()
			c.uploads++
			c.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *countingRegistry) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.uploads
	c.uploads = 0
	return n
}

func (c *countingRegistry) repo() string {
	return strings.TrimPrefix(c.URL, "http://") + "/models/diabetes"
}

func setSpec(t *testing.T, dir string, edits ...[2]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, e := range edits {
		if !strings.Contains(s, e[0]) {
			t.Fatalf("spec has no %q", e[0])
		}
		s = strings.Replace(s, e[0], e[1], 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "modelci.yaml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPublish(t *testing.T) {
	reg := newCountingRegistry(t)
	dir := project(t, nil)
	bin := serverRuntime(t)
	with := []pipeline.Option{pipeline.WithRuntime("linux/amd64", bin), pipeline.WithRepository(reg.repo())}

	first, err := runProject(t, dir, with...)
	if err != nil {
		t.Fatal(err)
	}
	push := first.Record.Outputs.Push
	if push == nil || first.Ref != reg.repo()+"@"+first.Record.Outputs.Image.Digest || push.Digest != first.Record.Outputs.Image.Digest {
		t.Fatalf("ref %q push %+v image %+v", first.Ref, push, first.Record.Outputs.Image)
	}
	// The ModelPack artifact's layers are the image's model layers and the
	// runtime image's layer the image's runtime layer: each adds a config.
	if n := reg.take(); n != 5 {
		t.Fatalf("first push uploaded %d blobs, want 5 (runtime, model, config; the runtime image's and the modelpack's configs)", n)
	}
	tagged, err := remote.Head(mustTag(t, reg.repo()+":1.0.0"))
	if err != nil || tagged.Digest.String() != push.Digest {
		t.Fatalf("tag 1.0.0 → %v, %v; want %s", tagged, err, push.Digest)
	}

	// Unchanged: the same digest again, nothing uploaded.
	again, err := runProject(t, dir, with...)
	if err != nil {
		t.Fatal(err)
	}
	if again.Record.Outputs.Push.Digest != push.Digest || reg.take() != 0 {
		t.Fatalf("unchanged re-run pushed %s", again.Record.Outputs.Push.Digest)
	}

	// A retrain under the same version: tags are immutable.
	setSpec(t, dir, [2]string{"epochs: 300", "epochs: 250"})
	runsBefore, _ := pipeline.ListRuns(filepath.Join(dir, ".modelci"))
	if _, err := runProject(t, dir, with...); !errors.Is(err, modelreg.ErrTagExists) {
		t.Fatalf("err = %v, want ErrTagExists", err)
	}
	runsAfter, _ := pipeline.ListRuns(filepath.Join(dir, ".modelci"))
	if len(runsAfter) != len(runsBefore)+1 {
		t.Fatalf("a refused push left runs %v, want %v and one failed record", runsAfter, runsBefore)
	}
	if rec, err := pipeline.ReadRecord(filepath.Join(dir, ".modelci"), runsAfter[len(runsAfter)-1]); err != nil || rec.Status != pipeline.StatusFailed || rec.FailedStage != "push" {
		t.Fatalf("record of the refused push: %+v, %v", rec, err)
	}
	if reg.take() != 0 {
		t.Fatal("a refused push uploaded blobs")
	}

	// A new version: only the model layer and the config travel.
	setSpec(t, dir, [2]string{"version: 1.0.0", "version: 1.1.0"})
	next, err := runProject(t, dir, with...)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.take(); n != 3 {
		t.Fatalf("retrain uploaded %d blobs, want 3 (model layer, config, the modelpack's config; the runtime image is unchanged)", n)
	}
	if next.Record.Outputs.Push.Digest == push.Digest {
		t.Fatal("retrain pushed the same digest")
	}

	// Below the champion (1.1.0): refused unless asked.
	setSpec(t, dir, [2]string{"version: 1.1.0", "version: 1.0.1"})
	if _, err := runProject(t, dir, with...); !errors.Is(err, pipeline.ErrNotGreater) || !strings.Contains(err.Error(), "1.1.0") {
		t.Fatalf("err = %v, want ErrNotGreater naming 1.1.0", err)
	}
	if _, err := runProject(t, dir, append(with, pipeline.WithAllowDowngrade())...); err != nil {
		t.Fatalf("--allow-downgrade: %v", err)
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}
