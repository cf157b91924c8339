// Package pipeline reads modelci.yaml and wires the stages into a run:
// data → train → evaluate → gate → image, with a run record of every
// input and output digest.
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/spec"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
	"github.com/modelci/modelci/stages/train"
)

// Event is one finished stage, for progress lines.
type Event struct {
	Stage    string
	Duration time.Duration
	Summary  string
}

// Result is what a run produced.
type Result struct {
	RunID   string
	RunDir  string
	Verdict modelgate.Verdict
	// Decision is what the verdict means here: released, held for a
	// person, or refused (nothing built).
	Decision modelgate.Decision
	Report   *modelgate.Report
	Metrics  *modelgate.Metrics
	// Ref is the image reference with its digest; empty when the gate
	// stopped the run before the build.
	Ref    string
	Record *Record
}

type options struct {
	output   string
	progress func(Event)
	log      io.Writer
	now      func() time.Time
	created  *time.Time
	runtimes map[string]string

	repository     string
	access         oci.Access
	registry       []registry.Option // push settings beyond the access
	allowDowngrade bool
	noPublish      bool
	kubeconfig     string
	signer         sign.SignerSource
}

// registryOptions are stages/registry's options for the run's access.
func (o *options) registryOptions(extra ...registry.Option) []registry.Option {
	return append(append([]registry.Option{registry.WithAccess(o.access)}, o.registry...), extra...)
}

// signOptions are stages/sign's options for the run's access.
func (o *options) signOptions(extra ...sign.Option) []sign.Option {
	return append(signOptions(o.access, o.log), extra...)
}

// signOptions are stages/sign's options for access, warnings to log.
func signOptions(access oci.Access, log io.Writer) []sign.Option {
	opts := []sign.Option{sign.WithAccess(access)}
	if log != nil {
		opts = append(opts, sign.WithLog(log))
	}
	return opts
}

// Option configures Run.
type Option func(*options)

// WithOutput overrides the spec's output directory.
func WithOutput(dir string) Option { return func(o *options) { o.output = dir } }

// WithProgress receives one event per finished stage.
func WithProgress(fn func(Event)) Option { return func(o *options) { o.progress = fn } }

// WithLog receives external trainers' and evaluators' output and warnings.
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// WithClock sets the clock for run ids and timings.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithCreated sets the image's creation time (default: SOURCE_DATE_EPOCH,
// else the Unix epoch, so that images are reproducible).
func WithCreated(t time.Time) Option { return func(o *options) { o.created = &t } }

// WithRuntime uses a prebuilt runtime binary for a platform ("linux/amd64")
// instead of building one from source.
func WithRuntime(platform, path string) Option {
	return func(o *options) {
		if o.runtimes == nil {
			o.runtimes = map[string]string{}
		}
		o.runtimes[platform] = path
	}
}

// OutputDir is the output directory a run of spec writes to.
func OutputDir(spec *spec.Spec, override string) string {
	if override != "" {
		if filepath.IsAbs(override) {
			return override
		}
		abs, err := filepath.Abs(override)
		if err == nil {
			return abs
		}
		return override
	}
	return spec.Path(spec.Output)
}

