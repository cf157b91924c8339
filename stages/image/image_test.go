package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/modelci/modelci/stages/image"
)

func exampleInput(t testing.TB, modelDir string) image.Input {
	return image.Input{
		ModelDir:      modelDir,
		Name:          "diabetes",
		Version:       "1.0.0+build.7",
		DatasetDigest: "sha256:" + strings.Repeat("ab", 32),
		Runtime:       helloRuntime(t),
	}
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestBuildReproducible(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	files := map[string]string{"model.json": modelJSON, "extra/notes.txt": "trained on diabetes\n"}
	dirA, dirB := writeFiles(t, files), writeFiles(t, files)

	var refs []string
	for _, dir := range []string{dirA, dirB, dirA} {
		img, err := image.Build(context.Background(), exampleInput(t, dir))
		if err != nil {
			t.Fatal(err)
		}
		w, err := image.WriteLayout(context.Background(), t.TempDir(), img, "v1")
		if err != nil {
			t.Fatal(err)
		}
		if w.Digest != digest(t, img) {
			t.Errorf("written digest %s, image digest %s", w.Digest, digest(t, img))
		}
		refs = append(refs, w.Digest.String())
	}
	if refs[0] != refs[1] || refs[0] != refs[2] {
		t.Errorf("same inputs gave different digests: %v", refs)
	}
}

func TestBuildOneByteChangesOnlyModelLayerAndConfig(t *testing.T) {
	dirA := writeFiles(t, map[string]string{"model.json": modelJSON})
	dirB := writeFiles(t, map[string]string{"model.json": strings.Replace(modelJSON, "152.13", "152.14", 1)})
	a, err := image.Build(context.Background(), exampleInput(t, dirA))
	if err != nil {
		t.Fatal(err)
	}
	b, err := image.Build(context.Background(), exampleInput(t, dirB))
	if err != nil {
		t.Fatal(err)
	}
	la, lb := layerDigests(t, a), layerDigests(t, b)
	if len(la) != 2 || len(lb) != 2 {
		t.Fatalf("want a runtime and a model layer, got %d and %d layers", len(la), len(lb))
	}
	if la[0] != lb[0] {
		t.Errorf("runtime layer changed: %s vs %s", la[0], lb[0])
	}
	if la[1] == lb[1] {
		t.Errorf("model layer unchanged: %s", la[1])
	}
	ca, _ := a.ConfigName()
	cb, _ := b.ConfigName()
	if ca == cb {
		t.Errorf("config unchanged: %s", ca)
	}
	if digest(t, a) == digest(t, b) {
		t.Errorf("image digest unchanged")
	}
}

func TestBuildConfigAndAnnotations(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON}))
	in.Source, in.Revision = "https://example.org/repo", "abc123"
	img, err := image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("media types %s, config %s", m.MediaType, m.Config.MediaType)
	}
	for i, l := range m.Layers {
		if l.MediaType != types.OCILayer {
			t.Errorf("layer %d media type %s", i, l.MediaType)
		}
	}
	want := map[string]string{
		"org.opencontainers.image.title":    "diabetes",
		"org.opencontainers.image.version":  "1.0.0+build.7",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
		"org.opencontainers.image.source":   "https://example.org/repo",
		"org.opencontainers.image.revision": "abc123",
		"dev.modelci.model.name":            "diabetes",
		"dev.modelci.model.version":         "1.0.0+build.7",
		"dev.modelci.dataset.digest":        in.DatasetDigest,
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if m.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], v)
		}
		if cf.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], v)
		}
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"os", cf.OS, "linux"},
		{"architecture", cf.Architecture, "amd64"},
		{"created", cf.Created.UTC(), time.Unix(1700000000, 0).UTC()},
		{"entrypoint", strings.Join(cf.Config.Entrypoint, " "), "/usr/local/bin/modelci-serve --model /model --addr :8080"},
		{"cmd", len(cf.Config.Cmd), 0},
		{"user", cf.Config.User, "65532"},
		{"workdir", cf.Config.WorkingDir, "/"},
		{"port", len(cf.Config.ExposedPorts), 1},
		{"diff ids", len(cf.RootFS.DiffIDs), 2},
		{"history", len(cf.History), 2},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if _, ok := cf.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports %v, want 8080/tcp", cf.Config.ExposedPorts)
	}
}

