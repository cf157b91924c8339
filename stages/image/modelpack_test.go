package image_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/image"
)

// modelPackInput is a model of a small file and a weights file above the
// size cutoff, built with its runtime image and ModelPack artifact.
func modelPackInput(t *testing.T, weights string) image.Input {
	t.Helper()
	dir := writeFiles(t, map[string]string{"model.json": modelJSON, "weights/w.bin": weights})
	in := exampleInput(t, dir)
	in.SizeCutoff = 2048
	in.Layout = t.TempDir()
	in.Source, in.Revision = "https://example.org/repo", "abc123"
	in.ModelPack = &image.ModelPack{Format: "linear", Architecture: "linear", Precision: "float64"}
	in.RuntimeImage = true
	return in
}

// rawBlob reads a blob of the layout at dir.
func rawBlob(t *testing.T, dir string, h v1.Hash) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", h.Algorithm, h.Hex))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The ModelPack artifact as go-containerregistry reads it from the
// layout: its manifest (artifactType, config and layer media types, the
// filepath annotations, the subject, modelci's annotations), its config
// (descriptor, config, modelfs), and its layers, which are the serving
// image's model layers blob for blob: nothing is stored twice.
func TestModelPackArtifact(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	weights := strings.Repeat("w", 4096)
	in := modelPackInput(t, weights)
	out, err := image.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.ModelPack == nil || out.Runtime == nil {
		t.Fatalf("no ModelPack artifact (%v) or runtime image (%v)", out.ModelPack, out.Runtime)
	}
	p, err := layout.FromPath(in.Layout)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	art, err := ii.Image(out.ModelPack.Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := art.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.ArtifactType != image.ArtifactTypeModelPack || m.Config.MediaType != image.MediaTypeModelPackConfig {
		t.Errorf("manifest: mediaType %s, artifactType %s, config %s", m.MediaType, m.ArtifactType, m.Config.MediaType)
	}
	if m.Subject == nil || m.Subject.Digest != out.Digest || m.Subject.Size != out.Size || m.Subject.MediaType != out.MediaType {
		t.Errorf("subject %+v; want the serving image %s (%d bytes, %s)", m.Subject, out.Digest, out.Size, out.MediaType)
	}
	for k, want := range map[string]string{
		image.AnnotationImageDigest:   out.Digest.String(),
		image.AnnotationRuntimeDigest: out.Runtime.Digest.String(),
		image.AnnotationModelName:     "diabetes",
		image.AnnotationModelVersion:  "1.0.0+build.7",
		image.AnnotationCreated:       "2023-11-14T22:13:20Z",
		image.AnnotationRevision:      "abc123",
	} {
		if got := m.Annotations[k]; got != want {
			t.Errorf("annotation %s = %q; want %q", k, got, want)
		}
	}

	// Layers: the serving image's model layers, same digests and sizes.
	if len(m.Layers) != 2 || len(out.ModelLayers) != 2 {
		t.Fatalf("%d artifact layers, %d model layers; want 2 and 2", len(m.Layers), len(out.ModelLayers))
	}
	wantTypes := []types.MediaType{image.MediaTypeModelWeightConfigGzip, image.MediaTypeModelWeight}
	wantPaths := []string{"model", "model/weights/w.bin"}
	for i, l := range m.Layers {
		ml := out.ModelLayers[i]
		if l.Digest != ml.Digest || l.Size != ml.Size {
			t.Errorf("layer %d: %s (%d bytes); the serving image's model layer is %s (%d bytes)", i, l.Digest, l.Size, ml.Digest, ml.Size)
		}
		if l.MediaType != wantTypes[i] || l.Annotations[image.AnnotationModelPackFilepath] != wantPaths[i] {
			t.Errorf("layer %d: %s, filepath %q; want %s, %q", i, l.MediaType, l.Annotations[image.AnnotationModelPackFilepath], wantTypes[i], wantPaths[i])
		}
	}

	// Config: per ModelPack's config.md; diffIds are the layers' tar digests,
	// the serving image's rootfs diff_ids of its model layers.
	var cfg struct {
		Descriptor map[string]string `json:"descriptor"`
		Config     map[string]string `json:"config"`
		ModelFS    struct {
			Type    string    `json:"type"`
			DiffIDs []v1.Hash `json:"diffIds"`
		} `json:"modelfs"`
	}
	raw, err := art.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"name": "diabetes", "version": "1.0.0+build.7", "createdAt": "2023-11-14T22:13:20Z", "sourceURL": "https://example.org/repo", "revision": "abc123"} {
		if cfg.Descriptor[k] != want {
			t.Errorf("config descriptor.%s = %q; want %q", k, cfg.Descriptor[k], want)
		}
	}
	if cfg.Config["format"] != "linear" || cfg.Config["architecture"] != "linear" || cfg.Config["precision"] != "float64" {
		t.Errorf("config.config %v", cfg.Config)
	}
	serving, err := ii.Image(out.Digest)
	if err != nil {
		t.Fatal(err)
	}
	scf, err := serving.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ModelFS.Type != "layers" || !slices.Equal(cfg.ModelFS.DiffIDs, scf.RootFS.DiffIDs[1:]) {
		t.Errorf("modelfs %+v; want layers %v", cfg.ModelFS, scf.RootFS.DiffIDs[1:])
	}
	// The big layer is uncompressed: its diffId is its digest.
	if cfg.ModelFS.DiffIDs[1] != m.Layers[1].Digest {
		t.Errorf("weights layer diffId %s, digest %s", cfg.ModelFS.DiffIDs[1], m.Layers[1].Digest)
	}

	// The model comes out of the artifact as it comes out of the image.
	dst := t.TempDir()
	if err := image.ExtractModel(art, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "weights", "w.bin")); err != nil || string(b) != weights {
		t.Errorf("extracted weights: %v (%d bytes)", err, len(b))
	}

	// No blob twice: the serving image's runtime layer, model layers,
	// config and manifest; the runtime image's config and manifest (its
	// layer is the serving image's); the artifact's config and manifest.
	entries, err := os.ReadDir(filepath.Join(in.Layout, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 2 + 2 + 2 + 2; len(entries) != want {
		t.Errorf("%d blobs in the layout; want %d", len(entries), want)
	}
	rt, err := ii.Image(out.Runtime.Digest)
	if err != nil {
		t.Fatal(err)
	}
	rl := layerDigests(t, rt)
	if sl := layerDigests(t, serving); len(rl) != 1 || rl[0] != sl[0] {
		t.Errorf("runtime image layers %v; want the serving image's runtime layer %s alone", rl, sl[0])
	}
	rcf, err := rt.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rcf.Config.Entrypoint, image.DefaultEntrypoint) || rcf.Config.User != image.DefaultUser {
		t.Errorf("runtime config: entrypoint %v, user %s", rcf.Config.Entrypoint, rcf.Config.User)
	}
	if rcf.Created.Unix() != 0 || rcf.Config.Labels[image.AnnotationModelName] != "" || rcf.Config.Labels[image.AnnotationCreated] != "" {
		t.Errorf("runtime config carries the model or the build time: created %v, labels %v", rcf.Created, rcf.Config.Labels)
	}

	// index.json: the tag names the serving image, its one tagged entry;
	// the runtime image and the artifact follow, untagged and marked.
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 3 {
		t.Fatalf("index.json has %d entries; want 3", len(im.Manifests))
	}
	if d := im.Manifests[0]; d.Digest != out.Digest || d.Annotations[image.AnnotationRefName] != image.Tag("1.0.0+build.7") {
		t.Errorf("first entry %+v; want the serving image tagged", d)
	}
	for i, want := range []struct {
		digest v1.Hash
		entry  string
		art    string
	}{{out.Runtime.Digest, image.LayoutEntryRuntime, ""}, {out.ModelPack.Digest, image.LayoutEntryModelPack, image.ArtifactTypeModelPack}} {
		d := im.Manifests[i+1]
		if d.Digest != want.digest || d.Annotations[image.AnnotationRefName] != "" || d.Annotations[image.AnnotationLayoutEntry] != want.entry {
			t.Errorf("entry %d: %+v; want %s untagged, %s", i+1, d, want.digest, want.entry)
		}
		if want.art != "" && d.ArtifactType != want.art {
			t.Errorf("entry %d: artifactType %q; want %q", i+1, d.ArtifactType, want.art)
		}
	}
}

