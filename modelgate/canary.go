package modelgate

import (
	"fmt"
	"math"
	"slices"
)

// CanaryPolicy decides one canary step from live traffic ([6/9]). The
// fields mirror deploy.analysis in modelci.yaml.
type CanaryPolicy struct {
	// MaxErrorRate is the ceiling on the canary's error rate, in [0, 1].
	// 0 leaves only the comparison with stable.
	MaxErrorRate float64
	// MaxLatencyP99Ms is the ceiling on the canary's p99 latency in
	// milliseconds; 0 means no latency check.
	MaxLatencyP99Ms float64
	// Confidence of the intervals, and 1 − the significance of the tests
	// against stable; default 0.95.
	Confidence float64
	// MaxPredictionShift is the model-quality check: the largest shift of the canary's mean
	// prediction from stable's on the same traffic, in standard deviations of stable's
	// predictions (0.25: a quarter of their spread); 0 means no check. A model that answers
	// differently from the one it replaces shows it here while its errors and latency look
	// healthy.
	MaxPredictionShift float64
	// OnInconclusive is hold (default) or fail.
	OnInconclusive string
}

// Bucket is one cumulative Prometheus histogram bucket: the number of
// observations ≤ UpperBound (seconds; the last bucket's is +Inf).
type Bucket struct {
	UpperBound float64
	Count      float64
}

// Traffic is what one version served during the analysis window.
type Traffic struct {
	Requests float64
	Errors   float64
	// Latency is the request-duration histogram, cumulative, by ascending
	// upper bound, ending with +Inf.
	Latency []Bucket
	// Samples are individual latencies in seconds, where they exist.
	Samples []float64
	// Predictions are the moments of the predictions served.
	Predictions Moments
}

// Moments summarise a sample by its count, sum and sum of squares: what counters can carry
// (serve exports them as modelci_predictions_total and the prediction sums).
type Moments struct {
	Count, Sum, SumSquares float64
}

// meanVar returns the mean and the sample variance (never negative: rounding in the sum of
// squares can make it so).
func (m Moments) meanVar() (mean, variance float64) {
	mean = m.Sum / m.Count
	variance = math.Max(0, (m.SumSquares-m.Count*mean*mean)/(m.Count-1))
	return mean, variance
}

// CanaryData is the canary's and the stable version's traffic over the same window.
type CanaryData struct {
	Canary Traffic
	Stable Traffic
}

// Canary check names.
const (
	CheckErrorRate       = "canary.error_rate"
	CheckLatencyP99      = "canary.latency_p99"
	CheckPredictionShift = "canary.prediction_shift"
)

// AnalyzeCanary decides a canary step with the gate's three verdicts.
//
// Error rate: the canary's Wilson interval against MaxErrorRate (PASS
// below, FAIL above, INCONCLUSIVE across it), with the two-proportion
// z-test against stable reported; a PASS becomes INCONCLUSIVE when the
// canary is significantly worse than stable. Latency: the canary's p99 from
// its histogram, whose bucket bounds are the interval (the true p99 lies in
// that bucket), against MaxLatencyP99Ms, with stable's p99 as reference
// and, where both have samples, a Mann–Whitney test; a PASS becomes
// INCONCLUSIVE when the canary is significantly slower.
//
// Missing data (no requests, an empty histogram) is ErrNoData, distinct
// from data that fails a check.
func AnalyzeCanary(p CanaryPolicy, d CanaryData) (*Report, error) {
	if p.Confidence == 0 {
		p.Confidence = DefaultConfidence
	}
	if p.OnInconclusive == "" {
		p.OnInconclusive = Hold
	}
	if !(p.Confidence > 0 && p.Confidence < 1) {
		return nil, fmt.Errorf("canary analysis: confidence %v: %w", p.Confidence, ErrConfidence)
	}
	if !finite(p.MaxErrorRate) || p.MaxErrorRate < 0 || p.MaxErrorRate > 1 || !finite(p.MaxLatencyP99Ms) || p.MaxLatencyP99Ms < 0 {
		return nil, fmt.Errorf("canary analysis: max_error_rate %v, max_latency_p99_ms %v: %w", p.MaxErrorRate, p.MaxLatencyP99Ms, ErrInvalidPolicy)
	}
	if !finite(p.MaxPredictionShift) || p.MaxPredictionShift < 0 {
		return nil, fmt.Errorf("canary analysis: max_prediction_shift %v: %w", p.MaxPredictionShift, ErrInvalidPolicy)
	}
	if p.OnInconclusive != Hold && p.OnInconclusive != FailOn {
		return nil, fmt.Errorf("canary analysis: on_inconclusive %q: %w", p.OnInconclusive, ErrInvalidPolicy)
	}
	er, err := errorRateCheck(p, d)
	if err != nil {
		return nil, err
	}
	r := &Report{Schema: ReportSchema, OnInconclusive: p.OnInconclusive, Checks: []Check{er}}
	if p.MaxLatencyP99Ms > 0 {
		lc, err := latencyCheck(p, d)
		if err != nil {
			return nil, err
		}
		r.Checks = append(r.Checks, lc)
	}
	if p.MaxPredictionShift > 0 {
		pc, err := predictionCheck(p, d)
		if err != nil {
			return nil, err
		}
		r.Checks = append(r.Checks, pc)
	}
	r.Verdict = overall(r.Checks)
	return r, nil
}

