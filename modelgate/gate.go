package modelgate

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Verdict is the outcome of a check or of the whole gate.
type Verdict string

// The three verdicts.
const (
	Pass         Verdict = "PASS"
	Fail         Verdict = "FAIL"
	Inconclusive Verdict = "INCONCLUSIVE"
)

// ReportSchema identifies the gate report's JSON form.
const ReportSchema = "modelci.dev/gate-report/v1"

// Check names.
const (
	CheckThreshold  = "threshold"
	CheckBaseline   = "baseline"
	CheckFinite     = "health.finite"
	CheckDivergence = "health.divergence"
	CheckGap        = "health.gap"
)

// Check is one evaluated check. Numbers that do not apply, or that are not
// finite, are null in JSON.
type Check struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Method is the interval's method (t, bootstrap, percentile, wilson,
	// histogram); empty for checks without an interval.
	Method     string   `json:"method,omitempty"`
	N          int      `json:"n,omitempty"`
	Estimate   *float64 `json:"estimate"`
	Lower      *float64 `json:"lower"`
	Upper      *float64 `json:"upper"`
	Confidence float64  `json:"confidence,omitempty"`
	Threshold  *float64 `json:"threshold"`
	// Reference is the value compared against: the champion's mean loss, or
	// the stable version's figure in a canary analysis.
	Reference *float64     `json:"reference,omitempty"`
	Tests     []TestResult `json:"tests,omitempty"`
	Verdict   Verdict      `json:"verdict"`
	Reason    string       `json:"reason"`
}

// MetricsSummary is what a report and an attestation say about one metrics.json.
type MetricsSummary struct {
	Epochs         int      `json:"epochs"`
	TrainLossFinal *float64 `json:"train_loss_final"`
	TrainLossMin   *float64 `json:"train_loss_min"`
	EvalLoss       *float64 `json:"eval_loss"`
	Examples       int      `json:"examples"`
	DatasetDigest  string   `json:"dataset_digest"`
	TestDigest     string   `json:"test_digest"`
}

// Summarize m.
func Summarize(m *Metrics) MetricsSummary {
	s := MetricsSummary{
		Epochs:        len(m.Train.Loss),
		EvalLoss:      num(m.Eval.Loss),
		Examples:      len(m.Eval.PerExample),
		DatasetDigest: m.Dataset.Digest,
		TestDigest:    m.Split.TestDigest,
	}
	if len(m.Train.Loss) > 0 {
		s.TrainLossFinal = num(m.Train.Loss[len(m.Train.Loss)-1])
		s.TrainLossMin = num(minOf(m.Train.Loss))
	}
	return s
}

// Report is the gate's result: every check and the overall verdict.
type Report struct {
	Schema  string  `json:"schema"`
	Verdict Verdict `json:"verdict"`
	// OnInconclusive is the policy's on_inconclusive, which decides what an INCONCLUSIVE verdict means.
	OnInconclusive string          `json:"on_inconclusive"`
	Metric         string          `json:"metric,omitempty"`
	Direction      string          `json:"direction,omitempty"`
	Candidate      *MetricsSummary `json:"candidate,omitempty"`
	Baseline       *MetricsSummary `json:"baseline,omitempty"`
	Checks         []Check         `json:"checks"`
}

// Decision is what a verdict means for the model under the policy: it is
// released, held for a person's approval, or refused. Front ends map it to
// their own signals (the CLI's exit codes, a workflow's outcome).
type Decision string

// Decisions.
const (
	// Released: PASS.
	Released Decision = "release"
	// Held: INCONCLUSIVE under on_inconclusive: hold.
	Held Decision = "hold"
	// Refused: FAIL, or INCONCLUSIVE under on_inconclusive: fail.
	Refused Decision = "refuse"
)

// Decision is the report's verdict under its on_inconclusive.
func (r *Report) Decision() Decision {
	switch r.Verdict {
	case Pass:
		return Released
	case Inconclusive:
		if r.OnInconclusive == FailOn {
			return Refused
		}
		return Held
	}
	return Refused
}

// JSON is the report as indented JSON with a final newline.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("gate report: encoding: %w", err)
	}
	return append(b, '\n'), nil
}

// overall is FAIL if any check fails, else INCONCLUSIVE if any is, else PASS.
func overall(checks []Check) Verdict {
	v := Pass
	for _, c := range checks {
		switch c.Verdict {
		case Fail:
			return Fail
		case Inconclusive:
			v = Inconclusive
		}
	}
	return v
}

// Evaluate runs every check of p on the candidate's metrics and, when
// baseline is not nil, the paired comparison with it. Every check is
// evaluated and reported. Invalid input is an error: an invalid policy,
// malformed metrics, a baseline on another test split (ErrSplitMismatch)
// or of another length (ErrLengthMismatch). Non-finite losses are not an
// error: the health check fails on them.
func Evaluate(p Policy, candidate *Metrics, baseline *Metrics) (*Report, error) {
	p.ApplyDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := candidate.Validate(); err != nil {
		return nil, fmt.Errorf("candidate %w", err)
	}
	if len(candidate.Eval.PerExample) < 2 {
		return nil, fmt.Errorf("candidate metrics: eval.per_example has %d value, need at least 2: %w", len(candidate.Eval.PerExample), ErrTooFewValues)
	}
	if baseline != nil {
		if err := baseline.Validate(); err != nil {
			return nil, fmt.Errorf("baseline %w", err)
		}
		if err := comparable(candidate, baseline); err != nil {
			return nil, err
		}
	}
	cs := Summarize(candidate)
	r := &Report{
		Schema:         ReportSchema,
		OnInconclusive: p.OnInconclusive,
		Metric:         p.Metric,
		Direction:      p.Direction,
		Candidate:      &cs,
	}
	th, err := thresholdCheck(p, candidate.Eval.PerExample)
	if err != nil {
		return nil, err
	}
	r.Checks = append(r.Checks, th)
	if baseline != nil {
		bs := Summarize(baseline)
		r.Baseline = &bs
		bc, err := baselineCheck(p, candidate.Eval.PerExample, baseline.Eval.PerExample)
		if err != nil {
			return nil, err
		}
		r.Checks = append(r.Checks, bc)
	}
	r.Checks = append(r.Checks, healthChecks(p, candidate)...)
	r.Verdict = overall(r.Checks)
	return r, nil
}

// comparable refuses a paired comparison on different test rows.
func comparable(c, b *Metrics) error {
	if c.Split.TestDigest == "" || b.Split.TestDigest == "" {
		return fmt.Errorf("baseline comparison: split.test_digest is empty (candidate %q, baseline %q): %w", c.Split.TestDigest, b.Split.TestDigest, ErrSplitMismatch)
	}
	if c.Split.TestDigest != b.Split.TestDigest {
		return fmt.Errorf("baseline comparison: candidate test split %s, baseline %s: %w", c.Split.TestDigest, b.Split.TestDigest, ErrSplitMismatch)
	}
	if len(c.Eval.PerExample) != len(b.Eval.PerExample) {
		return fmt.Errorf("baseline comparison: candidate has %d per-example values, baseline %d: %w", len(c.Eval.PerExample), len(b.Eval.PerExample), ErrLengthMismatch)
	}
	return nil
}

// interval computes the policy's interval for the mean of x.
func (p Policy) interval(x []float64) (Interval, error) {
	switch p.Method {
	case MethodBootstrap, MethodPercentile:
		return BootstrapInterval(x, p.Confidence, p.Resamples, p.Seed, p.Method == MethodBootstrap)
	}
	return TInterval(x, p.Confidence)
}

// decide applies the three-verdict rule to an interval for a quantity
// where smaller is better: PASS when the whole interval is at or below the
// limit, FAIL when it is wholly above, INCONCLUSIVE when it straddles it.
func decide(lower, upper, limit float64) Verdict {
	switch {
	case upper <= limit:
		return Pass
	case lower > limit:
		return Fail
	}
	return Inconclusive
}

func thresholdCheck(p Policy, x []float64) (Check, error) {
	t := *p.Threshold
	c := Check{
		Name:        CheckThreshold,
		Description: fmt.Sprintf("mean eval %s %s %s", p.Metric, goodSide(p.Direction), FormatNumber(t)),
		Method:      p.Method,
		N:           len(x),
		Confidence:  p.Confidence,
		Threshold:   num(t),
	}
	if i := firstNonFinite(x); i >= 0 {
		c.Verdict = Fail
		c.Reason = fmt.Sprintf("eval.per_example[%d] is %v", i, x[i])
		return c, nil
	}
	iv, err := p.interval(x)
	if err != nil {
		return Check{}, fmt.Errorf("threshold check: %w", err)
	}
	c.Estimate, c.Lower, c.Upper = num(iv.Estimate), num(iv.Lower), num(iv.Upper)
	s := p.sign()
	// Orient so that smaller is better: for maximize, negate everything.
	lo, hi := s*iv.Lower, s*iv.Upper
	if s < 0 {
		lo, hi = hi, lo
	}
	c.Verdict = decide(lo, hi, s*t)
	c.Reason = intervalReason(c.Verdict, iv, FormatNumber(t), p.Direction, "the threshold")
	return c, nil
}

