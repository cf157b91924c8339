package modelgate_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelci/modelci/modelgate"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// diabetes is metrics.json from `modelci run -C examples/linreg`: the
// built-in linear model on the bundled diabetes data, 88 test rows.
func diabetes(t testing.TB) *modelgate.Metrics {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "diabetes-metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := modelgate.DecodeMetrics(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func policy(threshold float64, edit ...func(*modelgate.Policy)) modelgate.Policy {
	p := modelgate.DefaultPolicy()
	p.Threshold = &threshold
	for _, e := range edit {
		e(&p)
	}
	return p
}

// scaled is a copy of m with every per-example loss multiplied by f.
func scaled(m *modelgate.Metrics, f float64) *modelgate.Metrics {
	c := *m
	c.Eval.PerExample = slices.Clone(m.Eval.PerExample)
	var s float64
	for i := range c.Eval.PerExample {
		c.Eval.PerExample[i] *= f
		s += c.Eval.PerExample[i]
	}
	c.Eval.Loss = s / float64(len(c.Eval.PerExample))
	return &c
}

func check(t *testing.T, r *modelgate.Report, name string) modelgate.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return modelgate.Check{}
}

// On the example the 95% t upper bound lies in 3,600–4,400, below the
// example's threshold of 5,000: PASS, with every method.
func TestEvaluateDiabetesExample(t *testing.T) {
	m := diabetes(t)
	for _, method := range []string{modelgate.MethodT, modelgate.MethodBootstrap, modelgate.MethodPercentile} {
		r, err := modelgate.Evaluate(policy(5000, func(p *modelgate.Policy) { p.Method = method }), m, nil)
		if err != nil {
			t.Fatal(err)
		}
		th := check(t, r, modelgate.CheckThreshold)
		if r.Verdict != modelgate.Pass || r.Decision() != modelgate.Released || th.Verdict != modelgate.Pass {
			t.Errorf("%s: verdict %s, threshold %s (%s)", method, r.Verdict, th.Verdict, th.Reason)
		}
		if !(*th.Upper >= 3600 && *th.Upper <= 4400) || !(*th.Lower < *th.Estimate) {
			t.Errorf("%s: interval [%v, %v]", method, *th.Lower, *th.Upper)
		}
		if len(r.Checks) != 4 {
			t.Errorf("%s: %d checks, want threshold and three health checks", method, len(r.Checks))
		}
	}
}

func TestEvaluateThresholdVerdicts(t *testing.T) {
	m := diabetes(t) // mean 3266, 95% t interval ≈ [2413, 4119]
	maximize := func(p *modelgate.Policy) { p.Direction = modelgate.Maximize }
	failOn := func(p *modelgate.Policy) { p.OnInconclusive = modelgate.FailOn }
	for _, tc := range []struct {
		name string
		p    modelgate.Policy
		want modelgate.Verdict
		code modelgate.Decision
	}{
		{"below", policy(5000), modelgate.Pass, modelgate.Released},
		{"straddles, hold", policy(3000), modelgate.Inconclusive, modelgate.Held},
		{"straddles, fail", policy(3000, failOn), modelgate.Inconclusive, modelgate.Refused},
		{"above", policy(2000), modelgate.Fail, modelgate.Refused},
		{"maximize above", policy(2000, maximize), modelgate.Pass, modelgate.Released},
		{"maximize straddles", policy(4000, maximize), modelgate.Inconclusive, modelgate.Held},
		{"maximize below", policy(5000, maximize), modelgate.Fail, modelgate.Refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := modelgate.Evaluate(tc.p, m, nil)
			if err != nil {
				t.Fatal(err)
			}
			if th := check(t, r, modelgate.CheckThreshold); th.Verdict != tc.want || r.Verdict != tc.want || r.Decision() != tc.code {
				t.Errorf("threshold %s, overall %s, decision %s; want %s, %s (%s)", th.Verdict, r.Verdict, r.Decision(), tc.want, tc.code, th.Reason)
			}
		})
	}
}

