// Package pipeline reads modelci.yaml and wires the stages into a run:
// data → train → evaluate → gate → image, with a run record of every
// input and output digest.
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/modelci/modelci/spec"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/data"
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

	// Registry preflight (reachable, credentials accepted, pushes allowed)
	// before anything is built: a bad registry must not cost a training run.
	if repo := r.repository(); repo != "" {
		if err := registry.Preflight(ctx, repo, r.o.registryOptions()...); err != nil {
			return nil, err
		}
	}

	res, err := r.do(ctx)
	if err != nil {
		// Nothing of a failed run is kept: earlier runs and the layout's
		// tags are untouched because this run wrote only to its own tmp dir
		// and to content-addressed blobs.
		if r.tmp != "" {
			os.RemoveAll(r.tmp)
		}
		return nil, err
	}
	return res, nil
}

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
	ref                   string // the image reference with its digest, once built
}

func (r *run) stage(name string, fn func() (string, error)) error {
	start := r.o.now()
	summary, err := fn()
	d := r.o.now().Sub(start)
	if err != nil {
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

func (r *run) do(ctx context.Context) (*Result, error) {
	spec := r.spec
	started := r.o.now()
	id := newRunID(started)
	runs := RunsDir(r.out)
	if err := os.MkdirAll(runs, 0o755); err != nil {
		return nil, fmt.Errorf("create runs directory: %w", err)
	}
	tmp, err := os.MkdirTemp(runs, ".tmp-"+id+"-")
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

	r.rec.Finished = r.o.now().UTC()
	if _, err := writeJSON(filepath.Join(tmp, "run.json"), &r.rec); err != nil {
		return nil, err
	}
	final := filepath.Join(runs, id)
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("publish run %s: %w", id, err)
	}
	r.tmp = ""
	return &Result{
		RunID: id, RunDir: final, Verdict: r.report.Verdict, Decision: decision,
		Report: r.report, Metrics: r.metrics, Ref: r.ref, Record: &r.rec,
	}, nil
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

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }
