package image_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/modelci/modelci/stages/image"
)

// indexTags returns tag → digest from the layout's index.json, failing on
// a tag listed twice.
func indexTags(t *testing.T, dir string) map[string]v1.Hash {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Hash{}
	for _, d := range idx.Manifests {
		tag := d.Annotations["org.opencontainers.image.ref.name"]
		if _, dup := out[tag]; dup {
			t.Errorf("tag %q listed twice", tag)
		}
		out[tag] = d.Digest
	}
	return out
}

func TestWriteLayoutMovesTag(t *testing.T) {
	ctx := context.Background()
	a, err := image.Build(ctx, exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON})))
	if err != nil {
		t.Fatal(err)
	}
	b, err := image.Build(ctx, exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON + " "})))
	if err != nil {
		t.Fatal(err)
	}
	da, db := digest(t, a), digest(t, b)
	dir := filepath.Join(t.TempDir(), "out", "oci") // parents are created

	steps := []struct {
		img       v1.Image
		tag       string
		moved     bool
		previous  v1.Hash
		wantIndex map[string]v1.Hash
	}{
		{a, "1.0.0", false, v1.Hash{}, map[string]v1.Hash{"1.0.0": da}},
		{a, "1.0.0", false, da, map[string]v1.Hash{"1.0.0": da}},
		{b, "1.0.0", true, da, map[string]v1.Hash{"1.0.0": db}},
		{a, "0.9.0", false, v1.Hash{}, map[string]v1.Hash{"1.0.0": db, "0.9.0": da}},
	}
	for i, s := range steps {
		w, err := image.WriteLayout(ctx, dir, s.img, s.tag)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if w.Moved != s.moved || w.Previous != s.previous || w.Tag != s.tag {
			t.Errorf("step %d: moved %v previous %s tag %s; want %v %s %s", i, w.Moved, w.Previous, w.Tag, s.moved, s.previous, s.tag)
		}
		abs, _ := filepath.Abs(dir)
		if w.Ref != "oci-layout://"+abs+"@"+digest(t, s.img).String() {
			t.Errorf("step %d: ref %s", i, w.Ref)
		}
		got := indexTags(t, dir)
		if len(got) != len(s.wantIndex) {
			t.Errorf("step %d: index %v, want %v", i, got, s.wantIndex)
		}
		for tag, d := range s.wantIndex {
			if got[tag] != d {
				t.Errorf("step %d: tag %s → %s, want %s", i, tag, got[tag], d)
			}
		}
	}

	// go-containerregistry reads what we wrote, blobs and all.
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(ii); err != nil {
		t.Errorf("validate layout: %v", err)
	}
	for _, d := range []v1.Hash{da, db} {
		img, err := lp.Image(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("validate %s: %v", d, err)
		}
	}
	// No temporary files are left behind.
	matches, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", ".tmp-*"))
	top, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if len(matches)+len(top) > 0 {
		t.Errorf("temporary files left: %v %v", matches, top)
	}
}

func TestWriteLayoutErrors(t *testing.T) {
	ctx := context.Background()
	img, err := image.Build(ctx, exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON})))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(dir string) error
		tag   string
		want  error
	}{
		{"empty tag", nil, "", image.ErrBadTag},
		{"plus in tag", nil, "1.0.0+x", image.ErrBadTag},
		{"slash in tag", nil, "a/b", image.ErrBadTag},
		{"bad index.json", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "index.json"), []byte("{not json"), 0o644)
		}, "1.0.0", image.ErrBadLayout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup != nil {
				if err := tt.setup(dir); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := image.WriteLayout(ctx, dir, img, tt.tag); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteLayoutCancelled(t *testing.T) {
	img, err := image.Build(context.Background(), exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if _, err := image.WriteLayout(ctx, dir, img, "1.0.0"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("index.json written by a cancelled write: %v", err)
	}
}

func TestTag(t *testing.T) {
	for in, want := range map[string]string{"1.0.0": "1.0.0", "1.0.0+build.7": "1.0.0_build.7", "2.0.0-rc.1": "2.0.0-rc.1"} {
		if got := image.Tag(in); got != want {
			t.Errorf("Tag(%q) = %q, want %q", in, got, want)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
