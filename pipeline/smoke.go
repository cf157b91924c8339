package pipeline

import (
	"context"
	"fmt"
	"io"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/smoke"
)

// Tolerances of the smoke test: how far, relative to max(|prediction|, 1),
// the served answers may be from the evaluator's. The built-in model
// computes in float64 on both sides; ONNX models compute in float32.
const (
	SmokeTolerance        = 1e-5
	SmokeToleranceFloat32 = 1e-4
)

// SmokeOutput is what the smoke test found, for run.json and the
// provenance.
type SmokeOutput struct {
	// Kind is "served" (modelci's runtime started from the image's layers
	// and every test row sent), or "entrypoint" (a base image's entrypoint
	// checked, and smoke.command run when the spec has one).
	Kind       string   `json:"kind"`
	Platform   string   `json:"platform"`
	Entrypoint []string `json:"entrypoint"`
	Rows       int      `json:"rows,omitempty"`
	// Compared says whether the answers were compared with the
	// evaluator's predictions (else only checked to be finite).
	Compared   bool         `json:"compared"`
	MaxRelDiff float64      `json:"max_rel_diff"`
	Tolerance  float64      `json:"tolerance,omitempty"`
	Differ     []smoke.Diff `json:"differ,omitempty"`
	Command    []string     `json:"command,omitempty"`
	Note       string       `json:"note,omitempty"`
}

// SmokeInput is a smoke test of a built image, as `modelci run` makes it
// and the Dagger module's smoke step does.
type SmokeInput struct {
	Spec *spec.Spec
	// Image is the built image: its OCI layout and digest (an image, or an
	// index whose host-platform image is run).
	Image *ImageOutput
	// Test is the test split; Predictions the evaluator's, one per row (nil
	// when it wrote none).
	Test        *data.Dataset
	Predictions []float64
	// Exclude and Dataset stage the project for smoke.command as for an
	// external evaluator.
	Exclude []string
	Dataset string
	// Log takes smoke.command's output and warnings (nil: none).
	Log io.Writer
}

// Smoke checks that the image just built serves what was gated, before
// anything is pushed: modelci's runtime is started from the image's own
// layers and answers every test row as the evaluator predicted it; a base
// image of the user's has its entrypoint checked, and smoke.command run. It
// returns what it found (with the error, too, when the check failed) and a
// line for the progress report.
func Smoke(ctx context.Context, in SmokeInput) (*SmokeOutput, string, error) {
	log := in.Log
	if log == nil {
		log = io.Discard
	}
	img, platform, err := hostImage(in.Image)
	if err != nil {
		return nil, "", err
	}
	out := &SmokeOutput{Platform: platform}
	if !in.Spec.Image.Scratch() {
		line, err := smokeBase(ctx, in, img, out)
		return out, line, err
	}
	out.Kind = "served"
	if platform != hostPlatform() {
		// The runtime cannot run here; its entrypoint still must exist.
		out.Kind = "entrypoint"
		out.Entrypoint, err = smoke.CheckEntrypoint(ctx, img)
		out.Note = "no " + hostPlatform() + " image to run here: entrypoint checked only"
		if err != nil {
			return out, "", err
		}
		fmt.Fprintf(log, "warning: smoke test: %s\n", out.Note)
		return out, "entrypoint checked (" + platform + ")", nil
	}
	out.Tolerance = SmokeTolerance
	if in.Spec.Train.Format == model.FormatONNX {
		out.Tolerance = SmokeToleranceFloat32
	}
	res, err := smoke.Serve(ctx, smoke.Input{
		Image: img, Instances: Instances(in.Test), Want: in.Predictions, Tolerance: out.Tolerance,
	})
	if res != nil {
		out.Entrypoint, out.Rows, out.Compared, out.MaxRelDiff, out.Differ = res.Entrypoint, res.Rows, res.Compared, res.MaxRelDiff, res.Differ
	}
	if err != nil {
		return out, "", err
	}
	if !res.Compared {
		fmt.Fprintf(log, "warning: smoke test: the evaluator wrote no \"predictions\"; the served answers were only checked to be finite\n")
		return out, fmt.Sprintf("%d test rows served (not compared: no predictions from the evaluator)", res.Rows), nil
	}
	return out, fmt.Sprintf("%d test rows served as evaluated (max rel. diff %.2g ≤ %.0g)", res.Rows, res.MaxRelDiff, out.Tolerance), nil
}