func goodSide(direction string) string {
	if direction == Maximize {
		return "≥"
	}
	return "≤"
}

// intervalReason says where the interval lies against the limit; limit is
// the formatted limit with any explanation.
func intervalReason(v Verdict, iv Interval, limit string, direction, what string) string {
	pct := strconv.FormatFloat(iv.Confidence*100, 'g', -1, 64) + "%"
	span := fmt.Sprintf("%s %s interval [%s, %s]", pct, iv.Method, FormatNumber(iv.Lower), FormatNumber(iv.Upper))
	good, bad := "below", "above"
	if direction == Maximize {
		good, bad = bad, good
	}
	switch v {
	case Pass:
		return fmt.Sprintf("%s is wholly %s %s %s", span, good, what, limit)
	case Fail:
		return fmt.Sprintf("%s is wholly %s %s %s", span, bad, what, limit)
	}
	return fmt.Sprintf("%s contains %s %s", span, what, limit)
}

// baselineCheck compares per-example losses pairwise. The regression of
// example i is sign·(candidate_i − baseline_i), positive when worse; the
// gate decides on the interval of its mean against the allowed regression.
func baselineCheck(p Policy, cand, base []float64) (Check, error) {
	s := p.sign()
	baseMean := meanOf(base)
	allowed := p.maxRegression()
	if p.relative() {
		// A zero baseline mean is handled explicitly: relative to 0, no
		// regression is allowed (never a division by zero).
		allowed = p.maxRegression() * math.Abs(baseMean)
	}
	limit := FormatNumber(allowed)
	if p.relative() {
		limit += fmt.Sprintf(" (%s × |champion mean %s|)", FormatNumber(p.maxRegression()), FormatNumber(baseMean))
	}
	c := Check{
		Name:        CheckBaseline,
		Description: fmt.Sprintf("paired regression of eval %s against the champion ≤ %s", p.Metric, FormatNumber(allowed)),
		Method:      p.Method,
		N:           len(cand),
		Confidence:  p.Confidence,
		Threshold:   num(allowed),
		Reference:   num(baseMean),
	}
	if i := firstNonFinite(cand); i >= 0 {
		c.Verdict, c.Reason = Fail, fmt.Sprintf("candidate eval.per_example[%d] is %v", i, cand[i])
		return c, nil
	}
	if i := firstNonFinite(base); i >= 0 {
		return Check{}, fmt.Errorf("baseline metrics: eval.per_example[%d] is %v: %w", i, base[i], ErrNonFinite)
	}
	d := make([]float64, len(cand))
	for i := range cand {
		d[i] = s * (cand[i] - base[i])
	}
	iv, err := p.interval(d)
	if err != nil {
		return Check{}, fmt.Errorf("baseline check: %w", err)
	}
	c.Estimate, c.Lower, c.Upper = num(iv.Estimate), num(iv.Lower), num(iv.Upper)
	c.Verdict = decide(iv.Lower, iv.Upper, allowed)
	c.Reason = intervalReason(c.Verdict, iv, limit, Minimize, "the allowed regression")
	if p.relative() && baseMean == 0 {
		c.Reason += "; the champion's mean is 0, so no regression is allowed"
	}
	tt, err := PairedTTest(d)
	if err != nil {
		return Check{}, fmt.Errorf("baseline check: %w", err)
	}
	w, err := WilcoxonSignedRank(d)
	if err != nil {
		return Check{}, fmt.Errorf("baseline check: %w", err)
	}
	c.Tests = []TestResult{tt, w}
	return c, nil
}

