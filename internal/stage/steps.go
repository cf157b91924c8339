package stage

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/evaluate"
	"github.com/modelci/modelci/stages/sign"
	"github.com/modelci/modelci/stages/train"
)

// PlanSchema versions the document `stage plan` prints.
const PlanSchema = "modelci.dev/stage-plan/v1"

// Plan is what the Dagger module needs from a spec to wire its containers,
// read by the spec's own reader (spec.Load: strict, defaulted,
// validated). Paths are relative to the spec's directory, with slashes.
type Plan struct {
	Schema string `json:"schema"`
	Model  struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"model"`
	Data struct {
		Path         string  `json:"path"`
		Target       string  `json:"target"`
		TestFraction float64 `json:"test_fraction"`
		Seed         int64   `json:"seed"`
	} `json:"data"`
	Train struct {
		Builtin string         `json:"builtin,omitempty"`
		Command []string       `json:"command,omitempty"`
		Image   string         `json:"image,omitempty"`
		GPU     bool           `json:"gpu"`
		Params  map[string]any `json:"params"`
	} `json:"train"`
	Evaluate struct {
		Command []string `json:"command,omitempty"`
	} `json:"evaluate"`
	Image struct {
		Base      string   `json:"base"`
		Platforms []string `json:"platforms"`
	} `json:"image"`
	Gate struct {
		// BaselineFrom is gate.baseline.from: the module refuses a release
		// that would need the champion unless it is given one.
		BaselineFrom string `json:"baseline_from,omitempty"`
	} `json:"gate"`
}

// NewPlan is the plan of a loaded spec.
func NewPlan(s *spec.Spec) (*Plan, error) {
	p := &Plan{Schema: PlanSchema}
	p.Model.Name, p.Model.Version = s.Model.Name, s.Model.Version
	p.Data.Path, p.Data.Target = filepath.ToSlash(s.Data.Path), s.Data.Target
	p.Data.TestFraction, p.Data.Seed = *s.Data.TestFraction, *s.Data.Seed
	p.Train.Builtin, p.Train.Command, p.Train.Image, p.Train.GPU = s.Train.Builtin, s.Train.Command, s.Train.Image, s.Train.GPU
	p.Train.Params = s.Train.Params
	p.Evaluate.Command = s.Evaluate.Command
	p.Image.Base, p.Image.Platforms = s.Image.Base, s.Image.Platforms
	p.Gate.BaselineFrom = s.Gate.Baseline.From
	return p, nil
}

func planCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	specPath := fs.String("spec", "", "modelci.yaml")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := spec.Load(*specPath)
	if err != nil {
		return err
	}
	p, err := NewPlan(s)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(os.Stdout, "%s\n", b)
	return err
}

// metricsCmd assembles metrics.json v1 from the split's facts, the
// trainer's train.json and the evaluator's predictions.json, each checked
// against its contract, as `modelci run` does.
func metricsCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("metrics", flag.ContinueOnError)
	specPath := fs.String("spec", "", "modelci.yaml (train.params)")
	splitPath := fs.String("split", "", "split.json written by `stage split`")
	trainPath := fs.String("train", "", "the trainer's train.json")
	predsPath := fs.String("predictions", "", "the evaluator's predictions.json")
	out := fs.String("out", "", "metrics.json to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := spec.Load(*specPath)
	if err != nil {
		return err
	}
	params := s.Train.Params
	var sp Split
	if err := readJSON(*splitPath, &sp); err != nil {
		return err
	}
	loss, err := train.ReadTrainReport(*trainPath)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	perExample, err := evaluate.ReadPredictions(*predsPath, sp.TestRows)
	if err != nil {
		return fmt.Errorf("evaluator: %w", err)
	}
	m := pipeline.NewMetrics(pipeline.MetricsInput{
		Params: params, DatasetDigest: sp.DatasetDigest, Rows: sp.Rows,
		TestDigest: sp.TestDigest, TestRows: sp.TestRows, Seed: sp.Seed, TestFraction: sp.TestFraction,
		TrainLoss: loss, PerExample: perExample,
	})
	b, err := m.Encode()
	if err != nil {
		return err
	}
	return writeFile(*out, b)
}

// GateSchema versions gate's result.json.
const GateSchema = "modelci.dev/stage-gate/v1"

// GateResult is result.json of `stage gate`.
type GateResult struct {
	Schema   string            `json:"schema"`
	Verdict  modelgate.Verdict `json:"verdict"`
	ExitCode int               `json:"exit_code"`
}

// ErrNoChampion: the policy compares with an environment's champion
// (gate.baseline.from) and no baseline was given, or `stage champion`
// could not reach the environment's cluster and registry to find it. A
// gate that quietly skipped the comparison would pass what `modelci run`
// might refuse.
var ErrNoChampion = errors.New("gate.baseline.from needs the champion's metrics")

// gateInputs reads the candidate, the baseline and the policy of gate and
// predicates.
func gateInputs(fs *flag.FlagSet, args []string) (*modelgate.Report, *spec.Spec, *modelgate.Metrics, string, error) {
	metricsPath := fs.String("metrics", "", "the candidate's metrics.json")
	baselinePath := fs.String("baseline", "", "the champion's metrics.json")
	specPath := fs.String("spec", "", "modelci.yaml (its gate: block)")
	policyPath := fs.String("policy", "", "a file with a gate: block's content (instead of --spec)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, nil, "", err
	}
	cand, err := readMetrics(*metricsPath)
	if err != nil {
		return nil, nil, nil, "", err
	}
	var pol modelgate.Policy
	var s *spec.Spec
	switch {
	case *policyPath != "":
		b, err := os.ReadFile(*policyPath)
		if err != nil {
			return nil, nil, nil, "", err
		}
		if pol, err = modelgate.DecodePolicy(filepath.Base(*policyPath), b); err != nil {
			return nil, nil, nil, "", err
		}
	case *specPath != "":
		if s, err = spec.Load(*specPath); err != nil {
			return nil, nil, nil, "", err
		}
		pol = s.Gate
	default:
		return nil, nil, nil, "", errors.New("give --spec or --policy")
	}
	var base *modelgate.Metrics
	baselineDigest := ""
	if *baselinePath != "" {
		b, err := os.ReadFile(*baselinePath)
		if err != nil {
			return nil, nil, nil, "", err
		}
		if base, err = modelgate.DecodeMetrics(b); err != nil {
			return nil, nil, nil, "", fmt.Errorf("baseline %s: %w", *baselinePath, err)
		}
		baselineDigest = pipeline.DigestBytes(b)
	} else if pol.Baseline.From != "" {
		return nil, nil, nil, "", fmt.Errorf("gate.baseline.from: %s: %w: pass the champion's metrics.json as the baseline (modelci run fetches it from the environment)", pol.Baseline.From, ErrNoChampion)
	}
	r, err := modelgate.Evaluate(pol, cand, base)
	if err != nil {
		return nil, nil, nil, "", err
	}
	return r, s, cand, baselineDigest, nil
}

func readMetrics(path string) (*modelgate.Metrics, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := modelgate.DecodeMetrics(b)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", path, err)
	}
	return m, nil
}

// gateCmd writes result.json, report.md and report.json (modelci gate -o
// json) into --out.
func gateCmd(_ context.Context, args []string, exitCode func(modelgate.Decision) int) error {
	fs := flag.NewFlagSet("gate", flag.ContinueOnError)
	out := fs.String("out", "", "output directory")
	r, _, _, _, err := gateInputs(fs, args)
	if err != nil {
		return err
	}
	j, err := r.JSON()
	if err != nil {
		return err
	}
	res, err := json.Marshal(GateResult{Schema: GateSchema, Verdict: r.Verdict, ExitCode: exitCode(r.Decision())})
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"result.json": res, "report.md": []byte(r.Markdown()), "report.json": j} {
		if err := writeFile(filepath.Join(*out, name), b); err != nil {
			return err
		}
	}
	return nil
}

// DaggerBuilderID is the SLSA builder id of the Dagger module's releases
// (with @VERSION): `modelci run` names itself or the workflow instead.
const DaggerBuilderID = "https://modelci.dev/builders/dagger"

// predicatesCmd writes the predicates a signed release attests: gate.json
// (the gate verdict) and provenance.json (SLSA provenance).
func predicatesCmd(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("predicates", flag.ContinueOnError)
	out := fs.String("out", "", "output directory")
	started := fs.String("started", "", "when the release started (RFC 3339)")
	sourceURI := fs.String("source-uri", "", "the training code's repository, for the provenance")
	sourceRevision := fs.String("source-revision", "", "the training code's commit, for the provenance")
	baselineDigest := fs.String("baseline-digest", "", "the champion's metrics digest as `stage champion` recorded it (default: --baseline's)")
	smokePath := fs.String("smoke", "", "`stage smoke`'s smoke.json, for the provenance")
	r, s, m, digest, err := gateInputs(fs, args)
	if err != nil {
		return err
	}
	if s == nil {
		return errors.New("predicates need --spec")
	}
	if *baselineDigest != "" {
		// A re-scored champion: the attestation names its signed metrics.
		digest = *baselineDigest
	}
	start, err := time.Parse(time.RFC3339Nano, *started)
	if err != nil {
		return fmt.Errorf("--started %q: %w", *started, err)
	}
	var smokeOut *pipeline.SmokeOutput
	if *smokePath != "" {
		b, err := os.ReadFile(*smokePath)
		if err != nil {
			return err
		}
		smokeOut = &pipeline.SmokeOutput{}
		if err := json.Unmarshal(b, smokeOut); err != nil {
			return fmt.Errorf("%s: %w", *smokePath, err)
		}
	}
	model := modelgate.ModelRef{Name: s.Model.Name, Version: s.Model.Version}
	gb, err := json.Marshal(modelgate.NewGatePredicate(r, s.Gate, m, model, digest, start))
	if err != nil {
		return fmt.Errorf("encode the gate attestation: %w", err)
	}
	// The provenance `modelci run` attests, built by the same function;
	// only the builder and the run's identity and times differ.
	in := pipeline.ProvenanceInput(s, pipeline.ProvenanceRun{
		BuilderID:     DaggerBuilderID + "@" + pipeline.Version(),
		DatasetDigest: m.Dataset.Digest,
		// The module's source has no .git: the caller names the commit.
		SourceURI: *sourceURI, SourceRevision: *sourceRevision,
		Started: start.UTC(), Finished: time.Now().UTC(),
		Smoke: smokeOut,
	})
	prov, err := sign.NewProvenance(in)
	if err != nil {
		return err
	}
	pb, err := json.Marshal(prov)
	if err != nil {
		return fmt.Errorf("encode the provenance: %w", err)
	}
	if err := writeFile(filepath.Join(*out, "gate.json"), gb); err != nil {
		return err
	}
	return writeFile(filepath.Join(*out, "provenance.json"), pb)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
