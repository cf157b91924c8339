package image_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
)

// noRuntime fails the test when a build on a base asks for a runtime.
func noRuntime(t *testing.T) image.RuntimeFunc {
	return func(context.Context, v1.Platform) (string, error) {
		t.Error("a build on a base image asked for a runtime")
		return "", image.ErrNoRuntime
	}
}

// baseLayout writes a stand-in team runtime image (its own server, user and
// entrypoint) for the platforms to a layout and returns its reference.
func baseLayout(t *testing.T, platforms ...string) (string, image.Output) {
	t.Helper()
	in := exampleInput(t, writeFiles(t, map[string]string{"server.py": "print('serving')\n"}))
	in.Platforms = platforms
	in.Layout = filepath.Join(t.TempDir(), "base")
	in.Tag = "base"
	in.Entrypoint = []string{"/usr/local/bin/modelci", "python-server"}
	out, err := image.Run(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return out.Ref, out
}

func TestBuildOnLayoutBase(t *testing.T) {
	ref, baseOut := baseLayout(t, "linux/amd64")
	in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON}))
	in.Base, in.Runtime = ref, noRuntime(t)
	img, err := image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("validate: %v", err)
	}
	got := layerDigests(t, img)
	baseLayers := baseOut.Images[0].Layers
	if len(got) != len(baseLayers)+1 || !slices.Equal(got[:len(baseLayers)], baseLayers) {
		t.Errorf("layers %v, want the base's %v and one model layer", got, baseLayers)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/modelci", "python-server"}) || cf.Config.User != "65532" {
		t.Errorf("config %+v: want the base's entrypoint and user", cf.Config)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.base.name"] != ref || m.Annotations["org.opencontainers.image.base.digest"] != baseOut.Digest.String() {
		t.Errorf("base annotations %v", m.Annotations)
	}

	// The spec's entrypoint replaces the base's entrypoint and command.
	base, err := image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	base, err = mutate.Config(base, v1.Config{Entrypoint: []string{"/srv"}, Cmd: []string{"--flag"}, User: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := image.WriteLayout(context.Background(), filepath.Join(t.TempDir(), "oci"), base, "b")
	if err != nil {
		t.Fatal(err)
	}
	in.Base, in.Entrypoint = w.Ref, []string{"/srv", "--model", "/model"}
	img, err = image.Build(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	cf, err = img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, in.Entrypoint) || cf.Config.Cmd != nil || cf.Config.User != "1000" {
		t.Errorf("config %+v: want the spec's entrypoint, no command, the base's user", cf.Config)
	}

	// image.cmd alone replaces the base's command and keeps its entrypoint.
	in.Entrypoint, in.Cmd = nil, []string{"--port", "9000"}
	if img, err = image.Build(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if cf, err = img.ConfigFile(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/srv"}) || !slices.Equal(cf.Config.Cmd, in.Cmd) {
		t.Errorf("config %+v: want the base's entrypoint and the spec's command", cf.Config)
	}
}

func TestBuildIndexOnLayoutBaseIndex(t *testing.T) {
	ref, baseOut := baseLayout(t, "linux/amd64", "linux/arm64")
	in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON}))
	in.Base, in.Runtime = ref, noRuntime(t)
	in.Platforms = []string{"linux/arm64", "linux/amd64"}
	idx, err := image.BuildIndex(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	// Each platform sits on the base's image for that platform.
	want := map[string]v1.Hash{}
	for _, bi := range baseOut.Images {
		want[bi.Platform] = bi.Layers[0]
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		p := d.Platform.OS + "/" + d.Platform.Architecture
		if got := layerDigests(t, img)[0]; got != want[p] {
			t.Errorf("%s: first layer %s, want the base's %s", p, got, want[p])
		}
	}
}

func TestBaseErrors(t *testing.T) {
	ref, out := baseLayout(t, "linux/amd64")
	parsed, err := oci.ParseLayoutRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	other := parsed.WithDigest(v1.Hash{Algorithm: "sha256", Hex: hex64}).String()
	missingRef, _ := oci.LayoutRef(filepath.Join(t.TempDir(), "nope"), out.Digest)
	missing := missingRef.String()
	tests := []struct {
		name, base string
		platforms  []string
		want       error
	}{
		{"registry reference", "registry.test/team/server:1", nil, image.ErrBaseNotSupported},
		{"relative layout path", "oci-layout://base@" + out.Digest.String(), nil, oci.ErrBadRef},
		{"missing layout", missing, nil, image.ErrBaseNotFound},
		{"unknown digest", other, nil, image.ErrBaseNotFound},
		{"other platform", ref, []string{"linux/arm64"}, image.ErrBasePlatform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON}))
			in.Base, in.Runtime, in.Platforms = tt.base, noRuntime(t), tt.platforms
			if _, err := image.Build(context.Background(), in); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}
