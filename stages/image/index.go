package image

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NewIndex returns an OCI image index over imgs, one entry per image with
// platforms[i], and the annotations. The entries carry media type, digest,
// size and platform only: go-containerregistry's mutate.AppendManifests
// adds artifactType to each, which older tools (skopeo 1.9) cannot copy
// with --preserve-digests.
func NewIndex(imgs []v1.Image, platforms []v1.Platform, annotations map[string]string) (v1.ImageIndex, error) {
	if len(imgs) != len(platforms) {
		return nil, fmt.Errorf("index: %d images for %d platforms", len(imgs), len(platforms))
	}
	m := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests:     make([]v1.Descriptor, 0, len(imgs)),
		Annotations:   annotations,
	}
	byDigest := map[v1.Hash]v1.Image{}
	for i, img := range imgs {
		mt, err := img.MediaType()
		if err != nil {
			return nil, fmt.Errorf("index entry %d: %w", i, err)
		}
		h, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("index entry %d: %w", i, err)
		}
		size, err := img.Size()
		if err != nil {
			return nil, fmt.Errorf("index entry %d: %w", i, err)
		}
		p := platforms[i]
		m.Manifests = append(m.Manifests, v1.Descriptor{MediaType: mt, Size: size, Digest: h, Platform: &p})
		byDigest[h] = img
	}
	if len(m.Annotations) == 0 {
		m.Annotations = nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	return &index{raw: raw, manifest: &m, images: byDigest}, nil
}

// index is an image index held as its exact manifest bytes and images.
type index struct {
	raw      []byte
	manifest *v1.IndexManifest
	images   map[v1.Hash]v1.Image
}

var _ v1.ImageIndex = (*index)(nil)

func (x *index) MediaType() (types.MediaType, error) { return x.manifest.MediaType, nil }
func (x *index) Size() (int64, error)                { return int64(len(x.raw)), nil }
func (x *index) RawManifest() ([]byte, error)        { return x.raw, nil }

func (x *index) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(x.raw))
	return h, err
}

func (x *index) IndexManifest() (*v1.IndexManifest, error) { return x.manifest.DeepCopy(), nil }

func (x *index) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := x.images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("index: no image %s", h)
}

func (x *index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("index: no child index %s", h)
}