// Run executes the pipeline for spec. A gate that refuses is not an error:
// the result carries the verdict and exit code, and no image is built.
//
// Only a run that succeeds changes what earlier runs left: the image's
// blobs go into the output's OCI layout as it is built, but its tag moves
// there only once every stage (push, sign and deploy included) has
// succeeded. A run that fails, is cancelled or times out leaves the
// layout's index.json byte for byte as it was and earlier runs untouched,
// and is recorded as failed (runs/<id>/run.json, status "failed", the error
// and the stage); the Result it returns with the error names that record.
// A run that cannot start (another holds the output's lock, the signing
// key does not open) records nothing.
func Run(ctx context.Context, spec *spec.Spec, opts ...Option) (*Result, error) {
	o := options{progress: func(Event) {}, log: io.Discard, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	out := OutputDir(spec, o.output)
	lock, err := LockDir(out)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()

	r := &run{spec: spec, o: o, out: out}
	// Whatever runs killed part-way left is no live run's: the lock is ours.
	if left, err := RemoveLeftovers(out); err != nil {
		r.warnf("warning: %v", err)
	} else if left.Runs > 0 || left.Files > 0 {
		r.warnf("removed what interrupted runs left in %s: %d run directories, %d temporary files in the layout (%d bytes)", out, left.Runs, left.Files, left.Bytes)
	}
	if spec.Deploy.Enabled && r.repository() == "" {
		return nil, fmt.Errorf("deploy: %w: a cluster pulls from a registry; set image.repository or --repository", ErrNeedsRegistry)
	}
	if r.signs() {
		if r.repository() == "" {
			return nil, fmt.Errorf("sign: %w: set image.repository or --repository (the OCI layout holds no signatures)", ErrNeedsRegistry)
		}
		// Open the key before anything is built: a wrong password must not
		// cost a training run or leave an unsigned push behind.
		src, err := r.signer(ctx)
		if err != nil {
			return nil, err
		}
		if err := sign.Open(ctx, src); err != nil {
			return nil, fmt.Errorf("sign.key %s: %w", spec.Sign.Key, err)
		}
		r.o.signer = src
	}

	// The training cluster and its repository first: the context named, the
	// registry reachable and writable, before the data is read.
	if spec.Train.OnCluster() {
		if err := r.preflightCluster(ctx); err != nil {
			return nil, err
		}
	}
	// Registry preflight (reachable, credentials accepted, pushes allowed)
	// before anything is built: a bad registry must not cost a training run.
	if repo := r.repository(); repo != "" {
		if err := registry.Preflight(ctx, repo, r.o.registryOptions()...); err != nil {
			return nil, err
		}
	}

	res, err := r.do(ctx)
	if err != nil {
		return r.failed(ctx, err)
	}
	return res, nil
}

// ModelKeepLimit is the model size (its files' bytes) below which the run
// directory keeps a copy of the model in model/. A larger model is stored
// once, as the image's layers in the OCI layout, which run.json names
// (outputs.model.layers); only a run that built no image (the gate refused
// it) keeps a larger model/, its only copy.
const ModelKeepLimit = 1 << 20

// viewDir is, in the run's temporary directory, the OCI layout that holds
// the image before its tag moves in the output's layout (image.View): what
// the smoke test and the push read. It is removed before the run directory
// is published.
const viewDir = "image-view"

// run is one pipeline run: each stage (data.go, train.go, evaluate.go,
// gate.go, build.go, publish.go, sign.go, deploy.go) reads what the stages
// before it left here and records its outputs in rec.
type run struct {
	spec *spec.Spec
	o    options
	out  string
	tmp  string
	rec  Record

	ds, trainSet, testSet *data.Dataset
	modelDir              string
	linear                *model.Linear // the built-in model, nil for an external trainer
	trainLoss             []float64
	predictions           []float64 // the evaluator's, one per test row; nil when it wrote none
	metrics               *modelgate.Metrics
	report                *modelgate.Report
	ref                   string          // the image reference with its digest, once built
	written               image.Written   // the image in the layout, untagged until the run succeeds
	untagged              []image.Written // the runtime image and the ModelPack artifact beside it
	failedStage           string          // the stage that returned an error
	cluster               *cluster        // the training cluster, once connected (train.runner: kubernetes)
}

func (r *run) stage(name string, fn func() (string, error)) error {
	start := r.o.now()
	summary, err := fn()
	d := r.o.now().Sub(start)
	if err != nil {
		r.failedStage = name
		return fmt.Errorf("%s: %w", name, err)
	}
	r.rec.Timings = append(r.rec.Timings, Timing{Stage: name, Seconds: d.Seconds()})
	r.o.progress(Event{Stage: name, Duration: d, Summary: summary})
	return nil
}

func newRunID(t time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	// Microseconds keep ids in time order even for runs a second apart or less.
	return t.UTC().Format("20060102-150405.000000") + "-" + hex.EncodeToString(b[:])
}

// tmpPrefix starts the name of a run directory being written.
const tmpPrefix = ".tmp-"

func (r *run) do(ctx context.Context) (*Result, error) {
	spec := r.spec
	started := r.o.now()
	id := newRunID(started)
	runs := RunsDir(r.out)
	if err := os.MkdirAll(runs, 0o755); err != nil {
		return nil, fmt.Errorf("create runs directory: %w", err)
	}
	tmp, err := os.MkdirTemp(runs, tmpPrefix+id+"-")
	if err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	r.tmp = tmp
	specBytes, err := os.ReadFile(spec.Path(spec.File))
	specDigest := ""
	if err == nil {
		specDigest = DigestBytes(specBytes)
	}
	r.rec = Record{
		Schema: RecordSchema, ID: id, Started: started.UTC(),
		Spec:  SpecInfo{File: spec.File, Digest: specDigest},
		Model: spec.Model,
		Inputs: Inputs{Params: spec.Train.Params, Trainer: TrainerInput{
			Builtin: spec.Train.Builtin, Command: spec.Train.Command, Evaluator: spec.Evaluate.Command, Format: spec.Train.Format,
		}},
	}
	if spec.Train.Builtin != "" {
		r.rec.Inputs.Trainer.Version = train.Version
	}

	for _, st := range []struct {
		name string
		fn   func(context.Context) (string, error)
	}{{"data", r.data}, {"train", r.train}, {"evaluate", r.evaluate}, {"gate", r.gate}} {
		if err := r.stage(st.name, func() (string, error) { return st.fn(ctx) }); err != nil {
			return nil, err
		}
	}
	decision := r.report.Decision()
	r.rec.Verdict, r.rec.Decision = r.report.Verdict, decision

	// FAIL (and INCONCLUSIVE under on_inconclusive: fail) stop here.
	if decision != modelgate.Refused {
		if err := r.stage("image", func() (string, error) { return r.build(ctx) }); err != nil {
			return nil, err
		}
		// What was gated is what ships: nothing is pushed before this.
		if err := r.stage("smoke", func() (string, error) { return r.smoke(ctx) }); err != nil {
			return nil, err
		}
		if r.repository() != "" {
			if err := r.stage("push", func() (string, error) { return r.push(ctx) }); err != nil {
				return nil, err
			}
			if r.signs() {
				if err := r.stage("sign", func() (string, error) { return r.sign(ctx) }); err != nil {
					return nil, err
				}
			}
			if spec.HasDeploy {
				if err := r.stage("deploy", func() (string, error) { return r.deployStage(ctx, r.ref) }); err != nil {
					return nil, err
				}
			}
		}
	}
	return r.commit()
}

// commit ends a run whose stages all succeeded: run.json, then the
// layout's tag, then the run directory under its final name. A crash
// between the last two leaves the tag on an image that was pushed, signed
// and deployed, and no record (the next run removes the temporary
// directory); an error in either leaves the layout's index.json as it was.
func (r *run) commit() (*Result, error) {
	r.rec.Status = StatusSucceeded
	r.rec.Finished = r.o.now().UTC()
	layout := LayoutDir(r.out)
	img := r.rec.Outputs.Image
	if img != nil {
		ref, err := oci.LayoutRef(layout, r.written.Digest)
		if err != nil {
			return nil, err
		}
		img.Ref, img.Layout = ref.String(), layout
		if r.repository() == "" {
			r.ref = img.Ref
		}
		for _, a := range []*ArtifactOutput{r.rec.Outputs.ModelPack, r.rec.Outputs.Runtime} {
			if a == nil {
				continue
			}
			h, err := v1.NewHash(a.Digest)
			if err != nil {
				return nil, err
			}
			ref, err := oci.LayoutRef(layout, h)
			if err != nil {
				return nil, err
			}
			a.Ref = ref.String()
		}
	}
	r.tidy()
	if _, err := writeJSON(filepath.Join(r.tmp, "run.json"), &r.rec); err != nil {
		r.failedStage = "record"
		return nil, fmt.Errorf("record run %s: %w", r.rec.ID, err)
	}
	// Only now, with every stage done, does the layout's tag move.
	var before []byte
	if img != nil {
		var err error
		if before, err = os.ReadFile(filepath.Join(layout, "index.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.failedStage = "tag"
			return nil, fmt.Errorf("tag %s in %s: %w", img.Tag, layout, err)
		}
		tagged, err := image.TagLayout(layout, r.written, r.untagged...)
		if err != nil {
			r.failedStage = "tag"
			return nil, err
		}
		if tagged.Moved {
			r.warnf("warning: tag %s in %s moved from %s to %s", tagged.Tag, layout, tagged.Previous, tagged.Digest)
		}
	}
	final := filepath.Join(RunsDir(r.out), r.rec.ID)
	if err := os.Rename(r.tmp, final); err != nil {
		err = fmt.Errorf("publish run %s: %w", r.rec.ID, err)
		if img != nil {
			if rerr := restoreIndex(layout, before); rerr != nil {
				err = errors.Join(err, fmt.Errorf("put back %s/index.json: %w", layout, rerr))
			}
		}
		r.failedStage = "record"
		return nil, err
	}
	r.tmp = ""
	return &Result{
		RunID: r.rec.ID, RunDir: final, Verdict: r.report.Verdict, Decision: r.rec.Decision,
		Report: r.report, Metrics: r.metrics, Ref: r.ref, Record: &r.rec,
	}, nil
}

// restoreIndex puts back the index.json a failed commit replaced (absent
// when before is nil).
func restoreIndex(layout string, before []byte) error {
	name := filepath.Join(layout, "index.json")
	if before == nil {
		return os.Remove(name)
	}
	f, err := os.CreateTemp(layout, image.TempPrefix+"index.json-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(before); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// failed records a run that stopped on err: run.json with status failed,
// the error and the stage, and what the stages before it produced, under
// runs/<id>. The layout's tags were never moved. It returns err, and a
// Result naming the record when one was written.
func (r *run) failed(ctx context.Context, err error) (*Result, error) {
	if r.tmp == "" {
		return nil, err // nothing started
	}
	r.rec.Status = StatusFailed
	r.rec.Error = err.Error()
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			r.rec.Error += " (" + cause.Error() + ")"
		}
	}
	r.rec.FailedStage = r.failedStage
	if r.rec.FailedStage == "" {
		r.rec.FailedStage = "record"
	}
	r.rec.Finished = r.o.now().UTC()
	if img := r.rec.Outputs.Image; img != nil {
		// Built, maybe pushed, never tagged here.
		img.Ref, img.Tag, img.Layout = "", "", LayoutDir(r.out)
	}
	for _, a := range []*ArtifactOutput{r.rec.Outputs.ModelPack, r.rec.Outputs.Runtime} {
		if a != nil {
			a.Ref = "" // in the layout's blobs, never listed in its index.json
		}
	}
	r.tidy()
	final := filepath.Join(RunsDir(r.out), r.rec.ID)
	_, werr := writeJSON(filepath.Join(r.tmp, "run.json"), &r.rec)
	if werr == nil {
		werr = os.Rename(r.tmp, final)
	}
	if werr != nil {
		os.RemoveAll(r.tmp)
		r.tmp = ""
		return nil, errors.Join(err, fmt.Errorf("record failed run %s: %w", r.rec.ID, werr))
	}
	r.tmp = ""
	res := &Result{RunID: r.rec.ID, RunDir: final, Record: &r.rec, Verdict: r.rec.Verdict, Decision: r.rec.Decision}
	if r.report != nil {
		res.Report, res.Metrics = r.report, r.metrics
	}
	return res, err
}

// tidy leaves in the run directory what a record keeps: the view of the
// untagged image goes, and a model of ModelKeepLimit bytes or more that
// an image holds (or, in a failed run, any such model: a failed run's
// record is evidence, not a model store). A champion's model re-scored
// from its image goes too when that large.
func (r *run) tidy() {
	if err := os.RemoveAll(filepath.Join(r.tmp, viewDir)); err != nil {
		r.warnf("warning: remove %s: %v", viewDir, err)
	}
	m := &r.rec.Outputs.Model
	if m.Path != "" && m.Size >= ModelKeepLimit && (r.rec.Outputs.Image != nil || r.rec.Status == StatusFailed) {
		if err := os.RemoveAll(filepath.Join(r.tmp, m.Path)); err != nil {
			r.warnf("warning: remove the run's copy of the model: %v", err)
		} else {
			m.Path = ""
		}
	}
	champion := filepath.Join(r.tmp, "champion", "model")
	if n, err := treeSize(champion); err == nil && n >= ModelKeepLimit {
		if err := os.RemoveAll(champion); err != nil {
			r.warnf("warning: remove the champion's model: %v", err)
		}
	}
}

// treeSize is the bytes of the regular files under dir.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

func (r *run) warnf(format string, args ...any) {
	fmt.Fprintf(r.o.log, format+"\n", args...)
}

func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// num writes a figure of a progress line as the reports do.
func num(f float64) string { return modelgate.FormatNumber(f) }
