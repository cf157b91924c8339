package modelgate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelci/modelci/internal/strictyaml"
	"github.com/modelci/modelci/modelgate"
)

func TestDecodePolicyDefaults(t *testing.T) {
	p, err := modelgate.DecodePolicy("gate.yaml", []byte("threshold: 5000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Metric != "loss" || p.Direction != "minimize" || *p.Threshold != 5000 || p.Confidence != 0.95 ||
		p.Method != "t" || p.Resamples != 10000 || p.Seed != 1 || *p.Baseline.MaxRegression != 0.02 ||
		!*p.Baseline.Relative || p.Health.MaxDivergence != 1.5 || *p.Health.MaxGap != 0.5 || p.OnInconclusive != "hold" {
		t.Errorf("defaults: %+v", p)
	}
	d := modelgate.DefaultPolicy()
	if d.Threshold != nil || d.Confidence != 0.95 || d.Seed != 1 {
		t.Errorf("DefaultPolicy: %+v", d)
	}
}

// The spec's full gate: block (ARCHITECTURE.md), with explicit zeros and
// false that must survive decoding.
func TestDecodePolicyFull(t *testing.T) {
	doc := `
metric: loss
direction: maximize
threshold: 0.8
confidence: 0.99
method: percentile
resamples: 2000
seed: 0 # selects the default seed 1
baseline: {metrics: champion.json, from: "", max_regression: 0, relative: false}
health: {max_divergence: 2, max_gap: 0}
on_inconclusive: fail
`
	p, err := modelgate.DecodePolicy("gate.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if p.Direction != "maximize" || *p.Threshold != 0.8 || p.Confidence != 0.99 || p.Method != "percentile" ||
		p.Resamples != 2000 || p.Seed != 1 || p.Baseline.Metrics != "champion.json" || *p.Baseline.MaxRegression != 0 ||
		*p.Baseline.Relative || p.Health.MaxDivergence != 2 || *p.Health.MaxGap != 0 || p.OnInconclusive != "fail" {
		t.Errorf("decoded %+v", p)
	}
}

func TestDecodePolicyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      error
		mention   string // the key or line the message must name
	}{
		{"missing threshold", "confidence: 0.9\n", strictyaml.ErrMissing, "threshold"},
		{"null threshold", "threshold: null\n", strictyaml.ErrMissing, "threshold"},
		{"unknown key", "threshold: 1\nthreshhold: 2\n", strictyaml.ErrUnknownKey, "2:1"},
		{"unknown nested key", "threshold: 1\nhealth: {max_gapp: 1}\n", strictyaml.ErrUnknownKey, "health.max_gapp"},
		{"wrong type", "threshold: high\n", strictyaml.ErrType, "threshold"},
		{"confidence 0", "threshold: 1\nconfidence: 0\n", modelgate.ErrConfidence, "confidence"},
		{"confidence 1", "threshold: 1\nconfidence: 1\n", modelgate.ErrConfidence, "confidence"},
		{"confidence 95", "threshold: 1\nconfidence: 95\n", modelgate.ErrConfidence, "confidence"},
		{"negative confidence", "threshold: 1\nconfidence: -0.5\n", modelgate.ErrConfidence, "confidence"},
		{"method", "threshold: 1\nmethod: bayes\n", modelgate.ErrInvalidPolicy, "method"},
		{"direction", "threshold: 1\ndirection: up\n", modelgate.ErrInvalidPolicy, "direction"},
		{"metric", "threshold: 1\nmetric: accuracy\n", modelgate.ErrInvalidPolicy, "metric"},
		{"resamples", "threshold: 1\nresamples: 0\n", modelgate.ErrInvalidPolicy, "resamples"},
		{"threshold NaN", "threshold: .nan\n", modelgate.ErrInvalidPolicy, "threshold"},
		{"max_regression", "threshold: 1\nbaseline: {max_regression: -1}\n", modelgate.ErrInvalidPolicy, "max_regression"},
		{"max_divergence", "threshold: 1\nhealth: {max_divergence: 0.5}\n", modelgate.ErrInvalidPolicy, "max_divergence"},
		{"max_gap", "threshold: 1\nhealth: {max_gap: -1}\n", modelgate.ErrInvalidPolicy, "max_gap"},
		{"on_inconclusive", "threshold: 1\non_inconclusive: approve\n", modelgate.ErrInvalidPolicy, "on_inconclusive"},
		{"metrics and from", "threshold: 1\nbaseline: {metrics: a.json, from: prod}\n", modelgate.ErrInvalidPolicy, "baseline"},
		{"syntax", "threshold: [1\n", strictyaml.ErrSyntax, "gate.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := modelgate.DecodePolicy("gate.yaml", []byte(tc.doc))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("err = %q, want it to mention %q", err, tc.mention)
			}
		})
	}
}

// Every problem is reported at once.
func TestValidateReportsAll(t *testing.T) {
	p := modelgate.DefaultPolicy()
	p.Confidence = 2
	p.Method = "x"
	err := p.Validate()
	for _, want := range []error{modelgate.ErrMissingThreshold, modelgate.ErrConfidence, modelgate.ErrInvalidPolicy} {
		if !errors.Is(err, want) {
			t.Errorf("err = %v, want it to wrap %v", err, want)
		}
	}
}

// ApplyDefaults on a zero policy gives the defaults, so that a policy
// built in code needs only a threshold.
func TestApplyDefaults(t *testing.T) {
	var p modelgate.Policy
	p.ApplyDefaults()
	d := modelgate.DefaultPolicy()
	if p.Metric != d.Metric || p.Confidence != d.Confidence || *p.Baseline.Relative != *d.Baseline.Relative ||
		*p.Health.MaxGap != *d.Health.MaxGap || p.OnInconclusive != d.OnInconclusive || p.Seed != 1 {
		t.Errorf("ApplyDefaults: %+v, want %+v", p, d)
	}
	f := false
	p = modelgate.Policy{Baseline: modelgate.BaselinePolicy{Relative: &f}}
	p.ApplyDefaults()
	if *p.Baseline.Relative {
		t.Error("ApplyDefaults replaced an explicit relative: false")
	}
}

func FuzzDecodePolicy(f *testing.F) {
	for _, s := range []string{
		"threshold: 5000\n",
		"threshold: 1\nmethod: bootstrap\nresamples: 100\nbaseline: {max_regression: 0.1, relative: false}\n",
		"threshold: 1\nhealth: {max_divergence: 2, max_gap: 0.1}\non_inconclusive: fail\n",
		"threshold: [1\n", "{}", "threshold: &a 1\nconfidence: *a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := modelgate.DecodePolicy("fuzz.yaml", b)
		if err != nil {
			if p.Threshold != nil {
				t.Errorf("error %v with a non-zero policy", err)
			}
			return
		}
		// A decoded policy is valid, and applying defaults again changes nothing.
		if err := p.Validate(); err != nil {
			t.Errorf("decoded policy does not validate: %v", err)
		}
		q := p
		q.ApplyDefaults()
		if q.Confidence != p.Confidence || q.Method != p.Method || q.Resamples != p.Resamples {
			t.Errorf("ApplyDefaults changed a decoded policy: %+v → %+v", p, q)
		}
	})
}