func TestEvaluateBaseline(t *testing.T) {
	m := diabetes(t)
	absolute := func(limit float64) func(*modelgate.Policy) {
		return func(p *modelgate.Policy) {
			f := false
			p.Baseline.Relative, p.Baseline.MaxRegression = &f, &limit
		}
	}
	for _, tc := range []struct {
		name      string
		p         modelgate.Policy
		candidate *modelgate.Metrics
		want      modelgate.Verdict
	}{
		// Identical losses: every difference is 0.
		{"same model", policy(5000), m, modelgate.Pass},
		// 1% better on every row.
		{"better", policy(5000), scaled(m, 0.99), modelgate.Pass},
		// 50% worse on every row: the regression's interval is far above 2%.
		{"much worse", policy(5000), scaled(m, 1.5), modelgate.Fail},
		// 1% worse everywhere against 2% relative: the interval of the
		// regression lies below the allowance.
		{"slightly worse", policy(5000), scaled(m, 1.01), modelgate.Pass},
		// 3% worse, allowed 25 absolute: mean regression ≈ 98 > 25.
		{"absolute limit", policy(5000, absolute(25)), scaled(m, 1.03), modelgate.Fail},
		// 1% worse (≈ 33) against 33: the interval straddles it.
		{"at the limit", policy(5000, absolute(32.66)), scaled(m, 1.01), modelgate.Inconclusive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := modelgate.Evaluate(tc.p, tc.candidate, m)
			if err != nil {
				t.Fatal(err)
			}
			b := check(t, r, modelgate.CheckBaseline)
			if b.Verdict != tc.want {
				t.Errorf("baseline %s, want %s: %s", b.Verdict, tc.want, b.Reason)
			}
			if len(b.Tests) != 2 || b.Tests[0].Name != "paired-t" || b.Tests[1].Name != "wilcoxon-signed-rank" {
				t.Errorf("tests %+v", b.Tests)
			}
			if !near(*b.Reference, m.Eval.Loss, 1e-9*m.Eval.Loss) || r.Baseline == nil {
				t.Errorf("reference %v, baseline summary %v", *b.Reference, r.Baseline)
			}
		})
	}
	// A model that is worse on every row: both tests find it.
	r, err := modelgate.Evaluate(policy(5000), scaled(m, 1.5), m)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range check(t, r, modelgate.CheckBaseline).Tests {
		if tr.PValue > 1e-6 {
			t.Errorf("%s p = %v for a model worse on every row", tr.Name, tr.PValue)
		}
	}
}

// A zero baseline mean with a relative limit allows no regression; it is
// never divided by.
func TestEvaluateZeroBaseline(t *testing.T) {
	m := diabetes(t)
	zero := scaled(m, 0)
	r, err := modelgate.Evaluate(policy(5000), zero, zero)
	if err != nil {
		t.Fatal(err)
	}
	b := check(t, r, modelgate.CheckBaseline)
	if b.Verdict != modelgate.Pass || *b.Threshold != 0 || !strings.Contains(b.Reason, "champion's mean is 0") {
		t.Errorf("zero vs zero: %+v", b)
	}
	r, err = modelgate.Evaluate(policy(5000), m, zero)
	if err != nil {
		t.Fatal(err)
	}
	if b := check(t, r, modelgate.CheckBaseline); b.Verdict != modelgate.Fail {
		t.Errorf("worse than a perfect champion: %s (%s)", b.Verdict, b.Reason)
	}
}