// smoke is the run's smoke stage.
func (r *run) smoke(ctx context.Context) (string, error) {
	exclude, dataset := r.leftOut()
	out, line, err := Smoke(ctx, SmokeInput{
		Spec: r.spec, Image: r.rec.Outputs.Image, Test: r.testSet, Predictions: r.predictions,
		Exclude: exclude, Dataset: dataset, Log: r.o.log,
	})
	r.rec.Outputs.Smoke = out
	return line, err
}

// smokeBase checks a base image's entrypoint and runs smoke.command with
// the image's layout reference (MODELCI_IMAGE) and the test split
// (MODELCI_DATA, as for an evaluator).
func smokeBase(ctx context.Context, in SmokeInput, img v1.Image, out *SmokeOutput) (string, error) {
	out.Kind = "entrypoint"
	var err error
	if out.Entrypoint, err = smoke.CheckEntrypoint(ctx, img); err != nil {
		return "", err
	}
	sp := in.Spec.Smoke
	if len(sp.Command) == 0 {
		out.Note = "no smoke.command: the image's server was not started"
		return "entrypoint checked (no smoke.command)", nil
	}
	out.Command = sp.Command
	if err := smoke.Command(ctx, smoke.CommandInput{
		Argv: sp.Command, Project: in.Spec.Dir, Exclude: in.Exclude, ExcludeContent: []string{in.Dataset},
		Image: in.Image.Ref, Test: in.Test, Timeout: sp.TimeoutDuration(), Log: in.Log,
	}); err != nil {
		return "", err
	}
	return "entrypoint checked, smoke.command passed", nil
}

// hostImage is the built image for this machine's platform, else the
// first one.
func hostImage(img *ImageOutput) (v1.Image, string, error) {
	p, err := layout.FromPath(img.Layout)
	if err != nil {
		return nil, "", err
	}
	h, err := v1.NewHash(img.Digest)
	if err != nil {
		return nil, "", err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, "", err
	}
	if mt := img.MediaType; mt != "" && !isIndex(mt) {
		i, err := idx.Image(h)
		if err != nil {
			return nil, "", err
		}
		cf, err := i.ConfigFile()
		if err != nil {
			return nil, "", err
		}
		return i, cf.OS + "/" + cf.Architecture, nil
	}
	child, err := idx.ImageIndex(h)
	if err != nil {
		return nil, "", err
	}
	m, err := child.IndexManifest()
	if err != nil {
		return nil, "", err
	}
	if len(m.Manifests) == 0 {
		return nil, "", fmt.Errorf("image index %s has no images", h)
	}
	pick := m.Manifests[0]
	for _, d := range m.Manifests {
		if d.Platform != nil && platformString(*d.Platform) == hostPlatform() {
			pick = d
		}
	}
	i, err := child.Image(pick.Digest)
	if err != nil {
		return nil, "", err
	}
	plat := ""
	if pick.Platform != nil {
		plat = platformString(*pick.Platform)
	}
	return i, plat, nil
}

func isIndex(mediaType string) bool {
	return mediaType == "application/vnd.oci.image.index.v1+json" || mediaType == "application/vnd.docker.distribution.manifest.list.v2+json"
}

func hostPlatform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// Instances are the test rows as /predict takes them, in order: raw
// cells, numbers as numbers, text as strings, empty cells as null.
func Instances(ts *data.Dataset) []any {
	out := make([]any, ts.Rows())
	for i := range out {
		if ts.Numeric() {
			out[i] = ts.Row(i)
			continue
		}
		row := make([]any, len(ts.Features))
		for j := range row {
			switch kind, v, text := ts.Cell(i, j); kind {
			case data.Number:
				row[j] = v
			case data.Text:
				row[j] = text
			}
		}
		out[i] = row
	}
	return out
}
