package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The CNCF ModelPack format (github.com/modelpack/model-spec, docs/spec.md,
// docs/config.md, docs/annotations.md): an OCI image manifest with this
// artifactType, a config of MediaTypeModelPackConfig, and layers of the
// model.weight media types.
const (
	ArtifactTypeModelPack    = "application/vnd.cncf.model.manifest.v1+json"
	MediaTypeModelPackConfig = "application/vnd.cncf.model.config.v1+json"
	// MediaTypeModelWeight is a tar holding one weights file, uncompressed.
	MediaTypeModelWeight = "application/vnd.cncf.model.weight.v1.tar"
	// MediaTypeModelWeightGzip is a gzipped tar of weights.
	MediaTypeModelWeightGzip = "application/vnd.cncf.model.weight.v1.tar+gzip"
	// MediaTypeModelWeightConfigGzip is a gzipped tar of the files that
	// describe the weights (a model's small files beside large weights).
	MediaTypeModelWeightConfigGzip = "application/vnd.cncf.model.weight.config.v1.tar+gzip"
	// MediaTypeModelCode is a tar of code (scripts, sources) that goes with
	// a model: a training job's code (stages/artifact).
	MediaTypeModelCode = "application/vnd.cncf.model.code.v1.tar"
	// MediaTypeModelDataset is a tar of a data set a model is trained or
	// evaluated on: a training job's data (stages/artifact).
	MediaTypeModelDataset = "application/vnd.cncf.model.dataset.v1.tar"
	// AnnotationModelPackFilepath is the layer annotation naming the path
	// of the file (or directory) the layer holds.
	AnnotationModelPackFilepath = "org.cncf.model.filepath"
)

// Annotations modelci adds to a ModelPack artifact and to the layout's
// index.json.
const (
	// AnnotationImageDigest names, on the ModelPack artifact, the serving
	// image (or index) built from the same model layers: its subject.
	AnnotationImageDigest = "dev.modelci.image.digest"
	// AnnotationRuntimeDigest names, on the ModelPack artifact, the runtime
	// image that serves it from an image volume (deploy.model_source:
	// volume), in the same repository.
	AnnotationRuntimeDigest = "dev.modelci.runtime.digest"
	// AnnotationLayoutEntry marks an untagged entry of a layout's
	// index.json that modelci wrote: LayoutEntryModelPack or
	// LayoutEntryRuntime. modelci gc drops such an entry once no kept run
	// records its digest.
	AnnotationLayoutEntry = "dev.modelci.layout.entry"
	LayoutEntryModelPack  = "modelpack"
	LayoutEntryRuntime    = "runtime"
)

// ModelPackRoot is where the model files are inside the ModelPack
// artifact's layers: the layers are the serving image's model layers, blob
// for blob, so their tar entries are ModelPath without its slash
// (model/model.json). A tool that extracts the artifact into DIR finds the
// model in DIR/model; an image volume mounts it with subPath: model.
const ModelPackRoot = "model"

// ModelPack describes the model for the ModelPack artifact's config
// (ModelPack's config.md: the config object); every field is optional.
type ModelPack struct {
	// Format is the model's format: onnx, or modelci's built-in linear
	// model document.
	Format string
	// Architecture is the model's architecture (linear for the built-in
	// model; empty when unknown).
	Architecture string
	// Precision is the precision the model computes in (float64, float32).
	Precision string
}

// modelPackConfig is the ModelPack config, application/vnd.cncf.model.config.v1+json.
type modelPackConfig struct {
	Descriptor modelPackDescriptor `json:"descriptor"`
	Config     modelPackModel      `json:"config"`
	ModelFS    modelPackFS         `json:"modelfs"`
}

type modelPackDescriptor struct {
	CreatedAt string `json:"createdAt,omitempty"`
	Name      string `json:"name,omitempty"`
	Version   string `json:"version,omitempty"`
	Title     string `json:"title,omitempty"`
	SourceURL string `json:"sourceURL,omitempty"`
	Revision  string `json:"revision,omitempty"`
}

type modelPackModel struct {
	Architecture string `json:"architecture,omitempty"`
	Format       string `json:"format,omitempty"`
	Precision    string `json:"precision,omitempty"`
}

type modelPackFS struct {
	Type    string    `json:"type"`
	DiffIDs []v1.Hash `json:"diffIds"`
}

// artifactManifest is an OCI image manifest with an artifactType, its
// fields in the order ModelPack's spec shows them.
type artifactManifest struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// modelPackMediaType is the ModelPack media type of a model layer: each
// large file's uncompressed layer holds weights; the gzip layer of small
// files holds the weights too when it is the only layer, else what
// describes them.
func modelPackMediaType(l *layer, only bool) string {
	switch {
	case !l.gzip:
		return MediaTypeModelWeight
	case only:
		return MediaTypeModelWeightGzip
	default:
		return MediaTypeModelWeightConfigGzip
	}
}

// modelPackPath is the org.cncf.model.filepath of a model layer: the one
// file of a large file's layer, else the directory the small files' layer
// holds (ModelPackRoot), as the tar names them.
func modelPackPath(l *layer) string {
	if !l.gzip {
		for i := len(l.entries) - 1; i >= 0; i-- {
			if l.entries[i].src != "" {
				return l.entries[i].name
			}
		}
	}
	return path.Clean(ModelPackRoot)
}

// modelPack assembles the ModelPack artifact over the model layers (the
// very blobs of the serving image's model layers, under other media
// types), with subject the serving image and, when runtime is set, the
// runtime image named.
func (in Input) modelPack(pp parts, subject v1.Descriptor, runtime *v1.Descriptor) (*artifact, error) {
	created, err := in.created()
	if err != nil {
		return nil, err
	}
	mp := ModelPack{}
	if in.ModelPack != nil {
		mp = *in.ModelPack
	}
	cfg := modelPackConfig{
		Descriptor: modelPackDescriptor{
			CreatedAt: created.Format(time.RFC3339),
			Name:      in.Name, Version: in.Version, Title: in.Name,
			SourceURL: in.Source, Revision: in.Revision,
		},
		Config:  modelPackModel{Architecture: mp.Architecture, Format: mp.Format, Precision: mp.Precision},
		ModelFS: modelPackFS{Type: "layers", DiffIDs: []v1.Hash{}},
	}
	a := &artifact{layers: map[v1.Hash]partial.CompressedLayer{}}
	m := artifactManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactTypeModelPack,
		Layers:        []v1.Descriptor{},
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
	}
	for _, l := range pp.models {
		if err := l.compute(); err != nil {
			return nil, err
		}
		m.Layers = append(m.Layers, v1.Descriptor{
			MediaType:   types.MediaType(modelPackMediaType(l, len(pp.models) == 1)),
			Digest:      l.digest,
			Size:        l.size,
			Annotations: map[string]string{AnnotationModelPackFilepath: modelPackPath(l)},
		})
		cfg.ModelFS.DiffIDs = append(cfg.ModelFS.DiffIDs, l.diffID)
		a.layers[l.digest] = l
	}
	if a.config, err = json.Marshal(cfg); err != nil {
		return nil, fmt.Errorf("modelpack config: %w", err)
	}
	h, n, err := v1.SHA256(bytes.NewReader(a.config))
	if err != nil {
		return nil, err
	}
	m.Config = v1.Descriptor{MediaType: MediaTypeModelPackConfig, Digest: h, Size: n}
	annotations, err := in.annotations()
	if err != nil {
		return nil, err
	}
	annotations[AnnotationImageDigest] = subject.Digest.String()
	if runtime != nil {
		annotations[AnnotationRuntimeDigest] = runtime.Digest.String()
	}
	m.Annotations = annotations
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("modelpack manifest: %w", err)
	}
	return a, nil
}

// artifact is an OCI manifest held as its exact bytes: the ModelPack
// artifact, written to a layout as an image is.
type artifact struct {
	manifest, config []byte
	layers           map[v1.Hash]partial.CompressedLayer
}

var _ partial.CompressedImageCore = (*artifact)(nil)

func (a *artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("modelpack: no layer %s", h)
}

// image is the artifact as a v1.Image, for the layout writer.
func (a *artifact) image() (v1.Image, error) { return partial.CompressedToImage(a) }
