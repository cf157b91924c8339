package image_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
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

// TestRunNoTagThenTagLayout: Run with NoTag writes the image's blobs and
// manifest but leaves index.json byte for byte as it was; a View reads the
// image before it is tagged; TagLayout then moves the tag.
func TestRunNoTagThenTagLayout(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "oci")
	first := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON}))
	first.Layout = dir
	old, err := image.Run(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}

	big := strings.Repeat("w", 2<<20) // over DefaultSizeCutoff: a layer of its own
	in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON + " ", "weights.bin": big}))
	in.Layout, in.NoTag = dir, true
	out, err := image.Run(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("NoTag changed index.json:\n%s\n→\n%s", before, after)
	}
	if out.Ref != "" || out.Tag != image.Tag(in.Version) || out.Descriptor.Digest != out.Digest {
		t.Fatalf("untagged output: ref %q tag %q descriptor %+v", out.Ref, out.Tag, out.Descriptor)
	}
	// The model layers: the small files' gzip layer, and weights.bin's,
	// uncompressed, both blobs of the layout.
	if len(out.ModelLayers) != 2 || out.ModelLayers[1].Size < int64(len(big)) || out.ModelLayers[1].MediaType != types.OCIUncompressedLayer {
		t.Fatalf("model layers %+v", out.ModelLayers)
	}
	if got := out.Images[0].Layers[len(out.Images[0].Layers)-2:]; got[0] != out.ModelLayers[0].Digest || got[1] != out.ModelLayers[1].Digest {
		t.Fatalf("image layers %v end with %v, not the model layers", out.Images[0].Layers, got)
	}
	for _, l := range out.ModelLayers {
		if fi, err := os.Stat(filepath.Join(dir, "blobs", "sha256", l.Digest.Hex)); err != nil || fi.Size() != l.Size {
			t.Fatalf("model layer %s: %v", l.Digest, err)
		}
	}

	// A view finds the image by digest and by tag; removing it keeps the blobs.
	view := filepath.Join(t.TempDir(), "view")
	ref, err := image.View(view, dir, out.Written)
	if err != nil {
		t.Fatal(err)
	}
	if ref != "oci-layout://"+view+"@"+out.Digest.String() {
		t.Fatalf("view ref %s", ref)
	}
	lp, err := layout.FromPath(view)
	if err != nil {
		t.Fatal(err)
	}
	img, err := lp.Image(out.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Fatalf("image through the view: %v", err)
	}
	if got := indexTags(t, view); len(got) != 1 || got[out.Tag] != out.Digest {
		t.Fatalf("view index %v", got)
	}
	if err := os.RemoveAll(view); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", out.Digest.Hex)); err != nil {
		t.Fatalf("removing the view removed the layout's blobs: %v", err)
	}

	tagged, err := image.TagLayout(dir, out.Written)
	if err != nil {
		t.Fatal(err)
	}
	if !tagged.Moved || tagged.Previous != old.Digest || tagged.Ref != "oci-layout://"+dir+"@"+out.Digest.String() {
		t.Fatalf("TagLayout: %+v", tagged)
	}
	if got := indexTags(t, dir); len(got) != 1 || got[out.Tag] != out.Digest {
		t.Fatalf("index after TagLayout %v", got)
	}
	if _, err := image.TagLayout(dir, image.Written{Tag: "1.0.0"}); err == nil {
		t.Fatal("TagLayout without a written image succeeded")
	}
}

// TestRemoveTemporaries: what a writer killed part-way leaves (.tmp-*
// files in the layout and its blobs) goes; blobs and index.json stay.
func TestRemoveTemporaries(t *testing.T) {
	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	for name, content := range map[string]string{
		filepath.Join(blobs, ".tmp-layer-123"):      "partial layer",
		filepath.Join(blobs, ".tmp-0123456789ab-9"): "partial blob",
		filepath.Join(dir, ".tmp-index.json-4"):     "{",
		filepath.Join(blobs, hex64):                 "a blob",
		filepath.Join(dir, "index.json"):            "{}",
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, freed, err := image.RemoveTemporaries(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 || freed != int64(len("partial layer")+len("partial blob")+len("{")) {
		t.Errorf("removed %d files, %d bytes", n, freed)
	}
	left, _ := filepath.Glob(filepath.Join(blobs, "*"))
	top, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	hidden, _ := filepath.Glob(filepath.Join(blobs, ".tmp-*"))
	if len(left) != 1 || filepath.Base(left[0]) != hex64 || len(top)+len(hidden) != 0 {
		t.Fatalf("left %v %v %v", left, top, hidden)
	}
	if _, _, err := image.RemoveTemporaries(filepath.Join(dir, "absent")); err != nil {
		t.Fatalf("a missing layout: %v", err)
	}
}
