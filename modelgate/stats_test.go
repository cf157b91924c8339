package modelgate_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

// erfcP is the two-sided normal p-value of z, computed from math.Erfc
// rather than the package's normal distribution.
func erfcP(z float64) float64 { return math.Erfc(math.Abs(z) / math.Sqrt2) }

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// Student t quantiles from a published table (e.g. NIST/SEMATECH
// e-Handbook, table 1.3.6.7.2), three decimals.
func TestTQuantileTable(t *testing.T) {
	for _, tc := range []struct {
		p, df, want float64
	}{
		{0.975, 1, 12.706}, {0.975, 2, 4.303}, {0.975, 3, 3.182}, {0.975, 4, 2.776},
		{0.975, 5, 2.571}, {0.975, 10, 2.228}, {0.975, 20, 2.086}, {0.975, 30, 2.042},
		{0.975, 60, 2.000}, {0.975, 100, 1.984},
		{0.95, 10, 1.812}, {0.95, 30, 1.697}, {0.995, 10, 3.169}, {0.995, 30, 2.750},
		{0.90, 5, 1.476}, {0.99, 20, 2.528},
	} {
		if got := modelgate.TQuantile(tc.p, tc.df); !near(got, tc.want, 0.0005+1e-9) {
			t.Errorf("TQuantile(%v, %v) = %.5f, want %.3f", tc.p, tc.df, got, tc.want)
		}
	}
}

func seq(n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = float64(i + 1)
	}
	return x
}

// For 1..n the sample variance is n(n+1)/12, so the interval is
// (n+1)/2 ± t·sqrt((n+1)/12) with t from the table.
func TestTIntervalClosedForm(t *testing.T) {
	for _, tc := range []struct {
		n    int
		conf float64
		t    float64 // published t_{(1+conf)/2, n−1}
	}{
		{11, 0.95, 2.228}, {31, 0.95, 2.042}, {11, 0.99, 3.169}, {21, 0.95, 2.086}, {31, 0.90, 1.697},
	} {
		iv, err := modelgate.TInterval(seq(tc.n), tc.conf)
		if err != nil {
			t.Fatal(err)
		}
		n := float64(tc.n)
		mean, se := (n+1)/2, math.Sqrt((n+1)/12)
		tol := 0.0005*se + 1e-9
		if !near(iv.Estimate, mean, 1e-12) || !near(iv.Lower, mean-tc.t*se, tol) || !near(iv.Upper, mean+tc.t*se, tol) {
			t.Errorf("n=%d conf=%v: got [%v, %v] around %v, want %v ± %v", tc.n, tc.conf, iv.Lower, iv.Upper, iv.Estimate, mean, tc.t*se)
		}
		if iv.Method != modelgate.MethodT || iv.N != tc.n {
			t.Errorf("n=%d: method %q, N %d", tc.n, iv.Method, iv.N)
		}
	}
}

// Coverage of the t interval on normal data: within ±1.5% of nominal over 2,000 trials.
func TestTIntervalCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, tc := range []struct {
		n    int
		conf float64
	}{{10, 0.95}, {30, 0.95}, {30, 0.90}} {
		const trials, mu = 2000, 3.0
		covered := 0
		x := make([]float64, tc.n)
		for range trials {
			for i := range x {
				x[i] = mu + 2*rng.NormFloat64()
			}
			iv, err := modelgate.TInterval(x, tc.conf)
			if err != nil {
				t.Fatal(err)
			}
			if iv.Lower <= mu && mu <= iv.Upper {
				covered++
			}
		}
		if got := float64(covered) / trials; math.Abs(got-tc.conf) > 0.015 {
			t.Errorf("n=%d: coverage %.4f, want %.2f ± 0.015", tc.n, got, tc.conf)
		}
	}
}

func TestIntervalsShrinkWithN(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	all := make([]float64, 20000)
	for i := range all {
		all[i] = rng.ExpFloat64() * 100
	}
	for _, method := range []string{modelgate.MethodT, modelgate.MethodBootstrap, modelgate.MethodPercentile} {
		prev := math.Inf(1)
		for _, n := range []int{20, 200, 2000, 20000} {
			var iv modelgate.Interval
			var err error
			if method == modelgate.MethodT {
				iv, err = modelgate.TInterval(all[:n], 0.95)
			} else {
				iv, err = modelgate.BootstrapInterval(all[:n], 0.95, 1000, 3, method == modelgate.MethodBootstrap)
			}
			if err != nil {
				t.Fatal(err)
			}
			w := iv.Upper - iv.Lower
			if !(w > 0 && w < prev) {
				t.Errorf("%s n=%d: width %v, previous %v", method, n, w, prev)
			}
			prev = w
		}
	}
}

