package modelgate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// checkSample refuses what no interval can be computed from.
func checkSample(x []float64, confidence float64) error {
	if len(x) == 0 {
		return ErrEmptyPerExample
	}
	if len(x) < 2 {
		return fmt.Errorf("%d value, need at least 2: %w", len(x), ErrTooFewValues)
	}
	if !(confidence > 0 && confidence < 1) {
		return fmt.Errorf("confidence %v: %w", confidence, ErrConfidence)
	}
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("value %d is %v: %w", i, v, ErrNonFinite)
		}
	}
	return nil
}

func meanOf(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// TInterval is Student's t confidence interval for the mean of x:
// mean ± t_{(1+c)/2, n−1} · s/√n.
func TInterval(x []float64, confidence float64) (Interval, error) {
	if err := checkSample(x, confidence); err != nil {
		return Interval{}, err
	}
	mean, sd := stat.MeanStdDev(x, nil)
	n := float64(len(x))
	half := TQuantile((1+confidence)/2, n-1) * sd / math.Sqrt(n)
	return Interval{Estimate: mean, Lower: mean - half, Upper: mean + half, Confidence: confidence, Method: MethodT, N: len(x)}, nil
}

// TQuantile is the p quantile of Student's t distribution with df degrees of freedom.
func TQuantile(p, df float64) float64 {
	return distuv.StudentsT{Mu: 0, Sigma: 1, Nu: df}.Quantile(p)
}

// TestResult is a hypothesis test: its statistic and two-sided p-value.
type TestResult struct {
	Name      string  `json:"name"`
	Statistic float64 `json:"statistic"`
	PValue    float64 `json:"p_value"`
	// Exact is true when the p-value comes from the exact null distribution,
	// false for a normal approximation.
	Exact bool `json:"exact"`
}

// PairedTTest tests whether the mean of the paired differences d is zero.
// The statistic is t = mean/(s/√n); the p-value is two-sided. Differences
// that are all equal give t = ±Inf (p = 0) unless they are all zero
// (t = 0, p = 1).
func PairedTTest(d []float64) (TestResult, error) {
	if err := checkSample(d, 0.5); err != nil {
		return TestResult{}, err
	}
	mean, sd := stat.MeanStdDev(d, nil)
	n := float64(len(d))
	r := TestResult{Name: "paired-t"}
	switch {
	case sd == 0 && mean == 0:
		r.Statistic, r.PValue = 0, 1
	case sd == 0:
		r.Statistic, r.PValue = math.Copysign(math.Inf(1), mean), 0
	default:
		r.Statistic = mean / (sd / math.Sqrt(n))
		r.PValue = 2 * distuv.StudentsT{Mu: 0, Sigma: 1, Nu: n - 1}.Survival(math.Abs(r.Statistic))
	}
	r.PValue = math.Min(r.PValue, 1)
	return r, nil
}

// maxExactWilcoxon bounds the exact null distribution's size (sums up to n(n+1)/2).
const maxExactWilcoxon = 50

// WilcoxonSignedRank tests whether the paired differences d are symmetric
// about zero. Zero differences are dropped (Wilcoxon's method); the
// statistic is W+, the sum of the ranks of the positive differences
// (average ranks for ties). Without ties and with at most 50 non-zero
// differences the two-sided p-value is exact; otherwise it is the normal
// approximation with the tie correction of the variance and a continuity
// correction.
func WilcoxonSignedRank(d []float64) (TestResult, error) {
	if err := checkSample(d, 0.5); err != nil {
		return TestResult{}, err
	}
	abs := make([]float64, 0, len(d))
	pos := make([]bool, 0, len(d))
	type pair struct {
		a   float64
		pos bool
	}
	ps := make([]pair, 0, len(d))
	for _, v := range d {
		if v != 0 {
			ps = append(ps, pair{math.Abs(v), v > 0})
		}
	}
	slices.SortFunc(ps, func(x, y pair) int { return cmp.Compare(x.a, y.a) })
	for _, p := range ps {
		abs = append(abs, p.a)
		pos = append(pos, p.pos)
	}
	n := len(abs)
	r := TestResult{Name: "wilcoxon-signed-rank"}
	if n == 0 {
		r.PValue = 1
		r.Exact = true
		return r, nil
	}
	ranks, tieTerm := averageRanks(abs)
	var wPlus float64
	for i, p := range pos {
		if p {
			wPlus += ranks[i]
		}
	}
	r.Statistic = wPlus
	if tieTerm == 0 && n <= maxExactWilcoxon {
		r.Exact = true
		r.PValue = wilcoxonExactTwoSided(n, int(math.Round(wPlus)))
		return r, nil
	}
	nf := float64(n)
	mean := nf * (nf + 1) / 4
	variance := nf*(nf+1)*(2*nf+1)/24 - tieTerm/48
	r.PValue = normalTwoSided(wPlus-mean, variance)
	return r, nil
}

// averageRanks ranks sorted values 1..n, giving ties their average rank, and
// returns Σ(t³ − t) over the groups of t ties.
func averageRanks(sorted []float64) ([]float64, float64) {
	ranks := make([]float64, len(sorted))
	var tie float64
	for i := 0; i < len(sorted); {
		j := i + 1
		for j < len(sorted) && sorted[j] == sorted[i] {
			j++
		}
		avg := float64(i+j+1) / 2 // mean of ranks i+1..j
		for k := i; k < j; k++ {
			ranks[k] = avg
		}
		if t := float64(j - i); t > 1 {
			tie += t*t*t - t
		}
		i = j
	}
	return ranks, tie
}

// normalTwoSided is the two-sided p-value of a deviation from the mean under
// a normal approximation, with a continuity correction of 1/2.
func normalTwoSided(dev, variance float64) float64 {
	if variance <= 0 {
		if dev == 0 {
			return 1
		}
		return 0
	}
	z := math.Max(math.Abs(dev)-0.5, 0) / math.Sqrt(variance)
	return math.Min(2*stdNormal.Survival(z), 1)
}

// WilcoxonExactCDF is P(W+ ≤ w) under the null hypothesis for n non-zero,
// untied differences: the number of subsets of {1..n} whose sum is at most
// w, over 2^n.
func WilcoxonExactCDF(n, w int) float64 {
	counts := wilcoxonCounts(n)
	if w < 0 {
		return 0
	}
	var c float64
	for s := 0; s <= w && s < len(counts); s++ {
		c += counts[s]
	}
	return math.Min(c/math.Exp2(float64(n)), 1)
}

// wilcoxonCounts[s] is the number of subsets of {1..n} summing to s.
func wilcoxonCounts(n int) []float64 {
	maxSum := n * (n + 1) / 2
	c := make([]float64, maxSum+1)
	c[0] = 1
	top := 0
	for k := 1; k <= n; k++ {
		top += k
		for s := top; s >= k; s-- {
			c[s] += c[s-k]
		}
	}
	return c
}

func wilcoxonExactTwoSided(n, w int) float64 {
	maxSum := n * (n + 1) / 2
	// The null distribution is symmetric about n(n+1)/4; take the nearer tail.
	lower := min(w, maxSum-w)
	return math.Min(2*WilcoxonExactCDF(n, lower), 1)
}

// MannWhitney tests whether samples a and b come from the same
// distribution. The statistic is U for a (the number of pairs with a > b,
// ties counting half); the two-sided p-value is the normal approximation
// with the tie correction and a continuity correction.
func MannWhitney(a, b []float64) (TestResult, error) {
	if len(a) == 0 || len(b) == 0 {
		return TestResult{}, fmt.Errorf("mann-whitney: %d and %d samples: %w", len(a), len(b), ErrNoData)
	}
	type obs struct {
		v     float64
		fromA bool
	}
	all := make([]obs, 0, len(a)+len(b))
	for _, v := range a {
		all = append(all, obs{v, true})
	}
	for _, v := range b {
		all = append(all, obs{v, false})
	}
	for _, o := range all {
		if math.IsNaN(o.v) || math.IsInf(o.v, 0) {
			return TestResult{}, fmt.Errorf("mann-whitney: sample %v: %w", o.v, ErrNonFinite)
		}
	}
	slices.SortFunc(all, func(x, y obs) int { return cmp.Compare(x.v, y.v) })
	vals := make([]float64, len(all))
	for i, o := range all {
		vals[i] = o.v
	}
	ranks, tie := averageRanks(vals)
	var ra float64
	for i, o := range all {
		if o.fromA {
			ra += ranks[i]
		}
	}
	n1, n2 := float64(len(a)), float64(len(b))
	u := ra - n1*(n1+1)/2
	n := n1 + n2
	variance := n1 * n2 / 12 * ((n + 1) - tie/(n*(n-1)))
	return TestResult{Name: "mann-whitney-u", Statistic: u, PValue: normalTwoSided(u-n1*n2/2, variance)}, nil
}

// TwoProportion is the pooled two-proportion z-test of x1/n1 against x2/n2.
// The statistic is z for p1 − p2; the p-value is two-sided.
func TwoProportion(x1, n1, x2, n2 float64) (TestResult, error) {
	if n1 <= 0 || n2 <= 0 {
		return TestResult{}, fmt.Errorf("two-proportion test: %v and %v trials: %w", n1, n2, ErrNoData)
	}
	for _, v := range []float64{x1, n1, x2, n2} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return TestResult{}, fmt.Errorf("two-proportion test: count %v: %w", v, ErrNonFinite)
		}
	}
	if x1 > n1 || x2 > n2 {
		return TestResult{}, fmt.Errorf("two-proportion test: more errors than requests (%v/%v, %v/%v): %w", x1, n1, x2, n2, ErrInvalidCounts)
	}
	p1, p2 := x1/n1, x2/n2
	pool := (x1 + x2) / (n1 + n2)
	se := math.Sqrt(pool * (1 - pool) * (1/n1 + 1/n2))
	r := TestResult{Name: "two-proportion-z"}
	switch {
	case se == 0:
		r.Statistic, r.PValue = 0, 1
	default:
		r.Statistic = (p1 - p2) / se
		r.PValue = math.Min(2*stdNormal.Survival(math.Abs(r.Statistic)), 1)
	}
	return r, nil
}

