package registry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
)

// Artifact is an image (v1.Image) or an index (v1.ImageIndex) with its
// manifest exactly as stored, so that its digest survives a copy.
type Artifact interface {
	mutate.Appendable
	RawManifest() ([]byte, error)
}

// Pull returns the image or index that ref (see oci.ParseRef) names, unchanged;
// blobs are read lazily.
func Pull(ctx context.Context, ref string, opts ...Option) (Artifact, error) {
	o := makeOptions(opts)
	r, err := o.access.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	return pull(ctx, r, o)
}

// Resolve returns the digest ref names, checking that it exists.
func Resolve(ctx context.Context, ref string, opts ...Option) (v1.Hash, error) {
	o := makeOptions(opts)
	r, err := o.access.ParseRef(ref)
	if err != nil {
		return v1.Hash{}, err
	}
	if r.IsLayout() {
		a, err := pull(ctx, r, o)
		if err != nil {
			return v1.Hash{}, err
		}
		return a.Digest()
	}
	desc, err := remote.Head(r.Name(), o.remote(ctx)...)
	if err != nil {
		return v1.Hash{}, classify("resolve "+ref, err)
	}
	if r.HasDigest() && desc.Digest != r.Digest() {
		return v1.Hash{}, fmt.Errorf("resolve %s: %w: the registry answered %s", ref, ErrDigestMismatch, desc.Digest)
	}
	return desc.Digest, nil
}

func pull(ctx context.Context, r oci.Ref, o *options) (Artifact, error) {
	if r.IsLayout() {
		return pullLayout(r)
	}
	desc, err := remote.Get(r.Name(), o.remote(ctx)...)
	if err != nil {
		return nil, classify("pull "+r.String(), err)
	}
	var a Artifact
	if desc.MediaType.IsIndex() {
		a, err = desc.ImageIndex()
	} else {
		a, err = desc.Image()
	}
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	return a, nil
}

// pullLayout finds r's digest among the layout's top-level manifests.
func pullLayout(r oci.Ref) (Artifact, error) {
	idx, err := layout.ImageIndexFromPath(r.Layout())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("layout %s: %w: %w", r.Layout(), ErrNotFound, err)
	} else if err != nil {
		return nil, fmt.Errorf("layout %s: %w", r.Layout(), err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", r.Layout(), err)
	}
	for _, d := range im.Manifests {
		if d.Digest != r.Digest() {
			continue
		}
		var a Artifact
		if d.MediaType.IsIndex() {
			a, err = idx.ImageIndex(d.Digest)
		} else {
			a, err = idx.Image(d.Digest)
		}
		if err != nil {
			return nil, fmt.Errorf("layout %s: %s: %w", r.Layout(), d.Digest, err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("layout %s: %w: no manifest %s in index.json", r.Layout(), ErrNotFound, r.Digest())
}

// Copy copies the image or index src names to dst, by digest and unchanged
// (the digest stays the same), blobs and all.
//
// src is any reference oci.ParseRef accepts. dst is HOST[:PORT]/PATH,
// HOST[:PORT]/PATH:TAG, HOST[:PORT]/PATH@sha256:… (which must be src's
// digest), or an OCI layout oci-layout://ABS_PATH[@sha256:…]. Tags are
// dst's, else WithTags', else src's; they follow Push's rules in a
// registry. A layout needs a tag in its index.json: without one it gets
// sha256-HEX, and a layout tag moves with a warning (ARCHITECTURE.md).
func Copy(ctx context.Context, src, dst string, opts ...Option) (Pushed, error) {
	o := makeOptions(opts)
	s, err := o.access.ParseRef(src)
	if err != nil {
		return Pushed{}, err
	}
	d, err := o.access.ParseDest(dst)
	if err != nil {
		return Pushed{}, err
	}
	a, err := pull(ctx, s, o)
	if err != nil {
		return Pushed{}, err
	}
	digest, err := a.Digest()
	if err != nil {
		return Pushed{}, fmt.Errorf("copy %s: %w", src, err)
	}
	for _, want := range []v1.Hash{s.Digest(), d.Digest} {
		if want != (v1.Hash{}) && want != digest {
			return Pushed{}, fmt.Errorf("copy %s to %s: %w: the content is %s, the reference names %s", src, dst, ErrDigestMismatch, digest, want)
		}
	}
	if d.Tag != "" {
		o.tags = append(o.tags, d.Tag)
	} else if len(o.tags) == 0 && s.Tag() != "" {
		o.tags = []string{s.Tag()}
	}
	if d.Layout != "" {
		return copyToLayout(ctx, a, d.Layout, digest, o)
	}
	if !s.IsLayout() && s.Name().Context().RegistryStr() == d.Repository.Name().RegistryStr() {
		// Within one registry, blobs are mounted rather than uploaded.
		o.mountFrom = s.Name().Context().RepositoryStr()
	}
	return push(ctx, a, d.Repository, o)
}

func copyToLayout(ctx context.Context, a Artifact, dir string, digest v1.Hash, o *options) (Pushed, error) {
	tags, err := tagsFor(o)
	if err != nil {
		return Pushed{}, fmt.Errorf("copy to layout %s: %w", dir, err)
	}
	if len(tags) == 0 {
		tags = []string{digest.Algorithm + "-" + digest.Hex}
	}
	var out Pushed
	for _, tag := range tags {
		w, err := image.WriteLayout(ctx, dir, a, tag)
		if err != nil {
			return Pushed{}, fmt.Errorf("copy to layout %s: %w", dir, err)
		}
		if w.Moved {
			fmt.Fprintf(o.log, "warning: layout %s: tag %s moved from %s to %s\n", dir, tag, w.Previous, w.Digest)
		}
		out = Pushed{Ref: w.Ref, Digest: w.Digest, Tags: append(out.Tags, tag)}
	}
	return out, nil
}

// ListTags returns the tags of repo (HOST[:PORT]/PATH); a repository the
// registry does not know yet has none.
func ListTags(ctx context.Context, repo string, opts ...Option) ([]string, error) {
	o := makeOptions(opts)
	r, err := o.access.ParseRepository(repo)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r.Name(), o.remote(ctx)...)
	if err != nil {
		err = classify("list tags of "+repo, err)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	return tags, nil
}
