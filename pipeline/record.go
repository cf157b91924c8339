package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/modelci/modelci/spec"

	"github.com/modelci/modelci/modelgate"
)

// RecordSchema identifies run.json v3: v2 with snake_case keys throughout
// (v2's "model" was {"Name", "Version"}; v3's is {"name", "version"}).
const RecordSchema = "modelci.dev/run/v3"

// RecordSchemaV2 is run.json v1 plus the run's status (a failed run is
// recorded too), and the model named by its image layers rather than
// always copied into the run directory. ReadRecord reads it as v3 (its
// capitalised model keys decode all the same).
const RecordSchemaV2 = "modelci.dev/run/v2"

// RecordSchemaV1 is run.json as modelci wrote it before failed runs were
// recorded: ReadRecord reads it as a succeeded run.
const RecordSchemaV1 = "modelci.dev/run/v1"

// Status is how a run ended.
type Status string

// Statuses of a run. A run the gate refused succeeded: it ran to its end
// and its verdict says FAIL. A run that stopped on an error, a timeout or
// a signal failed: nothing of it is tagged, and it is never a baseline, a
// rebuild's subject or a gc anchor.
const (
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
)

// Record is run.json: every input and output digest of one run, its verdict,
// figures and timings, so that a run can be audited and rebuilt.
type Record struct {
	Schema   string             `json:"schema"`
	ID       string             `json:"id"`
	Status   Status             `json:"status"`
	Started  time.Time          `json:"started"`
	Finished time.Time          `json:"finished"`
	Decision modelgate.Decision `json:"decision"`
	// Error is why a failed run stopped, and FailedStage the stage it
	// stopped in (data, train, …, deploy; "record" when the run directory
	// itself could not be written, "tag" when the layout could not be
	// tagged). The outputs hold what the stages before it produced.
	Error       string `json:"error,omitempty"`
	FailedStage string `json:"failed_stage,omitempty"`

	Spec    SpecInfo          `json:"spec"`
	Model   spec.ModelSpec    `json:"model"`
	Inputs  Inputs            `json:"inputs"`
	Outputs Outputs           `json:"outputs"`
	Verdict modelgate.Verdict `json:"verdict"`
	Figures Figures           `json:"figures"`
	Timings []Timing          `json:"timings"`
}

// SpecInfo identifies the spec a run read.
type SpecInfo struct {
	File   string `json:"file"`
	Digest string `json:"digest"`
}

// Inputs are what a run consumed.
type Inputs struct {
	Dataset  DatasetInput   `json:"dataset"`
	Split    SplitInput     `json:"split"`
	Trainer  TrainerInput   `json:"trainer"`
	Params   map[string]any `json:"params"`
	Baseline *BaselineInput `json:"baseline,omitempty"`
	Runtimes []RuntimeInput `json:"runtimes,omitempty"`
	// Cluster is the Job that trained the model (train.runner: kubernetes).
	Cluster *ClusterInput `json:"cluster,omitempty"`
}

// RuntimeInput is the server binary built into the image for a platform.
type RuntimeInput struct {
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
}

// DatasetInput is the data set as loaded.
type DatasetInput struct {
	Path     string   `json:"path"`
	Digest   string   `json:"digest"`
	Rows     int      `json:"rows"`
	Features []string `json:"features"`
	Target   string   `json:"target"`
}

// SplitInput is the train/test split.
type SplitInput struct {
	Seed         int64   `json:"seed"`
	TestFraction float64 `json:"test_fraction"`
	TrainDigest  string  `json:"train_digest"`
	TrainRows    int     `json:"train_rows"`
	TestDigest   string  `json:"test_digest"`
	TestRows     int     `json:"test_rows"`
}

// TrainerInput says which trainer and evaluator ran.
type TrainerInput struct {
	Builtin   string   `json:"builtin,omitempty"`
	Version   string   `json:"version,omitempty"`
	Command   []string `json:"command,omitempty"`
	Evaluator []string `json:"evaluator,omitempty"`
	// Format is train.format; ONNXOps the operators of an ONNX model, as
	// the runtime loaded it.
	Format  string   `json:"format,omitempty"`
	ONNXOps []string `json:"onnx_ops,omitempty"`
}

// BaselineInput is the champion's metrics the gate compared against.
type BaselineInput struct {
	Source string `json:"source"` // a path, "run:<id>" or "environment:<name>"
	Digest string `json:"digest"`
	// Image and Version name an environment's champion.
	Image   string `json:"image,omitempty"`
	Version string `json:"version,omitempty"`
	// Rescored: the champion was scored on another test split, so its model
	// was re-scored on this run's; RescoredDigest is of those metrics
	// (champion/metrics.json in the run directory).
	Rescored       bool   `json:"rescored,omitempty"`
	RescoredDigest string `json:"rescored_digest,omitempty"`
}

// Artifact is a file or tree identified by its digest.
type Artifact struct {
	Path   string `json:"path,omitempty"`
	Digest string `json:"digest"`
}

// ModelOutput is the trained model. Its files are stored once: as layers
// of the image in the output's OCI layout (Layers, blobs/sha256/HEX), and
// in the run directory's model/ (Path) only when the model is smaller than
// ModelKeepLimit, or when no image holds it (a run the gate refused).
type ModelOutput struct {
	Path   string `json:"path,omitempty"`
	Digest string `json:"digest"`
	// Size is the bytes of the model's files.
	Size int64 `json:"size"`
	// Layers are the image's layers under /model, in order.
	Layers []Layer `json:"layers,omitempty"`
}

