package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/evaluate"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
)

// ErrChampion means the release an environment runs cannot be the
// champion: not an image by digest in the environment's repository, not
// verified, or another model. A refusal: nothing is built.
var ErrChampion = errors.New("champion refused")

// checkChampionRef accepts a registry image by digest in repo (when set).
func checkChampionRef(ref, repo string) error {
	r, err := oci.ParseRef(ref)
	if err != nil {
		return err
	}
	if err := r.RequireRegistry(); err != nil {
		return err
	}
	if err := r.RequireDigest(); err != nil {
		return err
	}
	if repo == "" {
		return nil
	}
	want, err := oci.ParseRepository(repo)
	if err != nil {
		return fmt.Errorf("environment repository: %w", err)
	}
	if r.Repository() != want.String() {
		return fmt.Errorf("the image is not in the environment's repository %s", want)
	}
	return nil
}

// championBaseline is the baseline of gate.baseline.from: ENV: the release
// ENV's cluster runs now (its live Deployment's image, or the ModelPack
// artifact it mounts; the history is not asked), by digest in ENV's
// repository, its signature and gate attestation verified and signed as
// this model, and its signed metrics artifact. When the champion was
// scored on another test split than the candidate's, its model is taken
// out of its image (or the artifact's layers, the same blobs) and
// re-scored on the candidate's test split with the spec's evaluator, so
// that the paired comparison pairs the same rows. An environment with no
// release yet has no champion: nil, with a warning.
func (r *run) championBaseline(ctx context.Context, candidate *modelgate.Metrics, test *data.Dataset) (*modelgate.Metrics, error) {
	env, err := r.spec.Environment(r.spec.Gate.Baseline.From)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("champion of %s (%s/%s)", env.Name, env.Context, env.Namespace)
	t, err := deploy.NewTarget(r.o.kubeconfig, env.Context)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	// The champion is what the environment runs, not what its history says:
	// the ModelPack artifact its pods mount (model_source: volume), else
	// their image.
	ref, err := t.LiveModel(ctx, env.Namespace, r.spec.Model.Name)
	if err == nil && ref == "" {
		ref, err = t.LiveImage(ctx, env.Namespace, r.spec.Model.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if ref == "" {
		r.warnf("warning: %s runs no release of %s yet; no baseline comparison", env.Name, r.spec.Model.Name)
		return nil, nil
	}
	where = fmt.Sprintf("champion of %s (%s)", env.Name, ref)
	if err := checkChampionRef(ref, env.Repository); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", where, ErrChampion, err)
	}
	// Any verified gate will do: a changed gate must still find its champion.
	policy := r.spec.Verify.Policy()
	policy.RequireGate, policy.AllowInconclusive = true, true
	v, err := sign.Verify(ctx, ref, policy, r.o.signOptions()...)
	if errors.Is(err, sign.ErrRefused) {
		return nil, fmt.Errorf("%s: %w: %w", where, ErrChampion, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if v.Model.Name != r.spec.Model.Name {
		return nil, fmt.Errorf("%s: %w: it is signed as model %q, not %q", where, ErrChampion, v.Model.Name, r.spec.Model.Name)
	}
	where = fmt.Sprintf("champion %s@%s of %s (%s)", v.Model.Name, v.Model.Version, env.Name, ref)
	champion, err := sign.FetchMetrics(ctx, ref, policy, r.o.signOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	raw, err := champion.Encode()
	if err != nil {
		return nil, err
	}
	in := &BaselineInput{Source: "environment:" + env.Name, Image: ref, Version: v.Model.Version, Digest: DigestBytes(raw)}
	r.rec.Inputs.Baseline = in
	if champion.Split.TestDigest == candidate.Split.TestDigest {
		return champion, nil
	}

	// Another split: score the champion's model on the candidate's rows.
	dir := filepath.Join(r.tmp, "champion", "model")
	if err := r.championModel(ctx, ref, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	perExample, err := r.score(ctx, dir, test, filepath.Join(r.tmp, "champion", "evaluate"))
	if err != nil {
		return nil, fmt.Errorf("re-score %s on the candidate's test split: %w", where, err)
	}
	r.warnf("%s was scored on test split %s; re-scored on this run's split %s", where, short(champion.Split.TestDigest), short(candidate.Split.TestDigest))
	rescored := *champion
	rescored.Eval = modelgate.EvalMetrics{Loss: evaluate.Mean(perExample), PerExample: perExample}
	rescored.Dataset, rescored.Split = candidate.Dataset, candidate.Split
	raw, err = rescored.Encode()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(r.tmp, "champion", "metrics.json"), raw, 0o644); err != nil {
		return nil, err
	}
	in.Rescored, in.RescoredDigest = true, DigestBytes(raw)
	return &rescored, nil
}

// championModel pulls ref and extracts its model directory into dir. The
// model files are the same in every platform's image; the first is used.
func (r *run) championModel(ctx context.Context, ref, dir string) error {
	a, err := registry.Pull(ctx, ref, r.o.registryOptions()...)
	if err != nil {
		return err
	}
	var img v1.Image
	switch a := a.(type) {
	case v1.Image:
		img = a
	case v1.ImageIndex:
		m, err := a.IndexManifest()
		if err != nil {
			return err
		}
		if len(m.Manifests) == 0 {
			return fmt.Errorf("%s: an empty image index", ref)
		}
		if img, err = a.Image(m.Manifests[0].Digest); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: neither an image nor an index (%T)", ref, a)
	}
	return image.ExtractModel(img, dir)
}

// score runs the spec's evaluator on the model in modelDir.
func (r *run) score(ctx context.Context, modelDir string, test *data.Dataset, outDir string) ([]float64, error) {
	if len(r.spec.Evaluate.Command) > 0 {
		exclude, dataset := r.leftOut()
		return evaluate.External(ctx, evaluate.ExternalInput{
			Command: r.spec.Evaluate.Command, Dir: r.spec.Dir, Workdir: r.spec.Evaluate.Workdir, Env: r.spec.Evaluate.Env,
			Exclude: exclude, Dataset: dataset,
			ModelDir: modelDir, Test: test, OutDir: outDir, Log: r.o.log,
			Timeout: r.spec.Evaluate.TimeoutDuration(),
		})
	}
	b, err := os.ReadFile(filepath.Join(modelDir, model.FileName))
	if err != nil {
		return nil, fmt.Errorf("built-in evaluator: %w", err)
	}
	lin, err := model.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("built-in evaluator: %s: %w", model.FileName, err)
	}
	return evaluate.Builtin(lin, test)
}

// ChampionBaseline is gate.baseline.from's baseline as `modelci run` finds
// it (championBaseline), for a caller outside a run: the Dagger module's
// champion step. test is the candidate's test split, for re-scoring a
// champion scored on another. It returns the baseline metrics and what
// the run record says of them; both nil when the environment has no
// release yet. Options: WithKubeconfig, WithAccess or WithRegistryAuth, WithLog.
func ChampionBaseline(ctx context.Context, sp *spec.Spec, candidate *modelgate.Metrics, test *data.Dataset, opts ...Option) (*modelgate.Metrics, *BaselineInput, error) {
	if sp.Gate.Baseline.From == "" {
		return nil, nil, fmt.Errorf("%s: gate.baseline.from is empty: no environment to take the champion from", sp.File)
	}
	o := options{progress: func(Event) {}, log: io.Discard, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	tmp, err := os.MkdirTemp("", "modelci-champion-")
	if err != nil {
		return nil, nil, fmt.Errorf("champion: a work directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	r := &run{spec: sp, o: o, tmp: tmp}
	m, err := r.championBaseline(ctx, candidate, test)
	if err != nil {
		return nil, nil, err
	}
	return m, r.rec.Inputs.Baseline, nil
}
