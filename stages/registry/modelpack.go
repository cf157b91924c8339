package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/stages/image"
)

// ErrNoModelPack: a serving image has no ModelPack artifact among its
// referrers (or more than one), or an artifact is not one or names no
// runtime image.
var ErrNoModelPack = errors.New("no ModelPack artifact")

// ModelPack is a model's ModelPack artifact in a registry with the images
// it ties together, each HOST/REPO@sha256:… in the artifact's repository.
type ModelPack struct {
	// Artifact is the ModelPack artifact: what a model_source volume
	// release mounts.
	Artifact string
	// Image is the serving image the artifact refers to (its subject).
	Image string
	// Runtime is the runtime image the artifact names: what mounts it.
	Runtime string
}

// modelPackManifest is what FindModelPack reads of a manifest.
type modelPackManifest struct {
	ArtifactType string            `json:"artifactType"`
	Subject      *v1.Descriptor    `json:"subject"`
	Annotations  map[string]string `json:"annotations"`
}

// FindModelPack returns the ModelPack artifact ref names or, when ref is a
// serving image, the one artifact among its referrers whose subject it
// is, with the runtime image the artifact names. ref is
// HOST/REPO@sha256:…; problems with what the registry holds wrap
// ErrNoModelPack.
func FindModelPack(ctx context.Context, ref string, opts ...Option) (ModelPack, error) {
	o := makeOptions(opts)
	r, err := o.access.ParseRef(ref)
	if err != nil {
		return ModelPack{}, err
	}
	if err := r.RequireDigest(); err != nil {
		return ModelPack{}, err
	}
	repo := r.Repository()
	m, err := readModelPackManifest(ctx, ref, o)
	if err != nil {
		return ModelPack{}, err
	}
	artifact := ref
	if m.ArtifactType != image.ArtifactTypeModelPack {
		// A serving image: its ModelPack artifact refers to it. The filter
		// is a hint a registry may ignore, so the type is checked again.
		d := r.Name().Context().Digest(r.Digest().String())
		idx, err := remote.Referrers(d, append(o.remote(ctx), remote.WithFilter("artifactType", image.ArtifactTypeModelPack))...)
		if err != nil {
			return ModelPack{}, classify("referrers of "+ref, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return ModelPack{}, fmt.Errorf("referrers of %s: %w", ref, err)
		}
		var found []string
		for _, desc := range im.Manifests {
			if desc.ArtifactType == image.ArtifactTypeModelPack {
				found = append(found, desc.Digest.String())
			}
		}
		if len(found) != 1 {
			return ModelPack{}, fmt.Errorf("%w: %s has %d ModelPack referrers (%v)", ErrNoModelPack, ref, len(found), found)
		}
		artifact = repo + "@" + found[0]
		if m, err = readModelPackManifest(ctx, artifact, o); err != nil {
			return ModelPack{}, err
		}
		if m.ArtifactType != image.ArtifactTypeModelPack || m.Subject == nil || m.Subject.Digest != r.Digest() {
			return ModelPack{}, fmt.Errorf("%w: the referrer %s of %s is not its ModelPack artifact", ErrNoModelPack, artifact, ref)
		}
	}
	runtime := m.Annotations[image.AnnotationRuntimeDigest]
	if _, err := v1.NewHash(runtime); err != nil {
		return ModelPack{}, fmt.Errorf("%w: the ModelPack artifact %s names no runtime image (%s)", ErrNoModelPack, artifact, image.AnnotationRuntimeDigest)
	}
	mp := ModelPack{Artifact: artifact, Runtime: repo + "@" + runtime}
	if m.Subject != nil {
		mp.Image = repo + "@" + m.Subject.Digest.String()
	}
	return mp, nil
}

func readModelPackManifest(ctx context.Context, ref string, o *options) (*modelPackManifest, error) {
	r, err := o.access.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	a, err := pull(ctx, r, o)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	raw, err := a.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", ref, err)
	}
	var m modelPackManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", ref, err)
	}
	return &m, nil
}