func errorRateCheck(p CanaryPolicy, d CanaryData) (Check, error) {
	c, s := d.Canary, d.Stable
	if c.Requests <= 0 || s.Requests <= 0 {
		return Check{}, fmt.Errorf("canary analysis: error rate: %v canary and %v stable requests: %w", c.Requests, s.Requests, ErrNoData)
	}
	iv, err := WilsonInterval(c.Errors, c.Requests, p.Confidence)
	if err != nil {
		return Check{}, fmt.Errorf("canary analysis: canary error rate: %w", err)
	}
	if s.Errors < 0 || s.Errors > s.Requests {
		return Check{}, fmt.Errorf("canary analysis: stable errors %v of %v requests: %w", s.Errors, s.Requests, ErrInvalidCounts)
	}
	tp, err := TwoProportion(c.Errors, c.Requests, s.Errors, s.Requests)
	if err != nil {
		return Check{}, fmt.Errorf("canary analysis: %w", err)
	}
	stableRate := s.Errors / s.Requests
	ch := Check{
		Name:        CheckErrorRate,
		Description: "canary error rate",
		Method:      iv.Method,
		N:           int(c.Requests),
		Estimate:    num(iv.Estimate),
		Lower:       num(iv.Lower),
		Upper:       num(iv.Upper),
		Confidence:  p.Confidence,
		Reference:   num(stableRate),
		Tests:       []TestResult{tp},
	}
	worse := tp.Statistic > 0 && tp.PValue < 1-p.Confidence
	if p.MaxErrorRate > 0 {
		ch.Description = fmt.Sprintf("canary error rate ≤ %s", FormatNumber(p.MaxErrorRate))
		ch.Threshold = num(p.MaxErrorRate)
		ch.Verdict = decide(iv.Lower, iv.Upper, p.MaxErrorRate)
		ch.Reason = intervalReason(ch.Verdict, iv, FormatNumber(p.MaxErrorRate), Minimize, "the maximum error rate")
		if ch.Verdict == Inconclusive {
			ch.Reason += "; " + needed(c.Requests, wilsonNeeded(iv.Estimate, p.MaxErrorRate, zOf(p.Confidence)))
		}
	} else {
		ch.Verdict, ch.Reason = Pass, fmt.Sprintf("canary %s is not significantly above stable %s", FormatNumber(iv.Estimate), FormatNumber(stableRate))
		if worse {
			ch.Verdict = Fail
		}
	}
	if worse {
		note := fmt.Sprintf("canary error rate %s is significantly above stable %s (p=%s)", FormatNumber(iv.Estimate), FormatNumber(stableRate), FormatNumber(tp.PValue))
		if ch.Verdict == Pass {
			ch.Verdict = Inconclusive
		}
		if p.MaxErrorRate > 0 {
			note = ch.Reason + "; " + note
		}
		ch.Reason = note
	}
	return ch, nil
}

