package modelgate_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

var inf = math.Inf(1)

// Buckets of 100 requests: 50 ≤ 0.1 s, 90 ≤ 0.25 s, 99 ≤ 0.5 s, all ≤ 1 s.
func hist(scale float64) []modelgate.Bucket {
	return []modelgate.Bucket{{0.1, 50 * scale}, {0.25, 90 * scale}, {0.5, 99 * scale}, {1, 100 * scale}, {inf, 100 * scale}}
}

// Values by Prometheus's histogram_quantile rules, worked by hand.
func TestHistogramQuantile(t *testing.T) {
	for _, tc := range []struct {
		q                   float64
		b                   []modelgate.Bucket
		value, lower, upper float64
	}{
		{0.5, hist(1), 0.1, 0, 0.1},                                // rank 50 ends the first bucket
		{0.7, hist(1), 0.175, 0.1, 0.25},                           // rank 70: 0.1 + 0.15·20/40
		{0.99, hist(1), 0.5, 0.25, 0.5},                            // rank 99: 0.25 + 0.25·9/9
		{0.995, hist(1), 0.75, 0.5, 1},                             // rank 99.5: 0.5 + 0.5·0.5/1
		{0.99, []modelgate.Bucket{{1, 10}, {inf, 100}}, 1, 1, inf}, // in +Inf: the highest finite bound
		{0.99, []modelgate.Bucket{{inf, 100}, {0.5, 99}, {0.25, 90}, {1, 100}, {0.1, 50}}, 0.5, 0.25, 0.5}, // any order
	} {
		got, err := modelgate.HistogramQuantile(tc.q, tc.b)
		if err != nil {
			t.Fatal(err)
		}
		if !near(got.Value, tc.value, 1e-12) || got.Lower != tc.lower || got.Upper != tc.upper {
			t.Errorf("q=%v: %+v, want %v in (%v, %v]", tc.q, got, tc.value, tc.lower, tc.upper)
		}
	}
	for _, tc := range []struct {
		name string
		b    []modelgate.Bucket
		want error
	}{
		{"no buckets", nil, modelgate.ErrNoData},
		{"no observations", []modelgate.Bucket{{0.1, 0}, {inf, 0}}, modelgate.ErrNoData},
		{"no +Inf", []modelgate.Bucket{{0.1, 5}, {1, 10}}, modelgate.ErrInvalidCounts},
		{"falling counts", []modelgate.Bucket{{0.1, 5}, {1, 3}, {inf, 10}}, modelgate.ErrInvalidCounts},
	} {
		if _, err := modelgate.HistogramQuantile(0.99, tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestAnalyzeCanary(t *testing.T) {
	stable := modelgate.Traffic{Requests: 100000, Errors: 100, Latency: hist(1000)}
	p := modelgate.CanaryPolicy{MaxErrorRate: 0.01, MaxLatencyP99Ms: 600}
	for _, tc := range []struct {
		name             string
		p                modelgate.CanaryPolicy
		canary           modelgate.Traffic
		errRate, latency modelgate.Verdict
	}{
		// 0.1% errors over 10,000 requests: Wilson upper ≈ 0.18% < 1%; p99 bucket (0.25, 0.5] s < 600 ms.
		{"healthy", p, modelgate.Traffic{Requests: 10000, Errors: 10, Latency: hist(100)}, modelgate.Pass, modelgate.Pass},
		// 5% errors: the interval lies above 1%.
		{"erroring", p, modelgate.Traffic{Requests: 10000, Errors: 500, Latency: hist(100)}, modelgate.Fail, modelgate.Pass},
		// 1 error in 50: the interval straddles 1%.
		{"too little traffic", p, modelgate.Traffic{Requests: 50, Errors: 1, Latency: hist(0.5)}, modelgate.Inconclusive, modelgate.Pass},
		// 0.5% errors, under the ceiling but significantly above stable's 0.1%.
		{"worse than stable", p, modelgate.Traffic{Requests: 20000, Errors: 100, Latency: hist(200)}, modelgate.Inconclusive, modelgate.Pass},
		// p99 in (0.5, 1] s against 600 ms: contains the limit.
		{"slow tail", p, modelgate.Traffic{Requests: 10000, Errors: 10, Latency: []modelgate.Bucket{{0.1, 5000}, {0.5, 9800}, {1, 10000}, {inf, 10000}}}, modelgate.Pass, modelgate.Inconclusive},
		// p99 in (1, 2.5] s against 600 ms.
		{"slow", p, modelgate.Traffic{Requests: 10000, Errors: 10, Latency: []modelgate.Bucket{{0.5, 5000}, {1, 9000}, {2.5, 10000}, {inf, 10000}}}, modelgate.Pass, modelgate.Fail},
		// No ceiling on errors: only significantly worse than stable fails.
		{"comparison only", modelgate.CanaryPolicy{MaxLatencyP99Ms: 600}, modelgate.Traffic{Requests: 20000, Errors: 100, Latency: hist(200)}, modelgate.Fail, modelgate.Pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := modelgate.AnalyzeCanary(tc.p, modelgate.CanaryData{Canary: tc.canary, Stable: stable})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Checks) != 2 {
				t.Fatalf("checks %+v", r.Checks)
			}
			er, lat := r.Checks[0], r.Checks[1]
			if er.Name != modelgate.CheckErrorRate || er.Verdict != tc.errRate || lat.Name != modelgate.CheckLatencyP99 || lat.Verdict != tc.latency {
				t.Errorf("error rate %s (%s), latency %s (%s); want %s, %s", er.Verdict, er.Reason, lat.Verdict, lat.Reason, tc.errRate, tc.latency)
			}
			if len(er.Tests) != 1 || er.Tests[0].Name != "two-proportion-z" || *er.Reference != 0.001 {
				t.Errorf("error-rate test %+v, reference %v", er.Tests, er.Reference)
			}
			if lat.Reference == nil || *lat.Reference != 500 {
				t.Errorf("stable p99 %v, want 500 ms", lat.Reference)
			}
		})
	}
}

// Latency samples add a Mann–Whitney test; a canary slower than stable
// turns a PASS into INCONCLUSIVE.
func TestAnalyzeCanarySamples(t *testing.T) {
	slow, fast := make([]float64, 200), make([]float64, 200)
	for i := range slow {
		fast[i] = 0.05 + float64(i)*0.0005
		slow[i] = fast[i] + 0.03
	}
	d := modelgate.CanaryData{
		Canary: modelgate.Traffic{Requests: 10000, Errors: 10, Latency: hist(100), Samples: slow},
		Stable: modelgate.Traffic{Requests: 10000, Errors: 10, Latency: hist(100), Samples: fast},
	}
	r, err := modelgate.AnalyzeCanary(modelgate.CanaryPolicy{MaxErrorRate: 0.01, MaxLatencyP99Ms: 600}, d)
	if err != nil {
		t.Fatal(err)
	}
	lat := r.Checks[1]
	if lat.Verdict != modelgate.Inconclusive || len(lat.Tests) != 1 || lat.Tests[0].PValue > 0.001 || r.Decision() != modelgate.Held {
		t.Errorf("latency %s, tests %+v, decision %s", lat.Verdict, lat.Tests, r.Decision())
	}
	d.Canary.Samples = fast
	if r, err = modelgate.AnalyzeCanary(modelgate.CanaryPolicy{MaxErrorRate: 0.01, MaxLatencyP99Ms: 600}, d); err != nil || r.Verdict != modelgate.Pass {
		t.Errorf("same samples: %v, %v", r.Verdict, err)
	}
}

// Missing data is its own error, not a failing verdict.
func TestAnalyzeCanaryNoData(t *testing.T) {
	p := modelgate.CanaryPolicy{MaxErrorRate: 0.01, MaxLatencyP99Ms: 600}
	ok := modelgate.Traffic{Requests: 100, Errors: 1, Latency: hist(1)}
	for _, tc := range []struct {
		name string
		d    modelgate.CanaryData
		want error
	}{
		{"no canary requests", modelgate.CanaryData{Canary: modelgate.Traffic{Latency: hist(1)}, Stable: ok}, modelgate.ErrNoData},
		{"no stable requests", modelgate.CanaryData{Canary: ok, Stable: modelgate.Traffic{}}, modelgate.ErrNoData},
		{"no canary histogram", modelgate.CanaryData{Canary: modelgate.Traffic{Requests: 100}, Stable: ok}, modelgate.ErrNoData},
		{"more errors than requests", modelgate.CanaryData{Canary: modelgate.Traffic{Requests: 10, Errors: 11, Latency: hist(1)}, Stable: ok}, modelgate.ErrInvalidCounts},
	} {
		if _, err := modelgate.AnalyzeCanary(p, tc.d); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := modelgate.AnalyzeCanary(modelgate.CanaryPolicy{Confidence: 2}, modelgate.CanaryData{Canary: ok, Stable: ok}); !errors.Is(err, modelgate.ErrConfidence) {
		t.Errorf("confidence 2: %v", err)
	}
}

// moments of n predictions with the given mean and standard deviation.
func moments(n, mean, sd float64) modelgate.Moments {
	return modelgate.Moments{Count: n, Sum: n * mean, SumSquares: (n-1)*sd*sd + n*mean*mean}
}

// The prediction-shift check, worked by hand: stable predicts mean 150, sd 50; the shift is
// (canary mean − 150)/50 and its 95% half-width 1.96·√(sd_c²/n_c + 50²/n_s)/50.
func TestAnalyzeCanaryPredictionShift(t *testing.T) {
	p := modelgate.CanaryPolicy{MaxPredictionShift: 0.25}
	traffic := func(n float64, m modelgate.Moments) modelgate.Traffic {
		return modelgate.Traffic{Requests: n, Predictions: m}
	}
	for _, tc := range []struct {
		name            string
		canary          modelgate.Moments
		verdict         modelgate.Verdict
		estimate, lower float64
	}{
		// 0 ± 1.96·√(2/1000) = ±0.0877, inside ±0.25.
		{"as good", moments(1000, 150, 50), modelgate.Pass, 0, -0.08765},
		// The same model with its bias off by one standard deviation: 1 ± 0.0877.
		{"shifted", moments(1000, 200, 50), modelgate.Fail, 1, 0.9123},
		// Shifted down as far.
		{"shifted down", moments(1000, 100, 50), modelgate.Fail, -1, -1.0877},
		// 0 ± 1.96·√(2/20) = ±0.6198 crosses ±0.25.
		{"thin", moments(20, 150, 50), modelgate.Inconclusive, 0, -0.6198},
	} {
		stable := moments(tc.canary.Count, 150, 50)
		rep, err := modelgate.AnalyzeCanary(p, modelgate.CanaryData{Canary: traffic(tc.canary.Count, tc.canary), Stable: traffic(tc.canary.Count, stable)})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c := rep.Checks[len(rep.Checks)-1]
		if c.Name != modelgate.CheckPredictionShift || c.Verdict != tc.verdict || !near(*c.Estimate, tc.estimate, 1e-9) || !near(*c.Lower, tc.lower, 1e-4) {
			t.Errorf("%s: %s %s estimate %v lower %v; want %s %v %v (%s)", tc.name, c.Name, c.Verdict, *c.Estimate, *c.Lower, tc.verdict, tc.estimate, tc.lower, c.Reason)
		}
		if rep.Verdict != tc.verdict {
			t.Errorf("%s: report %s; want %s", tc.name, rep.Verdict, tc.verdict)
		}
	}

	// Thin traffic says how many requests would decide: (0.6198/0.25)²·20 ≈ 123, and that
	// many decide.
	rep, err := modelgate.AnalyzeCanary(p, modelgate.CanaryData{Canary: traffic(20, moments(20, 150, 50)), Stable: traffic(20, moments(20, 150, 50))})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Checks[1].Reason; !strings.Contains(r, "about 123 canary requests would decide, 20 so far") {
		t.Errorf("thin traffic: %q; want it to say 123 requests would decide", r)
	}
	rep, err = modelgate.AnalyzeCanary(p, modelgate.CanaryData{Canary: traffic(123, moments(123, 150, 50)), Stable: traffic(123, moments(123, 150, 50))})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checks[1].Verdict != modelgate.Pass {
		t.Errorf("with the requests it asked for: %s: %s", rep.Checks[1].Verdict, rep.Checks[1].Reason)
	}

	// Fewer than two predictions on either side is missing data, not a verdict.
	_, err = modelgate.AnalyzeCanary(p, modelgate.CanaryData{Canary: traffic(1, moments(1, 150, 0)), Stable: traffic(100, moments(100, 150, 50))})
	if !errors.Is(err, modelgate.ErrNoData) {
		t.Errorf("one canary prediction: %v; want ErrNoData", err)
	}
	if _, err := modelgate.AnalyzeCanary(modelgate.CanaryPolicy{MaxPredictionShift: -1}, modelgate.CanaryData{}); !errors.Is(err, modelgate.ErrInvalidPolicy) {
		t.Errorf("negative max_prediction_shift: %v; want ErrInvalidPolicy", err)
	}
}

// An error rate whose interval straddles the ceiling says how many requests would decide:
// no failures in 20 requests against 5% needs about 1.96²·0.95/0.05 ≈ 73.
func TestAnalyzeCanaryErrorRateNeeds(t *testing.T) {
	rep, err := modelgate.AnalyzeCanary(modelgate.CanaryPolicy{MaxErrorRate: 0.05}, modelgate.CanaryData{
		Canary: modelgate.Traffic{Requests: 20}, Stable: modelgate.Traffic{Requests: 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Checks[0]; c.Verdict != modelgate.Inconclusive || !strings.Contains(c.Reason, "about 73 canary requests would decide, 20 so far") {
		t.Errorf("%s: %q; want INCONCLUSIVE naming 73 requests", c.Verdict, c.Reason)
	}
	rep, err = modelgate.AnalyzeCanary(modelgate.CanaryPolicy{MaxErrorRate: 0.05}, modelgate.CanaryData{
		Canary: modelgate.Traffic{Requests: 73}, Stable: modelgate.Traffic{Requests: 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Checks[0]; c.Verdict != modelgate.Pass {
		t.Errorf("73 requests, none failed: %s: %s", c.Verdict, c.Reason)
	}
}