func healthChecks(p Policy, m *Metrics) []Check {
	train := m.Train.Loss
	final := train[len(train)-1]
	minL := minOf(train)
	bad := firstNonFiniteLoss(m)

	finiteC := Check{Name: CheckFinite, Description: "every training and evaluation loss is finite", Verdict: Pass, Reason: "all losses are finite"}
	if bad != "" {
		finiteC.Verdict, finiteC.Reason = Fail, bad+" is not finite"
	}

	k := p.Health.MaxDivergence
	limit := minL + (k-1)*math.Abs(minL) // k × min for a positive minimum
	div := Check{
		Name:        CheckDivergence,
		Description: fmt.Sprintf("final training loss ≤ %s × the minimum training loss", FormatNumber(k)),
		Estimate:    num(final),
		Threshold:   num(limit),
		Reference:   num(minL),
	}
	switch {
	case bad != "":
		div.Verdict, div.Reason = Fail, "training losses are not all finite"
	case final <= limit:
		div.Verdict, div.Reason = Pass, fmt.Sprintf("final training loss %s ≤ %s (minimum %s)", FormatNumber(final), FormatNumber(limit), FormatNumber(minL))
	default:
		div.Verdict, div.Reason = Fail, fmt.Sprintf("training diverged: final loss %s > %s (minimum %s)", FormatNumber(final), FormatNumber(limit), FormatNumber(minL))
	}

	g := p.maxGap()
	gap := Check{
		Name:        CheckGap,
		Description: fmt.Sprintf("generalisation gap (eval − final train)/|final train| ≤ %s", FormatNumber(g)),
		Threshold:   num(g),
		Reference:   num(final),
	}
	eval := m.Eval.Loss
	switch {
	case bad != "":
		gap.Verdict, gap.Reason = Fail, "losses are not all finite"
	case final == 0:
		// Relative to a zero training loss, any positive gap is unbounded.
		gap.Estimate = num(0)
		if eval <= 0 {
			gap.Verdict, gap.Reason = Pass, "final training loss and eval loss are both ≤ 0"
		} else {
			gap.Estimate = nil
			gap.Verdict, gap.Reason = Fail, fmt.Sprintf("final training loss is 0 and eval loss is %s", FormatNumber(eval))
		}
	default:
		rel := (eval - final) / math.Abs(final)
		gap.Estimate = num(rel)
		if rel <= g {
			gap.Verdict = Pass
		} else {
			gap.Verdict = Fail
		}
		gap.Reason = fmt.Sprintf("eval loss %s, final training loss %s: gap %s %s %s", FormatNumber(eval), FormatNumber(final), FormatNumber(rel), map[Verdict]string{Pass: "≤", Fail: ">"}[gap.Verdict], FormatNumber(g))
	}
	return []Check{finiteC, div, gap}
}

func firstNonFiniteLoss(m *Metrics) string {
	if i := firstNonFinite(m.Train.Loss); i >= 0 {
		return fmt.Sprintf("train.loss[%d] (%v)", i, m.Train.Loss[i])
	}
	if !finite(m.Eval.Loss) {
		return fmt.Sprintf("eval.loss (%v)", m.Eval.Loss)
	}
	if i := firstNonFinite(m.Eval.PerExample); i >= 0 {
		return fmt.Sprintf("eval.per_example[%d] (%v)", i, m.Eval.PerExample[i])
	}
	return ""
}

func firstNonFinite(x []float64) int {
	for i, v := range x {
		if !finite(v) {
			return i
		}
	}
	return -1
}

func minOf(x []float64) float64 {
	m := math.Inf(1)
	for _, v := range x {
		if v < m || math.IsNaN(v) {
			m = v
		}
	}
	return m
}

// num is a pointer to v, or nil when v is not finite (JSON has no NaN).
func num(v float64) *float64 {
	if !finite(v) {
		return nil
	}
	return &v
}

// Summary is the report in one line, for progress output.
func (r *Report) Summary() string {
	parts := make([]string, 0, len(r.Checks))
	for _, c := range r.Checks {
		if c.Name == CheckThreshold && c.Estimate != nil && c.Threshold != nil {
			parts = append(parts, fmt.Sprintf("mean %s %s, interval %s vs %s: %s", r.Metric, FormatNumber(*c.Estimate), intervalText(c), FormatNumber(*c.Threshold), c.Verdict))
			continue
		}
		if c.Verdict != Pass || c.Name == CheckBaseline {
			parts = append(parts, fmt.Sprintf("%s %s", c.Name, c.Verdict))
		}
	}
	return fmt.Sprintf("verdict %s (%s)", r.Verdict, strings.Join(parts, "; "))
}
