package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/modelci/modelci/spec"
)

// ErrSpecChanged means the spec file is not the one a run read.
var ErrSpecChanged = errors.New("spec changed since the run")

// DigestCheck compares one recorded digest with its rebuilt value.
type DigestCheck struct {
	Name     string `json:"name"`
	Recorded string `json:"recorded"`
	Rebuilt  string `json:"rebuilt"`
	Match    bool   `json:"match"`
}

// RebuildResult is the outcome of Rebuild.
type RebuildResult struct {
	RunID  string        `json:"run_id"`
	Match  bool          `json:"match"`
	Checks []DigestCheck `json:"checks"`
}

// WithoutPublish builds but pushes nowhere, whatever the spec says.
func WithoutPublish() Option { return func(o *options) { o.noPublish = true } }

// Rebuild runs the pipeline again for run id of output, into a scratch
// directory, and compares every digest with the run record: the proof that
// the image is reproducible. Nothing in output changes. A failed run is
// refused (ErrFailedRun).
func Rebuild(ctx context.Context, spec *spec.Spec, output, id string, opts ...Option) (*RebuildResult, error) {
	rec, err := ReadRecord(output, id)
	if err != nil {
		return nil, err
	}
	if rec.Status == StatusFailed {
		return nil, fmt.Errorf("rebuild %s: %w in its %s stage (%s): nothing of it was published to rebuild", id, ErrFailedRun, rec.FailedStage, rec.Error)
	}
	b, err := os.ReadFile(spec.Path(spec.File))
	if err != nil {
		return nil, fmt.Errorf("rebuild %s: %w", id, err)
	}
	if d := DigestBytes(b); d != rec.Spec.Digest {
		return nil, fmt.Errorf("rebuild %s: %s: %w (recorded %s, now %s)", id, spec.File, ErrSpecChanged, short(rec.Spec.Digest), short(d))
	}
	scratch, err := os.MkdirTemp("", "modelci-rebuild-")
	if err != nil {
		return nil, fmt.Errorf("rebuild %s: %w", id, err)
	}
	defer os.RemoveAll(scratch)
	res, err := Run(ctx, spec, append(opts, WithOutput(scratch), WithoutPublish())...)
	if err != nil {
		return nil, fmt.Errorf("rebuild %s: %w", id, err)
	}
	now := res.Record
	out := &RebuildResult{RunID: id, Match: true}
	check := func(name, recorded, rebuilt string) {
		c := DigestCheck{Name: name, Recorded: recorded, Rebuilt: rebuilt, Match: recorded == rebuilt}
		out.Match = out.Match && c.Match
		out.Checks = append(out.Checks, c)
	}
	check("dataset", rec.Inputs.Dataset.Digest, now.Inputs.Dataset.Digest)
	check("split.train", rec.Inputs.Split.TrainDigest, now.Inputs.Split.TrainDigest)
	check("split.test", rec.Inputs.Split.TestDigest, now.Inputs.Split.TestDigest)
	check("model", rec.Outputs.Model.Digest, now.Outputs.Model.Digest)
	check("metrics", rec.Outputs.Metrics.Digest, now.Outputs.Metrics.Digest)
	check("verdict", string(rec.Verdict), string(now.Verdict))
	for i, rt := range rec.Inputs.Runtimes {
		got := ""
		if i < len(now.Inputs.Runtimes) {
			got = now.Inputs.Runtimes[i].Digest
		}
		check("runtime "+rt.Platform, rt.Digest, got)
	}
	if rec.Outputs.Image != nil {
		got := ""
		if now.Outputs.Image != nil {
			got = now.Outputs.Image.Digest
		}
		check("image", rec.Outputs.Image.Digest, got)
	}
	for _, a := range []struct {
		name          string
		recorded, now *ArtifactOutput
	}{{"modelpack", rec.Outputs.ModelPack, now.Outputs.ModelPack}, {"runtime", rec.Outputs.Runtime, now.Outputs.Runtime}} {
		if a.recorded == nil {
			continue // recorded before modelci wrote it
		}
		got := ""
		if a.now != nil {
			got = a.now.Digest
		}
		check(a.name, a.recorded.Digest, got)
	}
	return out, nil
}
