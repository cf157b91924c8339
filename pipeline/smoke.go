package pipeline

import (
	"context"
	"fmt"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/modelci/modelci/model"
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

// smoke checks that the image just built serves what was gated, before
// anything is pushed: modelci's runtime is started from the image's own
// layers and answers every test row as the evaluator scored it; a base
// image of the user's has its entrypoint checked, and smoke.command run.
func (r *run) smoke(ctx context.Context) (string, error) {
	img, platform, err := r.hostImage()
	if err != nil {
		return "", err
	}
	out := &SmokeOutput{Platform: platform}
	r.rec.Outputs.Smoke = out
	if !r.spec.Image.Scratch() {
		return r.smokeBase(ctx, img, out)
	}
	out.Kind = "served"
	if platform != hostPlatform() {
		// The runtime cannot run here; its entrypoint still must exist.
		out.Kind = "entrypoint"
		out.Entrypoint, err = smoke.CheckEntrypoint(ctx, img)
		out.Note = "no " + hostPlatform() + " image to run here: entrypoint checked only"
		if err != nil {
			return "", err
		}
		r.warnf("warning: smoke test: %s", out.Note)
		return "entrypoint checked (" + platform + ")", nil
	}
	out.Tolerance = SmokeTolerance
	if r.spec.Train.Format == model.FormatONNX {
		out.Tolerance = SmokeToleranceFloat32
	}
	res, err := smoke.Serve(ctx, smoke.Input{
		Image: img, Instances: r.instances(), Want: r.predictions, Tolerance: out.Tolerance,
	})
	if res != nil {
		out.Entrypoint, out.Rows, out.Compared, out.MaxRelDiff, out.Differ = res.Entrypoint, res.Rows, res.Compared, res.MaxRelDiff, res.Differ
	}
	if err != nil {
		return "", err
	}
	if !res.Compared {
		r.warnf("warning: smoke test: the evaluator wrote no \"predictions\"; the served answers were only checked to be finite")
		return fmt.Sprintf("%d test rows served (not compared: no predictions from the evaluator)", res.Rows), nil
	}
	return fmt.Sprintf("%d test rows served as evaluated (max rel. diff %.2g ≤ %.0g)", res.Rows, res.MaxRelDiff, out.Tolerance), nil
}

// smokeBase checks a base image's entrypoint and runs smoke.command with
// the image's layout reference (MODELCI_IMAGE) and the test split
// (MODELCI_DATA, as for an evaluator).
func (r *run) smokeBase(ctx context.Context, img v1.Image, out *SmokeOutput) (string, error) {
	out.Kind = "entrypoint"
	var err error
	if out.Entrypoint, err = smoke.CheckEntrypoint(ctx, img); err != nil {
		return "", err
	}
	sp := r.spec.Smoke
	if len(sp.Command) == 0 {
		out.Note = "no smoke.command: the image's server was not started"
		return "entrypoint checked (no smoke.command)", nil
	}
	out.Command = sp.Command
	exclude, dataset := r.leftOut()
	if err := smoke.Command(ctx, smoke.CommandInput{
		Argv: sp.Command, Project: r.spec.Dir, Exclude: exclude, ExcludeContent: []string{dataset},
		Image: r.rec.Outputs.Image.Ref, Test: r.testSet, Timeout: sp.TimeoutDuration(), Log: r.o.log,
	}); err != nil {
		return "", err
	}
	return "entrypoint checked, smoke.command passed", nil
}

// hostImage is the built image for this machine's platform, else the
// first one.
func (r *run) hostImage() (v1.Image, string, error) {
	img := r.rec.Outputs.Image
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

// instances are the test rows as /predict takes them, in order: raw
// cells, numbers as numbers, text as strings, empty cells as null.
func (r *run) instances() []any {
	ts := r.testSet
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