// Same inputs, same artifact digest; a retrain (another model) changes
// the artifact but not the runtime image, whatever SOURCE_DATE_EPOCH is.
func TestModelPackReproducible(t *testing.T) {
	build := func(epoch, weights string) image.Output {
		t.Setenv("SOURCE_DATE_EPOCH", epoch)
		out, err := image.Run(context.Background(), modelPackInput(t, weights))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a := build("1700000000", strings.Repeat("a", 4096))
	b := build("1700000000", strings.Repeat("a", 4096))
	if a.ModelPack.Digest != b.ModelPack.Digest || a.Runtime.Digest != b.Runtime.Digest || a.Digest != b.Digest {
		t.Errorf("same inputs: artifact %s vs %s, runtime %s vs %s", a.ModelPack.Digest, b.ModelPack.Digest, a.Runtime.Digest, b.Runtime.Digest)
	}
	c := build("1800000000", strings.Repeat("c", 4096))
	if c.ModelPack.Digest == a.ModelPack.Digest || c.Digest == a.Digest {
		t.Errorf("another model kept the artifact %s or image %s", c.ModelPack.Digest, c.Digest)
	}
	if c.Runtime.Digest != a.Runtime.Digest {
		t.Errorf("a retrain changed the runtime image: %s → %s", a.Runtime.Digest, c.Runtime.Digest)
	}
}

// skopeo reads the artifact and copies it into another layout unchanged
// (--preserve-digests), blobs and all. skopeo 1.9 (Debian 12) finds a
// layout's manifests by tag only, so it reads the artifact through a
// layout listing it alone, which shares the output layout's blobs.
func TestModelPackSkopeo(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo not on PATH (CI installs it: apt-get install -y skopeo)")
	}
	in := modelPackInput(t, strings.Repeat("w", 4096))
	out, err := image.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	view := filepath.Join(t.TempDir(), "view")
	if err := os.MkdirAll(view, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(in.Layout, "blobs"), filepath.Join(view, "blobs")); err != nil {
		t.Fatal(err)
	}
	idx, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{out.ModelPack.Descriptor}})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"index.json": idx, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)} {
		if err := os.WriteFile(filepath.Join(view, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	skopeo := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("skopeo", append([]string{"--insecure-policy"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return b
	}
	raw := skopeo("inspect", "--raw", "oci:"+view)
	if !bytes.Equal(raw, rawBlob(t, in.Layout, out.ModelPack.Digest)) {
		t.Errorf("skopeo inspect --raw: %s", raw)
	}
	dst := t.TempDir()
	skopeo("copy", "--preserve-digests", "oci:"+view, "oci:"+dst+":modelpack")
	p, err := layout.FromPath(dst)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(out.ModelPack.Digest)
	if err != nil {
		t.Fatalf("the copy: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != image.ArtifactTypeModelPack || len(m.Layers) != 2 {
		t.Fatalf("the copy's manifest: %+v", m)
	}
	for _, d := range append(m.Layers, m.Config) {
		if !bytes.Equal(rawBlob(t, dst, d.Digest), rawBlob(t, in.Layout, d.Digest)) {
			t.Errorf("blob %s differs after the copy", d.Digest)
		}
	}
}

// PruneUntagged drops modelci's untagged entries that keep does not hold,
// and nothing else; Run with NoTag leaves index.json alone until
// TagLayout lists the image and its untagged entries in one write.
func TestPruneUntagged(t *testing.T) {
	in := modelPackInput(t, strings.Repeat("w", 4096))
	in.NoTag = true
	out, err := image.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(in.Layout, "index.json")); err == nil {
		t.Fatal("NoTag wrote index.json")
	}
	if _, err := image.TagLayout(in.Layout, out.Written, out.Untagged()...); err != nil {
		t.Fatal(err)
	}
	// Listed once, whatever the number of commits.
	if _, err := image.TagLayout(in.Layout, out.Written, out.Untagged()...); err != nil {
		t.Fatal(err)
	}
	entries := func() []v1.Hash {
		t.Helper()
		var m v1.IndexManifest
		if err := json.Unmarshal(rawFile(t, filepath.Join(in.Layout, "index.json")), &m); err != nil {
			t.Fatal(err)
		}
		var hs []v1.Hash
		for _, d := range m.Manifests {
			hs = append(hs, d.Digest)
		}
		return hs
	}
	if got, want := entries(), []v1.Hash{out.Digest, out.Runtime.Digest, out.ModelPack.Digest}; !slices.Equal(got, want) {
		t.Fatalf("index.json lists %v; want %v", got, want)
	}
	n, err := image.PruneUntagged(in.Layout, map[v1.Hash]bool{out.ModelPack.Digest: true})
	if err != nil || n != 1 {
		t.Fatalf("prune: %d, %v; want 1 removed", n, err)
	}
	if got, want := entries(), []v1.Hash{out.Digest, out.ModelPack.Digest}; !slices.Equal(got, want) {
		t.Errorf("after the prune index.json lists %v; want %v", got, want)
	}
	if n, err := image.PruneUntagged(in.Layout, nil); err != nil || n != 1 {
		t.Errorf("prune: %d, %v; want the artifact removed, the tagged image kept", n, err)
	}
	if got := entries(); !slices.Equal(got, []v1.Hash{out.Digest}) {
		t.Errorf("index.json lists %v; want the tagged image", got)
	}
}

func rawFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