// Layer is a layer blob of the output's OCI layout.
type Layer struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
}

// Outputs are what a run produced.
type Outputs struct {
	Model   ModelOutput  `json:"model"`
	Metrics Artifact     `json:"metrics"`
	Gate    Artifact     `json:"gate"`
	Image   *ImageOutput `json:"image,omitempty"`
	// ModelPack is the model as a CNCF ModelPack artifact, its layers the
	// image's model layers (the same blobs); Runtime the image that serves
	// it from an image volume (deploy.model_source: volume). Both are in
	// the output's OCI layout untagged, listed in index.json once the run
	// has succeeded.
	ModelPack *ArtifactOutput `json:"modelpack,omitempty"`
	Runtime   *ArtifactOutput `json:"runtime,omitempty"`
	Smoke     *SmokeOutput    `json:"smoke,omitempty"`
	Push      *PushOutput     `json:"push,omitempty"`
	Sign      *SignOutput     `json:"sign,omitempty"`
	Deploy    *DeployOutput   `json:"deploy,omitempty"`
}

// DeployOutput says what the run did with Kubernetes.
type DeployOutput struct {
	Rendered  int    `json:"rendered,omitempty"` // manifests written to deploy/ in the run directory
	Context   string `json:"context,omitempty"`
	Namespace string `json:"namespace"`
	Result    string `json:"result,omitempty"`
}

// SignOutput holds the digests of the signature, attestation and metrics
// manifests written next to the image; ModelPack the same for the
// ModelPack artifact, and RuntimeSignature the runtime image's signature.
type SignOutput struct {
	Signature             string      `json:"signature"`
	GateAttestation       string      `json:"gate_attestation"`
	ProvenanceAttestation string      `json:"provenance_attestation"`
	Metrics               string      `json:"metrics"`
	ModelPack             *SignOutput `json:"modelpack,omitempty"`
	RuntimeSignature      string      `json:"runtime_signature,omitempty"`
}

// PushOutput is the image as published to a registry, with the ModelPack
// artifact and the runtime image beside it, by digest and untagged.
type PushOutput struct {
	Repository string   `json:"repository"`
	Ref        string   `json:"ref"` // HOST[:PORT]/PATH@sha256:…
	Digest     string   `json:"digest"`
	Tags       []string `json:"tags"`
	ModelPack  string   `json:"modelpack,omitempty"` // HOST[:PORT]/PATH@sha256:…
	Runtime    string   `json:"runtime,omitempty"`
}

// ImageOutput is the built image. Its blobs and manifest go into the
// output's OCI layout when it is built; its tag moves there only when the
// whole run has succeeded. In a failed run's record Ref and Tag are empty:
// the image is in the layout's blobs, and no tag names it.
type ImageOutput struct {
	Ref       string `json:"ref"`
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	Tag       string `json:"tag"`
	Layout    string `json:"layout"`
}

// ArtifactOutput is a manifest the run wrote into the output's OCI layout
// beside the image: the ModelPack artifact or the runtime image. Ref is
// its oci-layout:// reference by digest once the run has succeeded (empty
// in a failed run's record).
type ArtifactOutput struct {
	Ref          string `json:"ref"`
	Digest       string `json:"digest"`
	MediaType    string `json:"media_type"`
	ArtifactType string `json:"artifact_type,omitempty"`
	// Subject is the digest of the serving image the artifact refers to.
	Subject string `json:"subject,omitempty"`
}

// Figures are the key numbers of a run.
type Figures struct {
	Epochs         int     `json:"epochs"`
	FinalTrainLoss float64 `json:"final_train_loss"`
	EvalLoss       float64 `json:"eval_loss"`
}

// Timing is how long one stage took.
type Timing struct {
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
}

// ErrNoRun means a run id names no run record.
var ErrNoRun = errors.New("no such run")

// ErrFailedRun means a run that failed was asked to be what only a
// succeeded run can be: a rebuild's subject, a baseline.
var ErrFailedRun = errors.New("the run failed")

// RunsDir is where run records live under an output directory.
func RunsDir(output string) string { return filepath.Join(output, "runs") }

// ReadRecord reads <output>/runs/<id>/run.json.
func ReadRecord(output, id string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(RunsDir(output), id, "run.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("run %q in %s: %w", id, output, ErrNoRun)
	}
	if err != nil {
		return nil, fmt.Errorf("read run %q: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read run %q: %w", id, err)
	}
	switch r.Schema {
	case RecordSchema, RecordSchemaV2:
		if r.Status != StatusSucceeded && r.Status != StatusFailed {
			return nil, fmt.Errorf("read run %q: status %q, want %s or %s", id, r.Status, StatusSucceeded, StatusFailed)
		}
	case RecordSchemaV1:
		// Before v2 only succeeded runs were kept; their model/ is there.
		r.Status = StatusSucceeded
	default:
		return nil, fmt.Errorf("read run %q: schema %q, want %q", id, r.Schema, RecordSchema)
	}
	return &r, nil
}

// ListRuns returns the recorded runs' ids, succeeded and failed, oldest
// first (ids sort by time). Directories still being written (".tmp-…") are
// not runs.
func ListRuns(output string) ([]string, error) {
	entries, err := os.ReadDir(RunsDir(output))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && e.Name()[0] != '.' {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func writeJSON(path string, v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	b = append(b, '\n')
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", err
	}
	return DigestBytes(b), nil
}