func TestEvaluateRefusals(t *testing.T) {
	m := diabetes(t)
	otherSplit := *m
	otherSplit.Split.TestDigest = "sha256:other"
	noDigest := *m
	noDigest.Split.TestDigest = ""
	short := *m
	short.Eval.PerExample = m.Eval.PerExample[:10]
	short.Split.TestRows = 10
	short.Eval.Loss = 0
	for _, v := range short.Eval.PerExample {
		short.Eval.Loss += v / 10
	}
	one := short
	one.Eval.PerExample = m.Eval.PerExample[:1]
	one.Split.TestRows, one.Eval.Loss = 1, m.Eval.PerExample[0]
	empty := *m
	empty.Eval.PerExample = nil
	for _, tc := range []struct {
		name       string
		p          modelgate.Policy
		cand, base *modelgate.Metrics
		want       error
	}{
		{"other test split", policy(5000), m, &otherSplit, modelgate.ErrSplitMismatch},
		{"no test digest", policy(5000), &noDigest, &noDigest, modelgate.ErrSplitMismatch},
		{"lengths differ", policy(5000), m, &short, modelgate.ErrLengthMismatch},
		{"one example", policy(5000), &one, nil, modelgate.ErrTooFewValues},
		{"no examples", policy(5000), &empty, nil, modelgate.ErrEmptyPerExample},
		{"no threshold", modelgate.DefaultPolicy(), m, nil, modelgate.ErrMissingThreshold},
		{"confidence", policy(5000, func(p *modelgate.Policy) { p.Confidence = 1.5 }), m, nil, modelgate.ErrConfidence},
		{"bad baseline", policy(5000), m, &empty, modelgate.ErrEmptyPerExample},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := modelgate.Evaluate(tc.p, tc.cand, tc.base); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEvaluateHealth(t *testing.T) {
	m := diabetes(t)
	withTrain := func(loss ...float64) *modelgate.Metrics {
		c := *m
		c.Train.Loss = loss
		return &c
	}
	for _, tc := range []struct {
		name   string
		m      *modelgate.Metrics
		p      modelgate.Policy
		failed []string
	}{
		{"healthy", m, policy(5000), nil},
		// Final 4000 > 1.5 × minimum 2500.
		{"diverged", withTrain(6000, 2500, 4000), policy(5000), []string{modelgate.CheckDivergence}},
		{"diverged, k = 2", withTrain(6000, 2500, 4000), policy(5000, func(p *modelgate.Policy) { p.Health.MaxDivergence = 2 }), nil},
		// Eval 3266 against train 1000: gap 2.27 > 0.5.
		{"overfit", withTrain(5000, 1000), policy(5000), []string{modelgate.CheckGap}},
		{"train loss 0", withTrain(5000, 0), policy(5000), []string{modelgate.CheckGap}},
		{"NaN training loss", withTrain(5000, math.NaN(), 2900), policy(5000), []string{modelgate.CheckFinite, modelgate.CheckDivergence, modelgate.CheckGap}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := modelgate.Evaluate(tc.p, tc.m, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Every check is evaluated, whatever fails.
			names := []string{modelgate.CheckThreshold, modelgate.CheckFinite, modelgate.CheckDivergence, modelgate.CheckGap}
			var got, failed []string
			for _, c := range r.Checks {
				got = append(got, c.Name)
				if c.Verdict == modelgate.Fail {
					failed = append(failed, c.Name)
				}
			}
			if !slices.Equal(got, names) || !slices.Equal(failed, tc.failed) {
				t.Errorf("checks %v, failed %v; want %v, failed %v", got, failed, names, tc.failed)
			}
			if want := map[bool]modelgate.Verdict{true: modelgate.Pass, false: modelgate.Fail}[tc.failed == nil]; r.Verdict != want {
				t.Errorf("verdict %s, want %s", r.Verdict, want)
			}
			if _, err := r.JSON(); err != nil {
				t.Errorf("JSON: %v", err)
			}
		})
	}
}

// A model whose predictions are NaN fails the gate (exit 3); it is not an error.
func TestEvaluateNonFinitePerExample(t *testing.T) {
	m := scaled(diabetes(t), 1)
	m.Eval.PerExample[3] = math.Inf(1)
	m.Eval.Loss = math.Inf(1)
	r, err := modelgate.Evaluate(policy(5000), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	th := check(t, r, modelgate.CheckThreshold)
	if r.Verdict != modelgate.Fail || th.Verdict != modelgate.Fail || th.Estimate != nil || !strings.Contains(th.Reason, "per_example[3]") {
		t.Errorf("verdict %s, threshold %+v", r.Verdict, th)
	}
	if _, err := r.JSON(); err != nil {
		t.Errorf("JSON: %v", err)
	}
}

func TestDecision(t *testing.T) {
	for _, tc := range []struct {
		v    modelgate.Verdict
		on   string
		want modelgate.Decision
	}{
		{modelgate.Pass, "hold", modelgate.Released}, {modelgate.Pass, "fail", modelgate.Released},
		{modelgate.Fail, "hold", modelgate.Refused}, {modelgate.Fail, "fail", modelgate.Refused},
		{modelgate.Inconclusive, "hold", modelgate.Held}, {modelgate.Inconclusive, "fail", modelgate.Refused},
	} {
		r := &modelgate.Report{Verdict: tc.v, OnInconclusive: tc.on}
		if got := r.Decision(); got != tc.want {
			t.Errorf("%s under %s: decision %s, want %s", tc.v, tc.on, got, tc.want)
		}
	}
}

// Golden reports: `go test ./modelgate -run Golden -update` rewrites them.
func TestReportGolden(t *testing.T) {
	m := diabetes(t)
	r, err := modelgate.Evaluate(policy(5000), scaled(m, 1.01), m)
	if err != nil {
		t.Fatal(err)
	}
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []struct {
		file string
		got  []byte
	}{
		{"report.golden.json", js},
		{"report.golden.md", []byte(r.Markdown())},
		{"report.golden.txt", []byte(r.Text())},
	} {
		path := filepath.Join("testdata", g.file)
		if *update {
			if err := os.WriteFile(path, g.got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g.got, want) {
			t.Errorf("%s differs (run with -update after checking):\n%s", g.file, g.got)
		}
	}
	// The JSON schema: the fields consumers rely on.
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["schema"] != modelgate.ReportSchema || doc["verdict"] != "PASS" || doc["on_inconclusive"] != "hold" {
		t.Errorf("report head: %v", doc)
	}
	for _, c := range doc["checks"].([]any) {
		c := c.(map[string]any)
		for _, key := range []string{"name", "estimate", "lower", "upper", "threshold", "verdict", "reason"} {
			if _, ok := c[key]; !ok {
				t.Errorf("check %v lacks %q", c["name"], key)
			}
		}
	}
}

// TestPolicyDigest: defaults written out or left out give one digest, the
// champion's local metrics path is not part of it, and any setting is.
func TestPolicyDigest(t *testing.T) {
	decode := func(doc string) modelgate.Policy {
		t.Helper()
		p, err := modelgate.DecodePolicy("gate.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := decode("threshold: 5000\n")
	d := base.Digest()
	if !strings.HasPrefix(d, "sha256:") || len(d) != len("sha256:")+64 {
		t.Fatalf("digest %q", d)
	}
	var zero modelgate.Policy
	zero.Threshold = base.Threshold
	for name, p := range map[string]modelgate.Policy{
		"explicit defaults": decode("threshold: 5000\nmetric: loss\ndirection: minimize\nconfidence: 0.95\nmethod: t\nresamples: 10000\nseed: 1\nbaseline: {max_regression: 0.02, relative: true}\nhealth: {max_divergence: 1.5, max_gap: 0.5}\non_inconclusive: hold\n"),
		"zero value":        zero,
		"baseline metrics":  decode("threshold: 5000\nbaseline: {metrics: /tmp/champion.json}\n"),
	} {
		if got := p.Digest(); got != d {
			t.Errorf("%s: digest %s, want %s", name, got, d)
		}
	}
	for _, doc := range []string{
		"threshold: 4999\n",
		"threshold: 5000\nconfidence: 0.99\n",
		"threshold: 5000\nmethod: bootstrap\n",
		"threshold: 5000\non_inconclusive: fail\n",
		"threshold: 5000\nbaseline: {from: prod}\n",
		"threshold: 5000\nhealth: {max_gap: 0.4}\n",
	} {
		if decode(doc).Digest() == d {
			t.Errorf("%q has the default policy's digest", doc)
		}
	}
}

func TestGatePredicate(t *testing.T) {
	m := diabetes(t)
	p := policy(5000)
	r, err := modelgate.Evaluate(p, m, m)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	pred := modelgate.NewGatePredicate(r, p, m, modelgate.ModelRef{Name: "diabetes", Version: "1.0.0"}, "sha256:base", at)
	b, err := json.Marshal(pred)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Model   modelgate.ModelRef `json:"model"`
		Verdict string             `json:"verdict"`
		Policy  map[string]any     `json:"policy"`
		Metrics map[string]any     `json:"metrics"`
		Dataset map[string]any     `json:"dataset"`
		Base    string             `json:"baseline_digest"`
		Checks  []map[string]any   `json:"checks"`
		Digest  string             `json:"policy_digest"`
		Time    string             `json:"time"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Model.Name != "diabetes" || doc.Model.Version != "1.0.0" || doc.Verdict != "PASS" || doc.Base != "sha256:base" ||
		doc.Policy["threshold"] != 5000.0 || doc.Policy["confidence"] != 0.95 ||
		doc.Dataset["digest"] != m.Dataset.Digest || doc.Dataset["test_digest"] != m.Split.TestDigest ||
		doc.Metrics["eval_loss"] != m.Eval.Loss || len(doc.Checks) != 5 ||
		doc.Digest != p.Digest() || doc.Time != "2026-12-07T09:00:00Z" {
		t.Errorf("predicate: %s", b)
	}
	if modelgate.GatePredicateType != "https://modelci.dev/attestations/gate/v1" {
		t.Errorf("predicate type %q", modelgate.GatePredicateType)
	}
}
