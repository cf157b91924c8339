package modelgate

import (
	"errors"
	"fmt"

	"github.com/modelci/modelci/internal/strictyaml"
)

// Policy is the gate: block of modelci.yaml (or the file given to
// `modelci gate --policy`). The yaml keys are the spec's; the json form is
// what the gate attestation records.
//
// Methods: "t" (Student t interval, the default), "bootstrap" (the
// bias-corrected and accelerated bootstrap, BCa) and "percentile" (the
// percentile bootstrap). Both bootstraps use Resamples resamples of n
// draws each and are deterministic for Seed.
type Policy struct {
	Metric         string         `yaml:"metric" json:"metric"`
	Direction      string         `yaml:"direction" json:"direction"`
	Threshold      *float64       `yaml:"threshold" required:"true" json:"threshold"`
	Confidence     float64        `yaml:"confidence" json:"confidence"`
	Method         string         `yaml:"method" json:"method"`
	Resamples      int            `yaml:"resamples" json:"resamples"`
	Seed           int64          `yaml:"seed" json:"seed"`
	Baseline       BaselinePolicy `yaml:"baseline" json:"baseline"`
	Health         HealthPolicy   `yaml:"health" json:"health"`
	OnInconclusive string         `yaml:"on_inconclusive" json:"on_inconclusive"`
}

// BaselinePolicy is the paired comparison with a champion.
//
// MaxRegression is the largest allowed worsening of the mean per-example
// loss: absolute, or when Relative, a fraction of |baseline mean|. Pointers
// tell "absent" (default) from an explicit 0 or false.
type BaselinePolicy struct {
	// Metrics is the path of the champion's metrics.json (read by the caller).
	Metrics string `yaml:"metrics" json:"metrics"`
	// From is an environment whose deployed model is the champion ([7/9]).
	From          string   `yaml:"from" json:"from"`
	MaxRegression *float64 `yaml:"max_regression" json:"max_regression"`
	Relative      *bool    `yaml:"relative" json:"relative"`
}

// HealthPolicy bounds the training curve.
//
// MaxDivergence k: the final training loss must be at most k × the minimum
// training loss (k ≥ 1). MaxGap g: the generalisation gap relative to the
// final training loss, (eval − train)/|train|, must be at most g.
type HealthPolicy struct {
	MaxDivergence float64  `yaml:"max_divergence" json:"max_divergence"`
	MaxGap        *float64 `yaml:"max_gap" json:"max_gap"`
}

// Policy values.
const (
	Minimize = "minimize"
	Maximize = "maximize"
	Hold     = "hold"
	FailOn   = "fail"
)

// Defaults.
const (
	DefaultMetric        = "loss"
	DefaultConfidence    = 0.95
	DefaultResamples     = 10000
	DefaultSeed          = 1
	DefaultMaxRegression = 0.02
	DefaultMaxDivergence = 1.5
	DefaultMaxGap        = 0.5
)

// DefaultPolicy is a policy with every default set and no threshold.
// Decode a gate: block into it (as DecodePolicy does) so that an explicit
// 0 or false in the document stays what it says.
func DefaultPolicy() Policy {
	var p Policy
	p.ApplyDefaults()
	return p
}

// ApplyDefaults fills the fields left at their zero value whose zero value
// is not a valid setting (strings, confidence, resamples, max_divergence),
// the unset (nil) pointers, and seed 0, which selects the default seed 1
// (so that a policy decoded into a zero value and one decoded into
// DefaultPolicy agree).
func (p *Policy) ApplyDefaults() {
	if p.Seed == 0 {
		p.Seed = DefaultSeed
	}
	if p.Metric == "" {
		p.Metric = DefaultMetric
	}
	if p.Direction == "" {
		p.Direction = Minimize
	}
	if p.Confidence == 0 {
		p.Confidence = DefaultConfidence
	}
	if p.Method == "" {
		p.Method = MethodT
	}
	if p.Resamples == 0 {
		p.Resamples = DefaultResamples
	}
	if p.Baseline.MaxRegression == nil {
		p.Baseline.MaxRegression = ptr(DefaultMaxRegression)
	}
	if p.Baseline.Relative == nil {
		p.Baseline.Relative = ptr(true)
	}
	if p.Health.MaxDivergence == 0 {
		p.Health.MaxDivergence = DefaultMaxDivergence
	}
	if p.Health.MaxGap == nil {
		p.Health.MaxGap = ptr(DefaultMaxGap)
	}
	if p.OnInconclusive == "" {
		p.OnInconclusive = Hold
	}
}

