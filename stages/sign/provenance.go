package sign

import (
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/oci"
)

// SLSA provenance v1 (https://slsa.dev/spec/v1.0/provenance).
const (
	ProvenancePredicateType = "https://slsa.dev/provenance/v1"
	// BuildType names modelci's build: train, evaluate, gate, package.
	BuildType = "https://modelci.dev/buildtypes/model/v1"
)

// Provenance is the SLSA v1 provenance predicate.
type Provenance struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition says what was built from what.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   map[string]any       `json:"externalParameters"`
	InternalParameters   map[string]any       `json:"internalParameters,omitempty"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies,omitempty"`
}

// ResourceDescriptor is an artifact the build used.
type ResourceDescriptor struct {
	Name        string            `json:"name,omitempty"`
	URI         string            `json:"uri,omitempty"`
	Digest      map[string]string `json:"digest,omitempty"`
	Annotations map[string]any    `json:"annotations,omitempty"`
}

// RunDetails says who built it and when.
type RunDetails struct {
	Builder  Builder        `json:"builder"`
	Metadata *BuildMetadata `json:"metadata,omitempty"`
	// Byproducts are what the build checked on the way: the smoke test.
	Byproducts []ResourceDescriptor `json:"byproducts,omitempty"`
}

// Builder identifies the platform that ran the build.
type Builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// BuildMetadata identifies one run.
type BuildMetadata struct {
	InvocationID string     `json:"invocationId,omitempty"`
	StartedOn    *time.Time `json:"startedOn,omitempty"`
	FinishedOn   *time.Time `json:"finishedOn,omitempty"`
}

// ProvenanceInput is what a run knows about how a model image was made.
type ProvenanceInput struct {
	// BuilderID identifies the build platform (a workflow URL in GitHub
	// Actions; a modelci URI locally). Required.
	BuilderID      string
	ModelciVersion string
	RunID          string
	Model          modelgate.ModelRef

	// DatasetURI names the dataset (its path); DatasetDigest is
	// "sha256:<hex>" (metrics.json dataset.digest). Required.
	DatasetURI    string
	DatasetDigest string
	// SourceURI and SourceRevision identify the training code (a git
	// repository and commit); optional outside a repository.
	SourceURI      string
	SourceRevision string
	// TrainerImage is the trainer's image by digest (repo@sha256:…), or
	// BuiltinTrainer and BuiltinTrainerVersion name modelci's built-in
	// trainer. One of them is required.
	TrainerImage          string
	BuiltinTrainer        string
	BuiltinTrainerVersion string
	// Parameters are the training parameters (train.params) and the split.
	Parameters map[string]any
	// Byproducts go to runDetails.byproducts (the smoke test's result).
	Byproducts []ResourceDescriptor

	StartedOn, FinishedOn time.Time
}

// NewProvenance builds the SLSA provenance predicate for a model image; it
// refuses input that would not say which data and trainer made the model.
func NewProvenance(in ProvenanceInput) (*Provenance, error) {
	if in.BuilderID == "" {
		return nil, fmt.Errorf("provenance: builder id is empty")
	}
	dataset, err := digestMap(in.DatasetDigest)
	if err != nil {
		return nil, fmt.Errorf("provenance: dataset digest: %w", err)
	}
	deps := []ResourceDescriptor{{Name: "dataset", URI: in.DatasetURI, Digest: dataset}}
	if in.SourceRevision != "" {
		deps = append(deps, ResourceDescriptor{Name: "source", URI: in.SourceURI, Digest: map[string]string{"gitCommit": in.SourceRevision}})
	}
	switch {
	case in.TrainerImage != "":
		repo, h, err := oci.SplitPinned(in.TrainerImage)
		if err != nil {
			return nil, fmt.Errorf("provenance: trainer image is not pinned by digest: %w", err)
		}
		deps = append(deps, ResourceDescriptor{Name: "trainer", URI: "oci://" + repo, Digest: map[string]string{h.Algorithm: h.Hex}})
	case in.BuiltinTrainer != "" && in.BuiltinTrainerVersion != "":
		deps = append(deps, ResourceDescriptor{
			Name: "trainer",
			URI:  fmt.Sprintf("https://modelci.dev/trainers/builtin/%s@%s", in.BuiltinTrainer, in.BuiltinTrainerVersion),
			Annotations: map[string]any{
				"builtin": in.BuiltinTrainer, "version": in.BuiltinTrainerVersion,
			},
		})
	default:
		return nil, fmt.Errorf("provenance: neither a trainer image digest nor a built-in trainer and version")
	}
	ext := map[string]any{
		"model": in.Model,
	}
	if in.Parameters != nil {
		ext["parameters"] = in.Parameters
	}
	p := &Provenance{
		BuildDefinition: BuildDefinition{
			BuildType:            BuildType,
			ExternalParameters:   ext,
			ResolvedDependencies: deps,
		},
		RunDetails: RunDetails{Builder: Builder{ID: in.BuilderID}, Byproducts: in.Byproducts},
	}
	if in.ModelciVersion != "" {
		p.RunDetails.Builder.Version = map[string]string{"modelci": in.ModelciVersion}
	}
	if in.RunID != "" || !in.StartedOn.IsZero() || !in.FinishedOn.IsZero() {
		md := &BuildMetadata{InvocationID: in.RunID}
		if !in.StartedOn.IsZero() {
			t := in.StartedOn.UTC()
			md.StartedOn = &t
		}
		if !in.FinishedOn.IsZero() {
			t := in.FinishedOn.UTC()
			md.FinishedOn = &t
		}
		p.RunDetails.Metadata = md
	}
	return p, nil
}

// digestMap turns "sha256:<hex>" into a resource descriptor's digest set.
func digestMap(s string) (map[string]string, error) {
	h, err := v1.NewHash(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not sha256:<hex>: %w", s, err)
	}
	return map[string]string{h.Algorithm: h.Hex}, nil
}
