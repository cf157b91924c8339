package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/modelci/modelci/stages/image"
)

// TestExtractModelRoundTrip: what Build put under /model (small files in
// the gzip layer, big ones in their own layers) comes back byte for byte,
// and nothing else (the runtime) does.
func TestExtractModelRoundTrip(t *testing.T) {
	files := map[string]string{
		"model.json": modelJSON, "weights/a.bin": strings.Repeat("w", 5000), "vocab/b.txt": "tokens",
	}
	in := exampleInput(t, writeFiles(t, files))
	in.SizeCutoff = 2048
	img, err := image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "champion")
	if err := image.ExtractModel(img, dst); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dst, p)
			got[filepath.ToSlash(rel)] = string(b)
		}
		return err
	})
	if len(got) != len(files) {
		t.Fatalf("extracted %d files, want %d: %v", len(got), len(files), keysOf(got))
	}
	for name, want := range files {
		if got[name] != want {
			t.Errorf("%s: %d bytes, want %d", name, len(got[name]), len(want))
		}
	}
}

func keysOf(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// tarLayer is a layer holding the given headers (regular files get body).
func tarLayer(t *testing.T, hdrs ...*tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		body := []byte("x")
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestExtractModelRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdrs []*tar.Header
		want error
	}{
		{"no model", []*tar.Header{{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}}, image.ErrNoModel},
		{"symlink", []*tar.Header{{Name: "model/model.json", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}, image.ErrUnsupportedFile},
		{"escape", []*tar.Header{{Name: "model/../../../tmp/evil", Typeflag: tar.TypeReg, Mode: 0o644}}, image.ErrNoModel},
		{"device", []*tar.Header{{Name: "model/dev", Typeflag: tar.TypeChar}}, image.ErrUnsupportedFile},
	} {
		t.Run(tt.name, func(t *testing.T) {
			img, err := mutate.AppendLayers(empty.Image, tarLayer(t, tt.hdrs...))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "m")
			err = image.ExtractModel(img, dst)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ExtractModel = %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "..", "tmp", "evil")); err == nil {
				t.Fatal("a file was written outside the model directory")
			}
		})
	}
}

// FuzzExtractModel: any layer bytes either extract or fail; nothing is
// ever written outside the destination, and nothing panics.
func FuzzExtractModel(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "model/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "model/model.json", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("{}"))
	tw.WriteHeader(&tar.Header{Name: "model/../escape", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	tw.Write([]byte("x"))
	tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			return
		}
		img, err := mutate.AppendLayers(empty.Image, l)
		if err != nil {
			return
		}
		root := t.TempDir()
		dst := filepath.Join(root, "m")
		image.ExtractModel(img, dst)
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && p != root && p != dst && !strings.HasPrefix(p, dst+string(filepath.Separator)) {
				t.Fatalf("%s was written outside %s", p, dst)
			}
			return nil
		})
	})
}
