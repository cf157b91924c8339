package registry_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/registry"
)

// teamServer is a stand-in team runtime image: its own gzip layer,
// entrypoint and user, for arch.
func teamServer(t *testing.T, arch string, seed uint64) v1.Image {
	t.Helper()
	l, err := random.Layer(2000+int64(seed), types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Config(ociImageFor(t, arch, l), v1.Config{Entrypoint: []string{"/srv/server.py"}, Cmd: []string{"--port", "8080"}, User: "1000"})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// modelInput is a build of a one-file model on base, reading registry
// bases through PullBase; no runtime binary may be asked for.
func modelInput(t *testing.T, base string) image.Input {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.json"), []byte(`{"weights":[1,2,3]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return image.Input{
		ModelDir: dir, Name: "diabetes", Version: "1.0.0", Base: base,
		Pull: registry.PullBase(fast),
		Runtime: func(context.Context, v1.Platform) (string, error) {
			t.Error("a build on a base image asked for a runtime")
			return "", image.ErrNoRuntime
		},
	}
}

func layersOf(t *testing.T, img v1.Image) []v1.Descriptor {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.Layers
}

func digests(ds []v1.Descriptor) []v1.Hash {
	var hs []v1.Hash
	for _, d := range ds {
		hs = append(hs, d.Digest)
	}
	return hs
}

// A base from a registry, by tag or by digest, or an index's entry for the
// platform: its layers first, model layers on top, its entrypoint kept
// unless the spec sets one, and the result written to a layout and pushed
// back as a valid image.
func TestBuildOnRegistryBase(t *testing.T) {
	ctx := context.Background()
	host, _ := serve(t, t.TempDir())
	amd, arm := teamServer(t, "amd64", 1), teamServer(t, "arm64", 2)
	img, err := registry.Push(ctx, amd, host+"/team/python-server", registry.WithTags("1.2"), fast)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := image.NewIndex([]v1.Image{amd, arm}, []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	multi, err := registry.Push(ctx, idx, host+"/team/python-server", registry.WithTags("1.2-multi"), fast)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, base, platform string
		entrypoint           []string
		want                 v1.Image
	}{
		{"tag", host + "/team/python-server:1.2", "linux/amd64", nil, amd},
		{"digest", img.Ref, "linux/amd64", nil, amd},
		{"index tag", host + "/team/python-server:1.2-multi", "linux/arm64", nil, arm},
		{"index digest", multi.Ref, "linux/amd64", []string{"/srv/server.py", "--model", "/model"}, amd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := modelInput(t, tt.base)
			in.Platforms, in.Entrypoint = []string{tt.platform}, tt.entrypoint
			got, err := image.Build(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(got); err != nil {
				t.Fatalf("validate: %v", err)
			}
			base, ours := digests(layersOf(t, tt.want)), digests(layersOf(t, got))
			if len(ours) != len(base)+1 || !slices.Equal(ours[:len(base)], base) {
				t.Fatalf("layers %v: want the base's %v and one model layer", ours, base)
			}
			cf, err := got.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			wantEntry, wantCmd := []string{"/srv/server.py"}, []string{"--port", "8080"}
			if tt.entrypoint != nil {
				wantEntry, wantCmd = tt.entrypoint, nil
			}
			if !slices.Equal(cf.Config.Entrypoint, wantEntry) || !slices.Equal(cf.Config.Cmd, wantCmd) || cf.Config.User != "1000" {
				t.Errorf("config %+v: want entrypoint %v, cmd %v, the base's user", cf.Config, wantEntry, wantCmd)
			}
			if cf.Architecture+"/"+cf.OS != strings.Split(tt.platform, "/")[1]+"/linux" {
				t.Errorf("config platform %s/%s, want %s", cf.OS, cf.Architecture, tt.platform)
			}
			m, err := got.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.Annotations[image.AnnotationBaseName] != tt.base || m.Annotations[image.AnnotationBaseDigest] != digestOf(t, tt.want).String() {
				t.Errorf("base annotations %v", m.Annotations)
			}

			// Run writes it, base blobs and all, and it pushes back.
			in.Layout = filepath.Join(t.TempDir(), "oci")
			out, err := image.Run(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if out.Digest != digestOf(t, got) {
				t.Fatalf("Run wrote %s, Build made %s", out.Digest, digestOf(t, got))
			}
			p, err := registry.Copy(ctx, out.Ref, host+"/models/diabetes", fast)
			if err != nil {
				t.Fatal(err)
			}
			pulled, err := registry.Pull(ctx, p.Ref, fast)
			if err != nil {
				t.Fatal(err)
			}
			checkBlobs(t, pulled)
		})
	}
}

// On a Docker schema 2 base the model layers get Docker media types, so
// the manifest stays a valid Docker manifest.
func TestBuildOnDockerBase(t *testing.T) {
	ctx := context.Background()
	host, _ := serve(t, t.TempDir())
	docker := mutate.MediaType(empty.Image, types.DockerManifestSchema2)
	l, err := random.Layer(2000, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	docker, err = mutate.AppendLayers(docker, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := docker.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Config.Entrypoint = "linux", "amd64", []string{"/srv/server.py"}
	if docker, err = mutate.ConfigFile(docker, cf); err != nil {
		t.Fatal(err)
	}
	p, err := registry.Push(ctx, docker, host+"/team/docker-server", registry.WithTags("1"), fast)
	if err != nil {
		t.Fatal(err)
	}
	got, err := image.Build(ctx, modelInput(t, p.Ref))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatalf("validate: %v", err)
	}
	mt, err := got.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	if mt != types.DockerManifestSchema2 {
		t.Errorf("media type %s, want the base's %s", mt, types.DockerManifestSchema2)
	}
	for _, l := range layersOf(t, got) {
		if !strings.HasPrefix(string(l.MediaType), "application/vnd.docker.") {
			t.Errorf("layer %s has media type %s in a Docker manifest", l.Digest, l.MediaType)
		}
	}
}

// Bases that do not exist are ErrBaseNotFound naming the reference, before
// anything is written; a registry base without a PullFunc is refused.
func TestRegistryBaseErrors(t *testing.T) {
	ctx := context.Background()
	host, _ := serve(t, t.TempDir())
	if _, err := registry.Push(ctx, teamServer(t, "amd64", 4), host+"/team/server", registry.WithTags("1"), fast); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, base string
		noPull     bool
		platforms  []string
		want       []error
	}{
		{"unknown tag", host + "/team/server:9", false, nil, []error{image.ErrBaseNotFound, registry.ErrNotFound}},
		{"unknown repository", host + "/team/nothing:1", false, nil, []error{image.ErrBaseNotFound}},
		{"unknown digest", host + "/team/server@sha256:" + strings.Repeat("ab", 32), false, nil, []error{image.ErrBaseNotFound}},
		{"other platform", host + "/team/server:1", false, []string{"linux/arm64"}, []error{image.ErrBasePlatform}},
		{"malformed", host + "/Team/server:1", false, nil, []error{registry.ErrBadRef}},
		{"no host", "python:3.12", false, nil, []error{registry.ErrBadRef}},
		{"no pull func", host + "/team/server:1", true, nil, []error{image.ErrBaseNotSupported}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := modelInput(t, tt.base)
			in.Platforms = tt.platforms
			if tt.noPull {
				in.Pull = nil
			}
			in.Layout = filepath.Join(t.TempDir(), "oci")
			_, err := image.Run(ctx, in)
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
			if !strings.Contains(err.Error(), tt.base) {
				t.Errorf("error %q does not name the reference %s", err, tt.base)
			}
			if _, err := os.Stat(filepath.Join(in.Layout, "index.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed build wrote %s/index.json", in.Layout)
			}
		})
	}
}