// WilsonInterval is the Wilson score interval for a proportion x/n.
func WilsonInterval(x, n, confidence float64) (Interval, error) {
	if n <= 0 {
		return Interval{}, fmt.Errorf("wilson interval: %v trials: %w", n, ErrNoData)
	}
	if !(confidence > 0 && confidence < 1) {
		return Interval{}, fmt.Errorf("confidence %v: %w", confidence, ErrConfidence)
	}
	if x < 0 || x > n || math.IsNaN(x) || math.IsInf(n, 0) {
		return Interval{}, fmt.Errorf("wilson interval: %v of %v: %w", x, n, ErrInvalidCounts)
	}
	z := stdNormal.Quantile((1 + confidence) / 2)
	p := x / n
	den := 1 + z*z/n
	centre := (p + z*z/(2*n)) / den
	half := z / den * math.Sqrt(p*(1-p)/n+z*z/(4*n*n))
	return Interval{Estimate: p, Lower: math.Max(0, centre-half), Upper: math.Min(1, centre+half), Confidence: confidence, Method: "wilson", N: int(n)}, nil
}

// MarshalJSON writes a non-finite statistic (a paired t of constant,
// non-zero differences) as null: JSON has no infinity.
func (t TestResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name      string   `json:"name"`
		Statistic *float64 `json:"statistic"`
		PValue    *float64 `json:"p_value"`
		Exact     bool     `json:"exact"`
	}{t.Name, num(t.Statistic), num(t.PValue), t.Exact})
}
