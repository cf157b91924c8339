package registry_test

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/registry"
)

// TestFindModelPackRefusals: an image none of whose referrers is a
// ModelPack artifact (here one that is another kind of artifact about it)
// has none to find, and a tag is refused before the registry is asked.
// What a run pushes is found by pipeline's and promote's tests.
func TestFindModelPackRefusals(t *testing.T) {
	ctx := t.Context()
	srv := newServer(t)
	repo := srv.Host + "/models/diabetes"
	img := randomImage(t, 7)
	pushed, err := registry.Push(ctx, img, repo, registry.WithTags("1.0.0"), fast)
	if err != nil {
		t.Fatal(err)
	}
	_, err = registry.FindModelPack(ctx, pushed.Ref, fast)
	if !errors.Is(err, registry.ErrNoModelPack) || !strings.Contains(err.Error(), "0 ModelPack referrers") {
		t.Fatalf("an image without referrers: %v; want %v", err, registry.ErrNoModelPack)
	}

	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	other := mutate.ConfigMediaType(randomImage(t, 9), types.MediaType("application/vnd.example.sbom.config.v1+json"))
	ref := mutate.Subject(other, v1.Descriptor{MediaType: mt, Digest: pushed.Digest, Size: int64(len(raw))}).(v1.Image)
	if _, err := registry.Push(ctx, ref, repo, fast); err != nil {
		t.Fatal(err)
	}
	_, err = registry.FindModelPack(ctx, pushed.Ref, fast)
	if !errors.Is(err, registry.ErrNoModelPack) || !strings.Contains(err.Error(), "0 ModelPack referrers") {
		t.Fatalf("an image with another kind of referrer: %v; want %v", err, registry.ErrNoModelPack)
	}

	if _, err := registry.FindModelPack(ctx, repo+":1.0.0", fast); err == nil || errors.Is(err, registry.ErrNoModelPack) {
		t.Fatalf("a tag: %v; want a reference error", err)
	}
}