// Critical values of the Wilcoxon signed-rank statistic from the published
// table (two-sided; reject when T ≤ the value): the exact null
// distribution must put at most α on T ≤ c and more than α on T ≤ c+1.
func TestWilcoxonCriticalValues(t *testing.T) {
	crit05 := map[int]int{6: 0, 7: 2, 8: 3, 9: 5, 10: 8, 11: 10, 12: 13, 13: 17, 14: 21, 15: 25, 16: 29, 17: 34, 18: 40, 19: 46, 20: 52, 25: 89, 30: 137}
	crit01 := map[int]int{8: 0, 9: 1, 10: 3, 11: 5, 12: 7, 13: 9, 14: 12, 15: 15, 16: 19, 17: 23, 18: 27, 19: 32, 20: 37}
	for alpha, table := range map[float64]map[int]int{0.05: crit05, 0.01: crit01} {
		for n, c := range table {
			at, above := 2*modelgate.WilcoxonExactCDF(n, c), 2*modelgate.WilcoxonExactCDF(n, c+1)
			if !(at <= alpha && above > alpha) {
				t.Errorf("alpha %v n=%d: P(T≤%d)·2 = %.5f, P(T≤%d)·2 = %.5f", alpha, n, c, at, c+1, above)
			}
		}
	}
}

func TestWilcoxonExact(t *testing.T) {
	for _, tc := range []struct {
		name  string
		d     []float64
		w     float64
		p     float64
		exact bool
	}{
		// All positive: only one of 2^n sign patterns is as extreme each way.
		{"n5 all positive", []float64{1, 2, 3, 4, 5}, 15, 2.0 / 32, true},
		{"n6 all positive", []float64{0.5, 1.5, 2.5, 3.5, 4.5, 5.5}, 21, 2.0 / 64, true},
		{"n6 all negative", []float64{-1, -2, -3, -4, -5, -6}, 0, 2.0 / 64, true},
		// W− = 6: subsets of {1..6} with sum ≤ 6 number 14.
		{"n6 one negative", []float64{1, 2, 3, 4, 5, -6}, 15, 28.0 / 64, true},
		// Zeros are dropped: n = 5.
		{"zeros dropped", []float64{0, 0, 1, 2, 3, 4, 5}, 15, 2.0 / 32, true},
		// Symmetric: W+ = 5 of 10, p = 1.
		{"n4 balanced", []float64{1, -2, -3, 4}, 5, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := modelgate.WilcoxonSignedRank(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			if r.Statistic != tc.w || !near(r.PValue, tc.p, 1e-12) || r.Exact != tc.exact {
				t.Errorf("got W+=%v p=%v exact=%v, want W+=%v p=%v exact=%v", r.Statistic, r.PValue, r.Exact, tc.w, tc.p, tc.exact)
			}
		})
	}
}

// Normal approximation with the tie correction, zeros dropped and a
// continuity correction, computed by hand:
// non-zero |d| = 1,1,1,2,2,2,3,4,5,6,7 (n = 11); W+ = 55; mean 33;
// variance 11·12·23/24 − (24+24)/48 = 125.5.
func TestWilcoxonNormalApproximation(t *testing.T) {
	d := []float64{0, 1, 1, -1, 2, 2, 2, 3, 4, -5, 6, 7}
	r, err := modelgate.WilcoxonSignedRank(d)
	if err != nil {
		t.Fatal(err)
	}
	want := erfcP((55 - 33 - 0.5) / math.Sqrt(125.5))
	if r.Statistic != 55 || r.Exact || !near(r.PValue, want, 1e-9) {
		t.Errorf("got W+=%v p=%v exact=%v, want 55, %v, false", r.Statistic, r.PValue, r.Exact, want)
	}
	// Large n without ties: 60 values 1..60, all positive but the largest ten.
	d = seq(60)
	for i := 50; i < 60; i++ {
		d[i] = -d[i]
	}
	r, err = modelgate.WilcoxonSignedRank(d)
	if err != nil {
		t.Fatal(err)
	}
	wPlus := 50.0 * 51 / 2
	mean, variance := 60.0*61/4, 60.0*61*121/24
	if want := erfcP((math.Abs(wPlus-mean) - 0.5) / math.Sqrt(variance)); r.Statistic != wPlus || r.Exact || !near(r.PValue, want, 1e-9) {
		t.Errorf("n=60: got W+=%v p=%v exact=%v, want %v, %v", r.Statistic, r.PValue, r.Exact, wPlus, want)
	}
}

func TestPairedTTest(t *testing.T) {
	// d = 1..11 − 3: mean 3, sd √11, t = 3/(√11/√11) = 3, df 10.
	d := seq(11)
	for i := range d {
		d[i] -= 3
	}
	r, err := modelgate.PairedTTest(d)
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.Statistic, 3, 1e-12) {
		t.Errorf("t = %v, want 3", r.Statistic)
	}
	// Table: t_{0.995,10} = 3.169 > 3 > t_{0.99,10} = 2.764, so 0.01 < p < 0.02.
	if !(r.PValue > 0.01 && r.PValue < 0.02) {
		t.Errorf("p = %v, want between 0.01 and 0.02", r.PValue)
	}
	r, err = modelgate.PairedTTest([]float64{0, 0, 0})
	if err != nil || r.PValue != 1 {
		t.Errorf("all-zero differences: %+v, %v; want p = 1", r, err)
	}
}