func ptr[T any](v T) *T { return &v }

// cmpOr is p, or a pointer to def when p is nil.
func cmpOr[T any](p *T, def T) *T {
	if p == nil {
		return &def
	}
	return p
}

// maxResamples keeps a typo from asking for hours of work.
const maxResamples = 10_000_000

// Validate reports every problem of p at once (errors.Join), each wrapping
// ErrMissingThreshold, ErrConfidence or ErrInvalidPolicy.
func (p Policy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("gate: "+format+": %w", append(args, ErrInvalidPolicy)...))
	}
	if p.Metric != DefaultMetric {
		bad("metric %q: only %q (eval.per_example) is supported", p.Metric, DefaultMetric)
	}
	if p.Direction != Minimize && p.Direction != Maximize {
		bad("direction %q: want %s or %s", p.Direction, Minimize, Maximize)
	}
	if p.Threshold == nil {
		errs = append(errs, fmt.Errorf("gate: threshold: %w", ErrMissingThreshold))
	} else if !finite(*p.Threshold) {
		bad("threshold %v is not a finite number", *p.Threshold)
	}
	if !(p.Confidence > 0 && p.Confidence < 1) {
		errs = append(errs, fmt.Errorf("gate: confidence %v: %w", p.Confidence, ErrConfidence))
	}
	switch p.Method {
	case MethodT, MethodBootstrap, MethodPercentile:
	default:
		bad("method %q: want %s, %s or %s", p.Method, MethodT, MethodBootstrap, MethodPercentile)
	}
	if p.Resamples < 1 || p.Resamples > maxResamples {
		bad("resamples %d: want 1 to %d", p.Resamples, maxResamples)
	}
	if mr := p.Baseline.MaxRegression; mr != nil && (!finite(*mr) || *mr < 0) {
		bad("baseline.max_regression %v: want a finite number ≥ 0", *mr)
	}
	if p.Baseline.Metrics != "" && p.Baseline.From != "" {
		bad("baseline: metrics and from are exclusive")
	}
	if d := p.Health.MaxDivergence; !finite(d) || d < 1 {
		bad("health.max_divergence %v: want a finite number ≥ 1", d)
	}
	if g := p.Health.MaxGap; g != nil && (!finite(*g) || *g < 0) {
		bad("health.max_gap %v: want a finite number ≥ 0", *g)
	}
	if p.OnInconclusive != Hold && p.OnInconclusive != FailOn {
		bad("on_inconclusive %q: want %s or %s", p.OnInconclusive, Hold, FailOn)
	}
	return errors.Join(errs...)
}

// Normalize is for a policy decoded over DefaultPolicy: an explicit null
// left a pointer nil, which means the default too, and seed 0 selects the
// default seed; other zero values stay, so that `confidence: 0` is refused.
func (p *Policy) Normalize() {
	p.Baseline.MaxRegression = cmpOr(p.Baseline.MaxRegression, DefaultMaxRegression)
	p.Baseline.Relative = cmpOr(p.Baseline.Relative, true)
	p.Health.MaxGap = cmpOr(p.Health.MaxGap, DefaultMaxGap)
	if p.Seed == 0 {
		p.Seed = DefaultSeed
	}
}

// DecodePolicy decodes a gate: block's content strictly (unknown keys,
// wrong types and a missing threshold are errors naming key and line,
// wrapping the strictyaml sentinels), starting from DefaultPolicy, and
// validates the result.
func DecodePolicy(name string, b []byte) (Policy, error) {
	p := DefaultPolicy()
	if err := strictyaml.Decode(name, b, &p); err != nil {
		return Policy{}, fmt.Errorf("gate policy: %w", err)
	}
	p.Normalize()
	if err := p.Validate(); err != nil {
		return Policy{}, fmt.Errorf("gate policy %s: %w", name, err)
	}
	return p, nil
}

func (p Policy) maxRegression() float64 {
	if p.Baseline.MaxRegression == nil {
		return DefaultMaxRegression
	}
	return *p.Baseline.MaxRegression
}

func (p Policy) relative() bool { return p.Baseline.Relative == nil || *p.Baseline.Relative }

func (p Policy) maxGap() float64 {
	if p.Health.MaxGap == nil {
		return DefaultMaxGap
	}
	return *p.Health.MaxGap
}

// sign is +1 when smaller is better, −1 when larger is.
func (p Policy) sign() float64 {
	if p.Direction == Maximize {
		return -1
	}
	return 1
}
