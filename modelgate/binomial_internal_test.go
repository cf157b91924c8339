package modelgate

import (
	"math"
	"testing"
)

// The binomial sampler against the exact pmf: a chi-square test over
// cells of expected count ≥ 20 (tails pooled), at p = 0.001 via the
// Wilson–Hilferty approximation of the chi-square quantile, plus the mean
// within 4 standard errors. Both branches (inversion, BTRS) and the
// symmetry for p > 1/2 are covered.
func TestBinomialExact(t *testing.T) {
	for _, tc := range []struct {
		n int
		p float64
	}{
		{20, 0.3}, {200, 0.02}, {1000, 0.3}, {50, 0.9}, {1_000_000, 1.0 / 31}, {100, 0.5}, {40, 0.26},
	} {
		const samples = 200_000
		r := stream{splitmix(uint64(tc.n))}
		counts := make([]float64, tc.n+1)
		var sum float64
		for range samples {
			k := r.binomial(tc.n, tc.p)
			if k < 0 || k > tc.n {
				t.Fatalf("Binomial(%d, %v) gave %d", tc.n, tc.p, k)
			}
			counts[k]++
			sum += float64(k)
		}
		nf := float64(tc.n)
		mean, sd := nf*tc.p, math.Sqrt(nf*tc.p*(1-tc.p))
		if got := sum / samples; math.Abs(got-mean) > 4*sd/math.Sqrt(samples) {
			t.Errorf("Binomial(%d, %v): mean %v, want %v", tc.n, tc.p, got, mean)
		}
		pmf := func(k int) float64 {
			kf := float64(k)
			return math.Exp(lfact(nf) - lfact(kf) - lfact(nf-kf) + kf*math.Log(tc.p) + (nf-kf)*math.Log1p(-tc.p))
		}
		var chi, obs, exp float64
		cells := 0
		for k := 0; k <= tc.n; k++ {
			obs += counts[k]
			exp += samples * pmf(k)
			if exp >= 20 {
				chi += (obs - exp) * (obs - exp) / exp
				cells++
				obs, exp = 0, 0
			}
		}
		if exp > 0 { // the pooled upper tail
			chi += (obs - exp) * (obs - exp) / exp
			cells++
		}
		df := float64(cells - 1)
		limit := df * math.Pow(1-2/(9*df)+3.090*math.Sqrt(2/(9*df)), 3)
		if chi > limit {
			t.Errorf("Binomial(%d, %v): chi-square %.1f over %d cells > %.1f", tc.n, tc.p, chi, cells, limit)
		}
	}
}