func TestMannWhitney(t *testing.T) {
	a, b := seq(10), seq(10)
	for i := range a {
		a[i] += 100
	}
	r, err := modelgate.MannWhitney(a, b)
	if err != nil {
		t.Fatal(err)
	}
	// U = 100 of 100 pairs; mean 50; variance 10·10·21/12 = 175.
	if want := erfcP((50 - 0.5) / math.Sqrt(175)); r.Statistic != 100 || !near(r.PValue, want, 1e-9) {
		t.Errorf("got U=%v p=%v, want 100, %v", r.Statistic, r.PValue, want)
	}
	// Ties: a = {1,2,2}, b = {2,3}. Ranks: 1→1, 2,2,2→3, 3→5; Ra = 7, U = 1;
	// variance 3·2/12·(6 − 24/20) = 2.4.
	r, err = modelgate.MannWhitney([]float64{1, 2, 2}, []float64{2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if want := erfcP((3 - 1 - 0.5) / math.Sqrt(2.4)); r.Statistic != 1 || !near(r.PValue, want, 1e-9) {
		t.Errorf("ties: got U=%v p=%v, want 1, %v", r.Statistic, r.PValue, want)
	}
	if _, err := modelgate.MannWhitney(nil, b); !errors.Is(err, modelgate.ErrNoData) {
		t.Errorf("no samples: %v, want ErrNoData", err)
	}
}

func TestTwoProportion(t *testing.T) {
	r, err := modelgate.TwoProportion(30, 1000, 10, 1000)
	if err != nil {
		t.Fatal(err)
	}
	z := 0.02 / math.Sqrt(0.02*0.98*(2.0/1000))
	if !near(r.Statistic, z, 1e-12) || !near(r.PValue, erfcP(z), 1e-12) {
		t.Errorf("got z=%v p=%v, want %v, %v", r.Statistic, r.PValue, z, erfcP(z))
	}
	if _, err := modelgate.TwoProportion(1, 0, 1, 10); !errors.Is(err, modelgate.ErrNoData) {
		t.Errorf("no requests: %v, want ErrNoData", err)
	}
	if _, err := modelgate.TwoProportion(11, 10, 1, 10); !errors.Is(err, modelgate.ErrInvalidCounts) {
		t.Errorf("more errors than requests: %v, want ErrInvalidCounts", err)
	}
}

func TestWilsonInterval(t *testing.T) {
	// 0 of 100 at 95%: upper = (z²/n)/(1 + z²/n) ≈ 0.0370, lower 0.
	iv, err := modelgate.WilsonInterval(0, 100, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	z2 := 1.959963984540054 * 1.959963984540054 / 100
	if iv.Lower != 0 || !near(iv.Upper, z2/(1+z2), 1e-12) || !near(iv.Upper, 0.0370, 0.00005) {
		t.Errorf("0/100: [%v, %v]", iv.Lower, iv.Upper)
	}
	// 50 of 100: centre 0.5, half-width z·sqrt(0.25/n + z²/(4n²))/(1+z²/n).
	iv, err = modelgate.WilsonInterval(50, 100, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	z := 1.959963984540054
	half := z * math.Sqrt(0.25/100+z*z/40000) / (1 + z*z/100)
	if !near(iv.Lower, 0.5-half, 1e-12) || !near(iv.Upper, 0.5+half, 1e-12) {
		t.Errorf("50/100: [%v, %v], want 0.5 ± %v", iv.Lower, iv.Upper, half)
	}
}

func TestSampleErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		x    []float64
		conf float64
		want error
	}{
		{"empty", nil, 0.95, modelgate.ErrEmptyPerExample},
		{"one value", []float64{1}, 0.95, modelgate.ErrTooFewValues},
		{"NaN", []float64{1, math.NaN()}, 0.95, modelgate.ErrNonFinite},
		{"Inf", []float64{1, math.Inf(-1)}, 0.95, modelgate.ErrNonFinite},
		{"confidence 0", []float64{1, 2}, 0, modelgate.ErrConfidence},
		{"confidence 1", []float64{1, 2}, 1, modelgate.ErrConfidence},
		{"confidence NaN", []float64{1, 2}, math.NaN(), modelgate.ErrConfidence},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := modelgate.TInterval(tc.x, tc.conf); !errors.Is(err, tc.want) {
				t.Errorf("TInterval: %v, want %v", err, tc.want)
			}
			if _, err := modelgate.BootstrapInterval(tc.x, tc.conf, 10, 1, true); !errors.Is(err, tc.want) {
				t.Errorf("BootstrapInterval: %v, want %v", err, tc.want)
			}
		})
	}
}
