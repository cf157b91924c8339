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
	"strings"
	"time"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/evaluate"
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
	RunID    string
	RunDir   string
	Verdict  modelgate.Verdict
	ExitCode int // as ARCHITECTURE.md's exit codes: 0, 3 or 4
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
	registry       []registry.Option
	allowDowngrade bool
	noPublish      bool
	kubeconfig     string
	sign           []sign.Option
	signer         sign.SignerSource
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
func OutputDir(spec *Spec, override string) string {
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
func Run(ctx context.Context, spec *Spec, opts ...Option) (*Result, error) {
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
	if spec.DeployConfig.Enabled && r.repository() == "" {
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

type run struct {
	spec *Spec
	o    options
	out  string
	tmp  string
	rec  Record
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
	params, err := spec.ParamsMap()
	if err != nil {
		return nil, err
	}
	r.rec = Record{
		Schema: RecordSchema, ID: id, Started: started.UTC(),
		Spec:  SpecInfo{File: spec.File, Digest: specDigest},
		Model: spec.Model,
		Inputs: Inputs{Params: params, Trainer: TrainerInput{
			Builtin: spec.Train.Builtin, Command: spec.Train.Command, Evaluator: spec.Evaluate.Command,
		}},
	}
	if spec.Train.Builtin != "" {
		r.rec.Inputs.Trainer.Version = train.Version
	}

	// data
	var trainSet, testSet *data.Dataset
	var ds *data.Dataset
	if err := r.stage("data", func() (string, error) {
		path := spec.Path(spec.Data.Path)
		ds, err = data.Load(ctx, path, spec.Data.Target)
		if err != nil {
			return "", err
		}
		trainSet, testSet, err = data.Split(ds, *spec.Data.TestFraction, *spec.Data.Seed)
		if err != nil {
			return "", fmt.Errorf("split %s: %w", spec.Data.Path, err)
		}
		r.rec.Inputs.Dataset = DatasetInput{Path: spec.Data.Path, Digest: ds.Digest(), Rows: ds.Rows(), Features: ds.Features, Target: ds.Target}
		r.rec.Inputs.Split = SplitInput{
			Seed: *spec.Data.Seed, TestFraction: *spec.Data.TestFraction,
			TrainDigest: trainSet.Digest(), TrainRows: trainSet.Rows(),
			TestDigest: testSet.Digest(), TestRows: testSet.Rows(),
		}
		return fmt.Sprintf("%d rows × %d features, train %d / test %d, %s",
			ds.Rows(), len(ds.Features), trainSet.Rows(), testSet.Rows(), short(r.rec.Inputs.Dataset.Digest)), nil
	}); err != nil {
		return nil, err
	}

	// train
	modelDir := filepath.Join(tmp, "model")
	var lin *model.Linear
	var trainLoss []float64
	if err := r.stage("train", func() (string, error) {
		if spec.Train.Builtin != "" {
			p, err := spec.BuiltinParams()
			if err != nil {
				return "", err
			}
			res, err := train.Builtin(ctx, trainSet, p, *spec.Data.Seed)
			if err != nil {
				return "", err
			}
			lin, trainLoss = res.Model, res.Loss
			lin.Name, lin.Version = spec.Model.Name, spec.Model.Version
			b, err := lin.Encode()
			if err != nil {
				return "", err
			}
			if err := os.MkdirAll(modelDir, 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(filepath.Join(modelDir, model.FileName), b, 0o644); err != nil {
				return "", err
			}
		} else {
			res, err := train.External(ctx, train.ExternalInput{
				Command: spec.Train.Command, Dir: spec.Dir, Train: trainSet, Params: params,
				Seed: *spec.Data.Seed, OutDir: filepath.Join(tmp, "train"), Log: r.o.log,
			})
			if err != nil {
				return "", err
			}
			if err := os.Rename(res.ModelDir, modelDir); err != nil {
				return "", fmt.Errorf("keep trained model: %w", err)
			}
			trainLoss = res.Loss
		}
		d, err := DigestTree(modelDir)
		if err != nil {
			return "", err
		}
		r.rec.Outputs.Model = Artifact{Path: "model", Digest: d}
		r.rec.Figures.Epochs = len(trainLoss)
		r.rec.Figures.FinalTrainLoss = trainLoss[len(trainLoss)-1]
		return fmt.Sprintf("%d epochs, final loss %s", len(trainLoss), num(trainLoss[len(trainLoss)-1])), nil
	}); err != nil {
		return nil, err
	}

	// evaluate
	var metrics *modelgate.Metrics
	if err := r.stage("evaluate", func() (string, error) {
		var perExample []float64
		if len(spec.Evaluate.Command) == 0 {
			perExample, err = evaluate.Builtin(lin, testSet)
		} else {
			perExample, err = evaluate.External(ctx, evaluate.ExternalInput{
				Command: spec.Evaluate.Command, Dir: spec.Dir, ModelDir: modelDir, Test: testSet,
				OutDir: filepath.Join(tmp, "evaluate"), Log: r.o.log,
			})
		}
		if err != nil {
			return "", err
		}
		metrics = NewMetrics(MetricsInput{
			Params: params, DatasetDigest: r.rec.Inputs.Dataset.Digest, Rows: ds.Rows(),
			TestDigest: r.rec.Inputs.Split.TestDigest, TestRows: testSet.Rows(),
			Seed: *spec.Data.Seed, TestFraction: *spec.Data.TestFraction,
			TrainLoss: trainLoss, PerExample: perExample,
		})
		d, err := writeJSON(filepath.Join(tmp, "metrics.json"), metrics)
		if err != nil {
			return "", err
		}
		r.rec.Outputs.Metrics = Artifact{Path: "metrics.json", Digest: d}
		r.rec.Figures.EvalLoss = metrics.Eval.Loss
		return fmt.Sprintf("eval loss %s over %d test rows", num(metrics.Eval.Loss), len(perExample)), nil
	}); err != nil {
		return nil, err
	}

	// gate
	var report *modelgate.Report
	if err := r.stage("gate", func() (string, error) {
		baseline, err := r.baseline(ctx, metrics, testSet)
		if err != nil {
			return "", err
		}
		report, err = modelgate.Evaluate(spec.Gate, metrics, baseline)
		if err != nil {
			return "", err
		}
		if err := r.writeReports(report, metrics); err != nil {
			return "", err
		}
		return gateSummary(report), nil
	}); err != nil {
		return nil, err
	}
	r.rec.Verdict = report.Verdict
	code := report.ExitCode()
	res := &Result{RunID: id, Verdict: report.Verdict, ExitCode: code, Report: report, Metrics: metrics}

	// image: FAIL (and INCONCLUSIVE under on_inconclusive: fail) stop here.
	if code != 3 {
		if err := r.stage("image", func() (string, error) {
			img, err := r.buildImage(ctx)
			if err != nil {
				return "", err
			}
			r.rec.Outputs.Image = img
			res.Ref = img.Ref
			return fmt.Sprintf("%s, tag %s in %s", short(img.Digest), img.Tag, img.Layout), nil
		}); err != nil {
			return nil, err
		}
		if r.repository() != "" {
			if err := r.stage("push", func() (string, error) {
				p, err := r.publish(ctx, r.rec.Outputs.Image)
				if err != nil {
					return "", err
				}
				r.rec.Outputs.Push = p
				res.Ref = p.Ref
				return fmt.Sprintf("%s, tags %s", p.Ref, strings.Join(p.Tags, ", ")), nil
			}); err != nil {
				return nil, err
			}
			if r.signs() {
				if err := r.stage("sign", func() (string, error) {
					s, err := r.signAndAttest(ctx, res.Ref, report, metrics)
					if err != nil {
						return "", err
					}
					r.rec.Outputs.Sign = s
					return fmt.Sprintf("signed; attested gate %s and provenance; metrics attached", report.Verdict), nil
				}); err != nil {
					return nil, err
				}
			}
			if spec.hasDeploy() {
				if err := r.stage("deploy", func() (string, error) { return r.deployStage(ctx, res.Ref) }); err != nil {
					return nil, err
				}
			}
		}
	}

	r.rec.ExitCode = code
	r.rec.Finished = r.o.now().UTC()
	if _, err := writeJSON(filepath.Join(tmp, "run.json"), &r.rec); err != nil {
		return nil, err
	}
	final := filepath.Join(runs, id)
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("publish run %s: %w", id, err)
	}
	r.tmp = ""
	res.RunDir = final
	res.Record = &r.rec
	return res, nil
}

func (r *run) writeReports(report *modelgate.Report, m *modelgate.Metrics) error {
	b, err := report.JSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.tmp, "gate.json"), b, 0o644); err != nil {
		return err
	}
	r.rec.Outputs.Gate = Artifact{Path: "gate.json", Digest: DigestBytes(b)}
	if err := os.WriteFile(filepath.Join(r.tmp, "gate.md"), []byte(report.Markdown()), 0o644); err != nil {
		return err
	}
	for _, format := range []string{"svg", "png"} {
		plot, err := modelgate.PlotLoss(m, report, format)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.tmp, "loss."+format), plot, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// baseline finds the champion's metrics: gate.baseline.metrics when set,
// the champion of gate.baseline.from's environment, else the last passing
// run in the output directory on the same test split.
func (r *run) baseline(ctx context.Context, candidate *modelgate.Metrics, test *data.Dataset) (*modelgate.Metrics, error) {
	if r.spec.Gate.Baseline.From != "" {
		return r.championBaseline(ctx, candidate, test)
	}
	if p := r.spec.Gate.Baseline.Metrics; p != "" {
		path := r.spec.Path(p)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("gate.baseline.metrics: %w", err)
		}
		m, err := modelgate.DecodeMetrics(b)
		if err != nil {
			return nil, fmt.Errorf("gate.baseline.metrics %s: %w", p, err)
		}
		r.rec.Inputs.Baseline = &BaselineInput{Source: p, Digest: DigestBytes(b)}
		return m, nil
	}
	ids, err := ListRuns(r.out)
	if err != nil {
		return nil, err
	}
	for i := len(ids) - 1; i >= 0; i-- {
		rec, err := ReadRecord(r.out, ids[i])
		if err != nil || rec.Verdict != modelgate.Pass || rec.Model.Name != r.spec.Model.Name {
			continue
		}
		if rec.Inputs.Split.TestDigest != candidate.Split.TestDigest {
			r.warnf("warning: last passing run %s used another test split; no baseline comparison", ids[i])
			return nil, nil
		}
		b, err := os.ReadFile(filepath.Join(RunsDir(r.out), ids[i], "metrics.json"))
		if err != nil {
			return nil, fmt.Errorf("baseline run %s: %w", ids[i], err)
		}
		m, err := modelgate.DecodeMetrics(b)
		if err != nil {
			return nil, fmt.Errorf("baseline run %s: %w", ids[i], err)
		}
		r.rec.Inputs.Baseline = &BaselineInput{Source: "run:" + ids[i], Digest: DigestBytes(b)}
		return m, nil
	}
	return nil, nil
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

// gateSummary is the gate's progress line: the verdict, the threshold
// check's interval, and how many checks passed.
func gateSummary(r *modelgate.Report) string {
	var b strings.Builder
	b.WriteString(string(r.Verdict))
	passed := 0
	for _, c := range r.Checks {
		if c.Verdict == modelgate.Pass {
			passed++
		}
		if c.Name == modelgate.CheckThreshold && c.Estimate != nil {
			fmt.Fprintf(&b, ", %s %s", r.Metric, num(*c.Estimate))
			if c.Lower != nil && c.Upper != nil {
				fmt.Fprintf(&b, " (%g%% CI %s–%s)", c.Confidence*100, num(*c.Lower), num(*c.Upper))
			}
			if c.Threshold != nil {
				op := "≤"
				if r.Direction == "maximize" {
					op = "≥"
				}
				fmt.Fprintf(&b, " vs %s %s", op, num(*c.Threshold))
			}
		}
	}
	fmt.Fprintf(&b, ", %d/%d checks pass", passed, len(r.Checks))
	return b.String()
}
