package image

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
)

var (
	// ErrBasePlatform: the base image (or index) has no image for a
	// platform that was asked.
	ErrBasePlatform = errors.New("base image has no such platform")
	// ErrBaseNotFound: the base's layout, repository, tag or digest does
	// not exist.
	ErrBaseNotFound = errors.New("base image not found")
)

// PullFunc returns the image or index (a v1.Image or v1.ImageIndex) that a
// registry reference names, with blobs read lazily. An error for a
// reference that does not exist wraps ErrBaseNotFound. This package does
// not reach registries itself: stages/registry provides one (PullBase).
type PullFunc func(ctx context.Context, ref string) (mutate.Appendable, error)

// isScratch reports whether base means "no base": the runtime layer then
// carries modelci's own server.
func isScratch(base string) bool { return base == "" || base == "scratch" }

// checkBase rejects bases that cannot be read, before any work is done.
func checkBase(base string, pull PullFunc) error {
	if isScratch(base) {
		return nil
	}
	if !strings.HasPrefix(base, oci.LayoutScheme) {
		if pull == nil {
			return fmt.Errorf("image base %q: %w", base, ErrBaseNotSupported)
		}
		return nil
	}
	_, err := oci.ParseLayoutRef(base)
	return err
}

// resolveBase returns the image or index a non-scratch base names: from an
// OCI layout, or from a registry through pull.
func resolveBase(ctx context.Context, base string, pull PullFunc) (mutate.Appendable, error) {
	if strings.HasPrefix(base, oci.LayoutScheme) {
		return layoutBase(base)
	}
	if pull == nil {
		return nil, fmt.Errorf("image base %q: %w", base, ErrBaseNotSupported)
	}
	a, err := pull(ctx, base)
	if err != nil {
		return nil, fmt.Errorf("image base %s: %w", base, err)
	}
	switch a.(type) {
	case v1.Image, v1.ImageIndex:
		return a, nil
	}
	mt, _ := a.MediaType()
	return nil, fmt.Errorf("image base %s: %w: %s is neither an image nor an index", base, ErrBaseNotSupported, mt)
}

// layoutBase reads an oci-layout:// base: the reference names a manifest
// or an index listed in the layout's index.json (what WriteLayout records).
func layoutBase(base string) (mutate.Appendable, error) {
	ref, err := oci.ParseLayoutRef(base)
	if err != nil {
		return nil, err
	}
	dir, h := ref.Layout(), ref.Digest()
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("image base %s: %w: %w", base, ErrBaseNotFound, err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("image base %s: %w", base, err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("image base %s: %w", base, err)
	}
	for _, d := range m.Manifests {
		if d.Digest != h {
			continue
		}
		var a mutate.Appendable
		if d.MediaType.IsIndex() {
			a, err = top.ImageIndex(h)
		} else {
			a, err = top.Image(h)
		}
		if err != nil {
			return nil, fmt.Errorf("image base %s: %w", base, err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("image base %s: %w: %s is not listed in %s/index.json", base, ErrBaseNotFound, h, dir)
}

// platformImage picks platform p's image from a resolved base: the image
// itself when its config is for p, or the index entry for p.
func platformImage(base string, a mutate.Appendable, p v1.Platform) (v1.Image, error) {
	switch a := a.(type) {
	case v1.Image:
		cf, err := a.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("image base %s: %w", base, err)
		}
		if got := cf.Platform(); got == nil || !got.Satisfies(p) {
			return nil, fmt.Errorf("image base %s is for %s: %w: %s", base, platformOf(got), ErrBasePlatform, platformString(p))
		}
		return a, nil
	case v1.ImageIndex:
		im, err := a.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("image base %s: %w", base, err)
		}
		for _, c := range im.Manifests {
			if c.Platform != nil && c.Platform.Satisfies(p) && c.MediaType.IsImage() {
				img, err := a.Image(c.Digest)
				if err != nil {
					return nil, fmt.Errorf("image base %s: %s: %w", base, platformString(p), err)
				}
				return img, nil
			}
		}
		return nil, fmt.Errorf("image base %s: %w: %s", base, ErrBasePlatform, platformString(p))
	}
	return nil, fmt.Errorf("image base %s: %w: %T", base, ErrBaseNotSupported, a)
}

// onBase returns l as a layer of an image on base: on a Docker schema 2
// base, whose manifest cannot list OCI layers, with the Docker equivalent
// of its media type (the bytes are the same).
func onBase(base v1.Image, l *layer) v1.Layer {
	if base == nil {
		return l
	}
	if bmt, err := base.MediaType(); err != nil || bmt != types.DockerManifestSchema2 {
		return l
	}
	if l.gzip {
		return dockerLayer{l, types.DockerLayer}
	}
	return dockerLayer{l, types.DockerUncompressedLayer}
}

// dockerLayer is a layer reporting a Docker media type.
type dockerLayer struct {
	*layer
	mt types.MediaType
}

func (d dockerLayer) MediaType() (types.MediaType, error) { return d.mt, nil }

func platformOf(p *v1.Platform) string {
	if p == nil {
		return "no platform"
	}
	return platformString(*p)
}
