package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// emptyConfig is the OCI empty descriptor's content.
var emptyConfig = []byte("{}")

// Pushed says where an artifact now lives.
type Pushed struct {
	Ref    string // HOST[:PORT]/PATH@sha256:…
	Digest v1.Hash
	Parts  []Descriptor
}

// Push packs parts as one artifact of artifactType and pushes it to repo
// (HOST[:PORT]/PATH) by digest, without a tag: the digest is the only name
// it gets, so nothing can move under whoever holds the reference. Blobs
// the registry already has are not uploaded again.
func Push(ctx context.Context, repo, artifactType string, parts []Part, opts ...Option) (Pushed, error) {
	o := makeOptions(opts)
	if err := oci.CheckRepository(repo); err != nil {
		return Pushed{}, fmt.Errorf("push artifact: %w", err)
	}
	img, descs, err := build(ctx, artifactType, parts)
	if err != nil {
		return Pushed{}, fmt.Errorf("push artifact to %s: %w", repo, err)
	}
	p, err := registry.Push(ctx, img, repo, o.registry...)
	if err != nil {
		return Pushed{}, fmt.Errorf("push artifact: %w", err)
	}
	return Pushed{Ref: p.Ref, Digest: p.Digest, Parts: descs}, nil
}

// manifest is an OCI image manifest with an artifactType, its fields in
// the order the image spec shows them.
type manifest struct {
	SchemaVersion int64           `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType"`
	ArtifactType  string          `json:"artifactType"`
	Config        v1.Descriptor   `json:"config"`
	Layers        []v1.Descriptor `json:"layers"`
}

// build lists and hashes every part and assembles the artifact.
func build(ctx context.Context, artifactType string, parts []Part) (v1.Image, []Descriptor, error) {
	if artifactType == "" {
		return nil, nil, errors.New("no artifact type")
	}
	if len(parts) == 0 {
		return nil, nil, fmt.Errorf("%w: no parts", ErrBadPart)
	}
	paths := make([]string, len(parts))
	for i, p := range parts {
		paths[i] = p.Path
	}
	if err := checkPaths(paths); err != nil {
		return nil, nil, err
	}
	h, n, err := v1.SHA256(bytes.NewReader(emptyConfig))
	if err != nil {
		return nil, nil, err
	}
	a := &artifact{config: emptyConfig, layers: map[v1.Hash]*layer{}}
	m := manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  artifactType,
		Config:        v1.Descriptor{MediaType: MediaTypeEmptyConfig, Digest: h, Size: n},
	}
	var descs []Descriptor
	for _, p := range parts {
		l, err := listPart(ctx, p)
		if err != nil {
			return nil, nil, err
		}
		if err := l.hash(); err != nil {
			return nil, nil, fmt.Errorf("part %s (%s): %w", p.Path, p.Dir, err)
		}
		m.Layers = append(m.Layers, v1.Descriptor{
			MediaType:   l.mediaType,
			Digest:      l.digest,
			Size:        l.size,
			Annotations: map[string]string{AnnotationPath: p.Path},
		})
		descs = append(descs, Descriptor{Path: p.Path, MediaType: string(l.mediaType), Digest: l.digest, Size: l.size})
		a.layers[l.digest] = l
	}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, nil, err
	}
	img, err := partial.CompressedToImage(a)
	if err != nil {
		return nil, nil, err
	}
	return img, descs, nil
}

// artifact is the manifest as its exact bytes over the parts' layers.
type artifact struct {
	manifest, config []byte
	layers           map[v1.Hash]*layer
}

var _ partial.CompressedImageCore = (*artifact)(nil)

func (a *artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("artifact: no layer %s", h)
}