// tarFile is one extracted tar entry.
type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, r io.Reader) map[string]tarFile {
	t.Helper()
	out := map[string]tarFile{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		// mutate.Extract cleans names; layers keep the trailing slash on
		// directories. Compare without it.
		out[strings.TrimSuffix(hdr.Name, "/")] = tarFile{hdr, b}
	}
}

func TestLayersHoldInputs(t *testing.T) {
	files := map[string]string{"model.json": modelJSON, "sub/dir/vocab.txt": "a\nb\n"}
	dir := writeFiles(t, files)
	img, err := image.Build(context.Background(), exampleInput(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	got := readTar(t, rc)

	bin, err := os.ReadFile(hello(t, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		data []byte
		mode int64
		typ  byte
	}{
		"usr":                         {nil, 0o755, tar.TypeDir},
		"usr/local":                   {nil, 0o755, tar.TypeDir},
		"usr/local/bin":               {nil, 0o755, tar.TypeDir},
		"usr/local/bin/modelci-serve": {bin, 0o755, tar.TypeReg},
		"model":                       {nil, 0o755, tar.TypeDir},
		"model/model.json":            {[]byte(modelJSON), 0o644, tar.TypeReg},
		"model/sub":                   {nil, 0o755, tar.TypeDir},
		"model/sub/dir":               {nil, 0o755, tar.TypeDir},
		"model/sub/dir/vocab.txt":     {[]byte("a\nb\n"), 0o644, tar.TypeReg},
	}
	if len(got) != len(want) {
		t.Errorf("image has %d entries, want %d: %v", len(got), len(want), keys(got))
	}
	for name, w := range want {
		f, ok := got[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		h := f.hdr
		if h.Typeflag != w.typ || h.Mode != w.mode || !bytes.Equal(f.data, w.data) {
			t.Errorf("%s: type %c mode %o, %d bytes; want %c %o, %d bytes", name, h.Typeflag, h.Mode, len(f.data), w.typ, w.mode, len(w.data))
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d (%q:%q), mtime %v; want 0:0, no names, the epoch", name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestLargeFilesGetOwnUncompressedLayers(t *testing.T) {
	big1 := strings.Repeat("w", 5000)
	big2 := strings.Repeat("v", 3000)
	in := exampleInput(t, writeFiles(t, map[string]string{
		"model.json": modelJSON, "weights/a.bin": big1, "weights/b.bin": big2,
	}))
	in.SizeCutoff = 2048
	img, err := image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	// Full validation gunzips every layer, which plain tar layers are not.
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []types.MediaType{types.OCILayer, types.OCILayer, types.OCIUncompressedLayer, types.OCIUncompressedLayer}
	wantFiles := [][]string{
		{"usr", "usr/local", "usr/local/bin", "usr/local/bin/modelci-serve"},
		{"model", "model/model.json", "model/weights"},
		{"model", "model/weights", "model/weights/a.bin"},
		{"model", "model/weights", "model/weights/b.bin"},
	}
	if len(layers) != len(wantTypes) {
		t.Fatalf("%d layers, want %d", len(layers), len(wantTypes))
	}
	for i, l := range layers {
		mt, _ := l.MediaType()
		if mt != wantTypes[i] {
			t.Errorf("layer %d: media type %s, want %s", i, mt, wantTypes[i])
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		got := keys(readTar(t, rc))
		rc.Close()
		if !slices.Equal(got, wantFiles[i]) {
			t.Errorf("layer %d holds %v, want %v", i, got, wantFiles[i])
		}
		if mt == types.OCIUncompressedLayer {
			checkPlainLayer(t, l)
		}
	}

	// Retraining changes only the small files: the weights layers stay.
	in2 := in
	in2.ModelDir = writeFiles(t, map[string]string{
		"model.json": strings.Replace(modelJSON, "152.13", "1.5", 1), "weights/a.bin": big1, "weights/b.bin": big2,
	})
	img2, err := image.Build(context.Background(), in2)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := layerDigests(t, img), layerDigests(t, img2)
	for i, same := range []bool{true, false, true, true} {
		if (d1[i] == d2[i]) != same {
			t.Errorf("layer %d: digests %s and %s, want equal=%v", i, d1[i], d2[i], same)
		}
	}
}

// checkPlainLayer checks what validate cannot for an uncompressed layer:
// digest, diff ID and size all describe the same bytes.
func checkPlainLayer(t *testing.T, l v1.Layer) {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	sum := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	d, _ := l.Digest()
	diff, _ := l.DiffID()
	size, _ := l.Size()
	if d != sum || diff != sum || size != n {
		t.Errorf("plain layer: digest %s, diff id %s, size %d; content %s, %d bytes", d, diff, size, sum, n)
	}
}

func TestBuildErrors(t *testing.T) {
	good := func(t *testing.T) string { return writeFiles(t, map[string]string{"model.json": modelJSON}) }
	tests := []struct {
		name   string
		mutate func(t *testing.T, in *image.Input)
		want   error
	}{
		{"symlink", func(t *testing.T, in *image.Input) {
			if err := os.Symlink("model.json", filepath.Join(in.ModelDir, "link.json")); err != nil {
				t.Fatal(err)
			}
		}, image.ErrUnsupportedFile},
		{"fifo", func(t *testing.T, in *image.Input) {
			if err := syscall.Mkfifo(filepath.Join(in.ModelDir, "pipe"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, image.ErrUnsupportedFile},
		{"empty model", func(t *testing.T, in *image.Input) {
			in.ModelDir = t.TempDir()
			if err := os.Mkdir(filepath.Join(in.ModelDir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, image.ErrEmptyModel},
		{"missing model", func(t *testing.T, in *image.Input) { in.ModelDir = filepath.Join(t.TempDir(), "nope") }, os.ErrNotExist},
		{"base", func(t *testing.T, in *image.Input) { in.Base = "python:3.12" }, image.ErrBaseNotSupported},
		{"platform", func(t *testing.T, in *image.Input) { in.Platforms = []string{"linux"} }, image.ErrBadPlatform},
		{"platform twice", func(t *testing.T, in *image.Input) { in.Platforms = []string{"linux/amd64", "linux/amd64"} }, image.ErrBadPlatform},
		{"several platforms", func(t *testing.T, in *image.Input) { in.Platforms = []string{"linux/amd64", "linux/arm64"} }, image.ErrMultiplePlatforms},
		{"source date epoch", func(t *testing.T, in *image.Input) { t.Setenv("SOURCE_DATE_EPOCH", "yesterday") }, image.ErrBadSourceDateEpoch},
		{"no runtime", func(t *testing.T, in *image.Input) {
			in.Runtime = func(context.Context, v1.Platform) (string, error) { return "", image.ErrNoRuntime }
		}, image.ErrNoRuntime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := exampleInput(t, good(t))
			tt.mutate(t, &in)
			_, err := image.Build(context.Background(), in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFileChangedBeforeWrite(t *testing.T) {
	tests := []struct {
		name   string
		change func(path string) error
	}{
		{"vanished", os.Remove},
		{"shrank", func(p string) error { return os.Truncate(p, 10) }},
		{"grew", func(p string) error { return os.WriteFile(p, []byte(modelJSON+"more"), 0o644) }},
		{"same size, other bytes", func(p string) error {
			return os.WriteFile(p, []byte(strings.Replace(modelJSON, "152.13", "999.99", 1)), 0o644)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"model.json": modelJSON})
			img, err := image.Build(context.Background(), exampleInput(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := img.Digest(); err != nil { // fixes the digests from the original files
				t.Fatal(err)
			}
			if err := tt.change(filepath.Join(dir, "model.json")); err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			_, err = image.WriteLayout(context.Background(), out, img, "1.0.0")
			if !errors.Is(err, image.ErrFileChanged) {
				t.Fatalf("got %v, want ErrFileChanged", err)
			}
			if _, err := os.Stat(filepath.Join(out, "index.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("index.json written after a failed write: %v", err)
			}
		})
	}
}

func TestBuildIndex(t *testing.T) {
	in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON}))
	in.Platforms = []string{"linux/amd64", "linux/arm64"}
	idx, err := image.BuildIndex(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate: %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex || len(m.Manifests) != 2 {
		t.Fatalf("index %s with %d manifests", m.MediaType, len(m.Manifests))
	}
	if m.Annotations["dev.modelci.model.name"] != "diabetes" {
		t.Errorf("index annotations %v", m.Annotations)
	}
	var layers [][]v1.Hash
	for i, arch := range []string{"amd64", "arm64"} {
		d := m.Manifests[i]
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != arch {
			t.Errorf("manifest %d platform %v, want linux/%s", i, d.Platform, arch)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != arch {
			t.Errorf("config architecture %s, want %s", cf.Architecture, arch)
		}
		layers = append(layers, layerDigests(t, img))
	}
	if layers[0][0] == layers[1][0] {
		t.Errorf("runtime layers equal across architectures")
	}
	if layers[0][1] != layers[1][1] {
		t.Errorf("model layers differ across architectures: %s, %s", layers[0][1], layers[1][1])
	}

	out, dir := runStage(t, in)
	if out.MediaType != types.OCIImageIndex || len(out.Images) != 2 || out.Images[1].Platform != "linux/arm64" {
		t.Errorf("run output %+v", out)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if out.Digest != h {
		t.Errorf("run digest %s, index digest %s", out.Digest, h)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	back, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := back.ImageIndex(out.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(stored); err != nil {
		t.Errorf("validate the stored index: %v", err)
	}
}

// runStage runs the stage into a fresh layout and returns its output and
// the layout directory.
func runStage(t *testing.T, in image.Input) (image.Output, string) {
	t.Helper()
	in.Layout = filepath.Join(t.TempDir(), "oci")
	out, err := image.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out, in.Layout
}

func TestRunSinglePlatform(t *testing.T) {
	in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON, "weights.bin": strings.Repeat("w", 3000)}))
	in.SizeCutoff = 1024
	out, dir := runStage(t, in)
	if out.Tag != "1.0.0_build.7" || out.MediaType != types.OCIManifestSchema1 || out.Moved {
		t.Errorf("output %+v", out.Written)
	}
	if len(out.Images) != 1 || out.Images[0].Digest != out.Digest || len(out.Images[0].Layers) != 3 || out.Images[0].Platform != "linux/amd64" {
		t.Errorf("images %+v", out.Images)
	}
	if !strings.HasPrefix(out.Ref, "oci-layout:///") || !strings.HasSuffix(out.Ref, "/oci@"+out.Digest.String()) {
		t.Errorf("ref %s", out.Ref)
	}

	// Run writes layers as it hashes them; Build hashes first and writes
	// later. Both must give the same image.
	img, err := image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, img) != out.Digest {
		t.Errorf("Run digest %s, Build digest %s", out.Digest, digest(t, img))
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := lp.Image(out.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(stored, validate.Fast); err != nil {
		t.Errorf("validate: %v", err)
	}
	layers, err := stored.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers[:2] {
		if err := validate.Layer(l); err != nil {
			t.Errorf("validate layer: %v", err)
		}
	}
	checkPlainLayer(t, layers[2])
	entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if len(entries) != 5 { // 3 layers, config, manifest: nothing else
		t.Errorf("%d blobs, want 5", len(entries))
	}
}

// A model file that vanishes or changes after the model directory was
// listed (here: while the runtime is fetched, between listing and writing)
// fails Run with ErrFileChanged naming the file, and the layout's tag
// stays on the previous build: nothing half-tagged, no temporary files.
func TestRunFileVanishedMidBuild(t *testing.T) {
	tests := []struct {
		name, file string
		change     func(path string) error
	}{
		{"small file vanished", "model.json", os.Remove},
		{"weights vanished", "weights.bin", os.Remove},
		{"weights shrank", "weights.bin", func(p string) error { return os.Truncate(p, 100) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"model.json": modelJSON, "weights.bin": strings.Repeat("w", 3000)})
			in := exampleInput(t, dir)
			in.SizeCutoff = 1024
			prev, layoutDir := runStage(t, in)
			before, err := os.ReadFile(filepath.Join(layoutDir, "index.json"))
			if err != nil {
				t.Fatal(err)
			}

			if err := os.WriteFile(filepath.Join(dir, "model.json"), []byte(strings.Replace(modelJSON, "152.13", "160.01", 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			in.Layout = layoutDir
			in.Runtime = func(ctx context.Context, p v1.Platform) (string, error) {
				if err := tt.change(filepath.Join(dir, tt.file)); err != nil {
					t.Fatal(err)
				}
				return hello(t, p.Architecture), nil
			}
			_, err = image.Run(context.Background(), in)
			if !errors.Is(err, image.ErrFileChanged) {
				t.Fatalf("got %v, want ErrFileChanged", err)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tt.file)) {
				t.Errorf("error %q does not name %s", err, tt.file)
			}
			after, err := os.ReadFile(filepath.Join(layoutDir, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			if string(after) != string(before) {
				t.Errorf("index.json changed by a failed build (tag %s was on %s):\n%s", prev.Tag, prev.Digest, after)
			}
			entries, err := os.ReadDir(filepath.Join(layoutDir, "blobs", "sha256"))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".tmp") {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
}
