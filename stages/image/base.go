package image

import (
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

var (
	// ErrBasePlatform: the base image (or index) has no image for a
	// platform that was asked.
	ErrBasePlatform = errors.New("base image has no such platform")
	// ErrBaseNotFound: the base's layout or digest does not exist.
	ErrBaseNotFound = errors.New("base image not found")
)

// isScratch reports whether base means "no base": the runtime layer then
// carries modelci's own server.
func isScratch(base string) bool { return base == "" || base == "scratch" }

// checkBase rejects bases that cannot be read yet, before any work is done.
func checkBase(base string) error {
	if isScratch(base) {
		return nil
	}
	if !strings.HasPrefix(base, LayoutScheme) {
		return fmt.Errorf("image base %q: %w", base, ErrBaseNotSupported)
	}
	_, _, err := ParseLayoutRef(base)
	return err
}

// baseImage reads platform p's image from an oci-layout:// base. The
// reference names a manifest or an index listed in the layout's index.json
// (what WriteLayout records).
func baseImage(base string, p v1.Platform) (v1.Image, error) {
	dir, h, err := ParseLayoutRef(base)
	if err != nil {
		return nil, err
	}
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
		if d.MediaType.IsImage() {
			img, err := top.Image(h)
			if err != nil {
				return nil, fmt.Errorf("image base %s: %w", base, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				return nil, fmt.Errorf("image base %s: %w", base, err)
			}
			if got := cf.Platform(); got == nil || !got.Satisfies(p) {
				return nil, fmt.Errorf("image base %s is for %s: %w: %s", base, platformOf(got), ErrBasePlatform, platformString(p))
			}
			return img, nil
		}
		idx, err := top.ImageIndex(h)
		if err != nil {
			return nil, fmt.Errorf("image base %s: %w", base, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("image base %s: %w", base, err)
		}
		for _, c := range im.Manifests {
			if c.Platform != nil && c.Platform.Satisfies(p) && c.MediaType.IsImage() {
				img, err := idx.Image(c.Digest)
				if err != nil {
					return nil, fmt.Errorf("image base %s: %w", base, err)
				}
				return img, nil
			}
		}
		return nil, fmt.Errorf("image base %s: %w: %s", base, ErrBasePlatform, platformString(p))
	}
	return nil, fmt.Errorf("image base %s: %w: %s is not listed in %s/index.json", base, ErrBaseNotFound, h, dir)
}

func platformOf(p *v1.Platform) string {
	if p == nil {
		return "no platform"
	}
	return platformString(*p)
}