func latencyCheck(p CanaryPolicy, d CanaryData) (Check, error) {
	q, err := HistogramQuantile(0.99, d.Canary.Latency)
	if err != nil {
		return Check{}, fmt.Errorf("canary analysis: canary latency: %w", err)
	}
	const ms = 1000
	limit := p.MaxLatencyP99Ms
	c := Check{
		Name:        CheckLatencyP99,
		Description: fmt.Sprintf("canary p99 latency ≤ %s ms", FormatNumber(limit)),
		Method:      "histogram",
		N:           int(q.Count),
		Estimate:    num(q.Value * ms),
		Lower:       num(q.Lower * ms),
		Upper:       num(q.Upper * ms),
		Threshold:   num(limit),
	}
	if len(d.Stable.Latency) > 0 {
		if sq, err := HistogramQuantile(0.99, d.Stable.Latency); err == nil {
			c.Reference = num(sq.Value * ms)
		}
	}
	c.Verdict = decide(q.Lower*ms, q.Upper*ms, limit)
	bucket := fmt.Sprintf("p99 ≈ %s ms, in the bucket (%s, %s] ms", FormatNumber(q.Value*ms), FormatNumber(q.Lower*ms), FormatNumber(q.Upper*ms))
	switch c.Verdict {
	case Pass:
		c.Reason = bucket + " ≤ " + FormatNumber(limit) + " ms"
	case Fail:
		c.Reason = bucket + " > " + FormatNumber(limit) + " ms"
	default:
		c.Reason = bucket + ", which contains " + FormatNumber(limit) + " ms"
	}
	if len(d.Canary.Samples) > 0 && len(d.Stable.Samples) > 0 {
		mw, err := MannWhitney(d.Canary.Samples, d.Stable.Samples)
		if err != nil {
			return Check{}, fmt.Errorf("canary analysis: latency samples: %w", err)
		}
		c.Tests = []TestResult{mw}
		half := float64(len(d.Canary.Samples)) * float64(len(d.Stable.Samples)) / 2
		if mw.Statistic > half && mw.PValue < 1-p.Confidence {
			c.Reason += fmt.Sprintf("; canary latencies are significantly above stable's (Mann–Whitney p=%s)", FormatNumber(mw.PValue))
			if c.Verdict == Pass {
				c.Verdict = Inconclusive
			}
		}
	}
	return c, nil
}

// predictionCheck compares the canary's mean prediction with stable's, on the same traffic,
// in units of stable's standard deviation: the interval of the shift (normal, with each
// version's own variance, as Welch's test) inside ±MaxPredictionShift is PASS, outside it
// FAIL, across it INCONCLUSIVE with the number of canary requests that would decide. Equal
// means of different distributions pass: the mean is what a shifted or rescaled model moves.
func predictionCheck(p CanaryPolicy, d CanaryData) (Check, error) {
	c, s := d.Canary.Predictions, d.Stable.Predictions
	for _, m := range []Moments{c, s} {
		if !finite(m.Count) || !finite(m.Sum) || !finite(m.SumSquares) || m.Count < 0 || m.SumSquares < 0 {
			return Check{}, fmt.Errorf("canary analysis: prediction moments %+v: %w", m, ErrInvalidCounts)
		}
	}
	if c.Count < 2 || s.Count < 2 {
		return Check{}, fmt.Errorf("canary analysis: prediction shift: %v canary and %v stable predictions: %w", c.Count, s.Count, ErrNoData)
	}
	cm, cv := c.meanVar()
	sm, sv := s.meanVar()
	tol := p.MaxPredictionShift
	ch := Check{
		Name:        CheckPredictionShift,
		Description: fmt.Sprintf("canary mean prediction within %s stable standard deviations of stable's", FormatNumber(tol)),
		Method:      "welch-z",
		N:           int(c.Count),
		Confidence:  p.Confidence,
		Threshold:   num(tol),
		Reference:   num(sm),
	}
	se := math.Sqrt(cv/c.Count + sv/s.Count)
	scale := math.Sqrt(sv)
	if scale == 0 {
		// Stable answers one number: its spread cannot be the unit. The canary's is, else
		// only equality passes.
		scale = math.Sqrt(cv)
	}
	if scale == 0 {
		ch.Estimate = num(0)
		if cm == sm {
			ch.Verdict, ch.Reason = Pass, fmt.Sprintf("canary and stable both predict %s", FormatNumber(cm))
		} else {
			ch.Estimate = num(math.Inf(1))
			ch.Verdict, ch.Reason = Fail, fmt.Sprintf("canary predicts %s, stable %s, each without spread", FormatNumber(cm), FormatNumber(sm))
		}
		return ch, nil
	}
	z := zOf(p.Confidence)
	shift := (cm - sm) / scale
	half := z * se / scale
	ch.Estimate, ch.Lower, ch.Upper = num(shift), num(shift-half), num(shift+half)
	if se > 0 {
		st := (cm - sm) / se
		ch.Tests = []TestResult{{Name: "welch-z", Statistic: st, PValue: math.Min(2*stdNormal.Survival(math.Abs(st)), 1)}}
	}
	what := fmt.Sprintf("canary mean prediction %s against stable's %s: a shift of %s standard deviations, interval [%s, %s]",
		FormatNumber(cm), FormatNumber(sm), FormatNumber(shift), FormatNumber(shift-half), FormatNumber(shift+half))
	switch {
	case shift-half >= -tol && shift+half <= tol:
		ch.Verdict, ch.Reason = Pass, what+" within ±"+FormatNumber(tol)
	case shift-half > tol || shift+half < -tol:
		ch.Verdict, ch.Reason = Fail, what+" outside ±"+FormatNumber(tol)
	default:
		// The interval narrows as 1/√n: it decides once its half-width is under the
		// estimate's distance from the tolerance, traffic split as now.
		ch.Verdict = Inconclusive
		ch.Reason = what + " across ±" + FormatNumber(tol) + "; " + needed(c.Count, c.Count*sq(half/math.Abs(tol-math.Abs(shift))))
	}
	return ch, nil
}

func zOf(confidence float64) float64 { return stdNormal.Quantile((1 + confidence) / 2) }

func sq(x float64) float64 { return x * x }

// wilsonNeeded is about how many trials a Wilson interval around rate p needs to fall on
// one side of limit: its half-width, z·√(p(1−p)/n), under |limit − p|; with no failures
// seen, its upper end z²/(n+z²) under limit.
func wilsonNeeded(p, limit, z float64) float64 {
	if p == 0 {
		return z * z * (1 - limit) / limit
	}
	return z * z * p * (1 - p) / sq(limit-p)
}

// needed says how many canary requests would decide an INCONCLUSIVE check, against have.
func needed(have, n float64) string {
	if math.IsInf(n, 0) || math.IsNaN(n) {
		return fmt.Sprintf("the estimate sits on the limit: no number of requests beyond %s decides", FormatNumber(have))
	}
	return fmt.Sprintf("too few requests: about %s canary requests would decide, %s so far", FormatNumber(math.Ceil(math.Max(n, have+1))), FormatNumber(have))
}

// Quantile is a quantile estimated from a histogram: Value interpolated as
// Prometheus's histogram_quantile does, and the bounds of the bucket it
// lies in (Upper is +Inf in the last bucket).
type Quantile struct {
	Value, Lower, Upper float64
	Count               float64 // observations in the histogram
}

// HistogramQuantile estimates the q quantile of cumulative buckets with
// Prometheus's histogram_quantile rules: linear interpolation within the
// bucket, 0 as the lower bound of the first bucket, the highest finite
// bound when the quantile lies in the +Inf bucket. No buckets or no
// observations is ErrNoData; a missing +Inf bucket or counts that fall is
// ErrInvalidCounts.
func HistogramQuantile(q float64, buckets []Bucket) (Quantile, error) {
	if !(q >= 0 && q <= 1) {
		return Quantile{}, fmt.Errorf("histogram quantile %v: want 0 to 1: %w", q, ErrInvalidPolicy)
	}
	if len(buckets) == 0 {
		return Quantile{}, fmt.Errorf("histogram: no buckets: %w", ErrNoData)
	}
	b := slices.Clone(buckets)
	slices.SortFunc(b, func(x, y Bucket) int { return cmpFloat(x.UpperBound, y.UpperBound) })
	if !math.IsInf(b[len(b)-1].UpperBound, 1) {
		return Quantile{}, fmt.Errorf("histogram: no +Inf bucket: %w", ErrInvalidCounts)
	}
	if len(b) < 2 {
		return Quantile{}, fmt.Errorf("histogram: only the +Inf bucket: %w", ErrInvalidCounts)
	}
	for i, x := range b {
		if !finite(x.Count) || x.Count < 0 || math.IsNaN(x.UpperBound) || (i > 0 && x.Count < b[i-1].Count) {
			return Quantile{}, fmt.Errorf("histogram: bucket le=%v count %v: %w", x.UpperBound, x.Count, ErrInvalidCounts)
		}
	}
	total := b[len(b)-1].Count
	if total == 0 {
		return Quantile{}, fmt.Errorf("histogram: no observations: %w", ErrNoData)
	}
	rank := q * total
	i, _ := slices.BinarySearchFunc(b, rank, func(x Bucket, r float64) int { return cmpFloat(x.Count, r) })
	if i == len(b)-1 {
		return Quantile{Value: b[len(b)-2].UpperBound, Lower: b[len(b)-2].UpperBound, Upper: math.Inf(1), Count: total}, nil
	}
	if i == 0 && b[0].UpperBound <= 0 {
		return Quantile{Value: b[0].UpperBound, Lower: b[0].UpperBound, Upper: b[0].UpperBound, Count: total}, nil
	}
	start, below := 0.0, 0.0
	if i > 0 {
		start, below = b[i-1].UpperBound, b[i-1].Count
	}
	end := b[i].UpperBound
	inBucket := b[i].Count - below
	if inBucket == 0 { // q = 0 on an empty first bucket
		return Quantile{Value: start, Lower: start, Upper: end, Count: total}, nil
	}
	return Quantile{Value: start + (end-start)*(rank-below)/inBucket, Lower: start, Upper: end, Count: total}, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
