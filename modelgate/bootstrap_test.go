package modelgate_test

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

func expSample(n int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 99))
	x := make([]float64, n)
	for i := range x {
		x[i] = rng.ExpFloat64() * 1000
	}
	return x
}

// The same seed gives the same resamples, whatever GOMAXPROCS; another
// seed gives others.
func TestBootstrapDeterministic(t *testing.T) {
	x := expSample(1001, 1)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var first []float64
	for _, procs := range []int{1, 2, 5} {
		runtime.GOMAXPROCS(procs)
		got, err := modelgate.BootstrapMeans(x, 257, 42)
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = got
		} else if !slices.Equal(got, first) {
			t.Fatalf("GOMAXPROCS=%d: resample means differ from GOMAXPROCS=1", procs)
		}
	}
	other, err := modelgate.BootstrapMeans(x, 257, 43)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(other, first) {
		t.Error("seeds 42 and 43 gave the same resamples")
	}
	a, _ := modelgate.BootstrapInterval(x, 0.95, 500, 9, true)
	b, _ := modelgate.BootstrapInterval(x, 0.95, 500, 9, true)
	if a != b {
		t.Errorf("same seed, different intervals: %+v, %+v", a, b)
	}
}

// The draws are uniform: with x the indicator of index k, a resample's
// mean counts how often k was drawn. Over 4,000 resamples the counts of
// the n indices must pass a chi-square test at p = 0.001. n = 7 and 13
// also exercise the tail of the four-way unrolled loop.
func TestBootstrapDrawsUniform(t *testing.T) {
	for _, n := range []int{7, 8, 13} {
		const resamples = 4000
		counts := make([]float64, n)
		for k := range n {
			x := make([]float64, n)
			x[k] = 1
			means, err := modelgate.BootstrapMeans(x, resamples, 5)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range means {
				counts[k] += m * float64(n)
			}
		}
		var total, chi float64
		for _, c := range counts {
			total += c
		}
		if math.Abs(total-float64(resamples*n)) > 1e-6*total {
			t.Fatalf("n=%d: %v draws, want %d", n, total, resamples*n)
		}
		want := float64(resamples)
		for _, c := range counts {
			chi += (c - want) * (c - want) / want
		}
		// 0.999 quantiles of chi-square with df 6, 7 and 12, from the table.
		limit := map[int]float64{7: 22.46, 8: 24.32, 13: 32.91}[n]
		if chi > limit {
			t.Errorf("n=%d: chi-square %.2f > %.2f", n, chi, limit)
		}
	}
}

// The resample means' mean is the sample mean and their variance is
// σ̂²/n (σ̂² the plug-in variance), up to sampling error.
func TestBootstrapMoments(t *testing.T) {
	x := expSample(500, 3)
	means, err := modelgate.BootstrapMeans(x, 8000, 1)
	if err != nil {
		t.Fatal(err)
	}
	var mx, vx float64
	for _, v := range x {
		mx += v
	}
	mx /= float64(len(x))
	for _, v := range x {
		vx += (v - mx) * (v - mx)
	}
	vx /= float64(len(x))
	var mb, vb float64
	for _, m := range means {
		mb += m
	}
	mb /= float64(len(means))
	for _, m := range means {
		vb += (m - mb) * (m - mb)
	}
	vb /= float64(len(means) - 1)
	se := math.Sqrt(vx / float64(len(x)))
	if math.Abs(mb-mx) > 4*se/math.Sqrt(float64(len(means))) {
		t.Errorf("mean of resample means %v, sample mean %v", mb, mx)
	}
	if want := vx / float64(len(x)); math.Abs(vb/want-1) > 0.06 {
		t.Errorf("variance of resample means %v, want %v ± 6%%", vb, want)
	}
}

// On right-skewed data the bootstrap distribution of the mean has z0 > 0
// and the acceleration a > 0, so BCa moves both bounds above the
// percentile interval's.
func TestBCaShiftsRightOnSkewedData(t *testing.T) {
	x := expSample(200, 4)
	for i := range x {
		x[i] = x[i] * x[i] // heavier right tail
	}
	pct, err := modelgate.BootstrapInterval(x, 0.95, 4000, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	bca, err := modelgate.BootstrapInterval(x, 0.95, 4000, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	if !(bca.Lower > pct.Lower && bca.Upper > pct.Upper) {
		t.Errorf("BCa [%v, %v], percentile [%v, %v]: want BCa shifted right", bca.Lower, bca.Upper, pct.Lower, pct.Upper)
	}
	if bca.Method != modelgate.MethodBootstrap || pct.Method != modelgate.MethodPercentile {
		t.Errorf("methods %q, %q", bca.Method, pct.Method)
	}
}

// On normal data with n large, bootstrap and t intervals agree to a few
// percent of their width.
func TestBootstrapAgreesWithT(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float64, 2000)
	for i := range x {
		x[i] = 10 + rng.NormFloat64()
	}
	ti, err := modelgate.TInterval(x, 0.95)
	if err != nil {
		t.Fatal(err)
	}
	w := ti.Upper - ti.Lower
	for _, bca := range []bool{true, false} {
		bi, err := modelgate.BootstrapInterval(x, 0.95, 4000, 1, bca)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(bi.Lower-ti.Lower) > 0.05*w || math.Abs(bi.Upper-ti.Upper) > 0.05*w {
			t.Errorf("bca=%v: [%v, %v], t [%v, %v]", bca, bi.Lower, bi.Upper, ti.Lower, ti.Upper)
		}
	}
}

func TestBootstrapConstantSample(t *testing.T) {
	x := []float64{2, 2, 2, 2}
	for _, bca := range []bool{true, false} {
		iv, err := modelgate.BootstrapInterval(x, 0.95, 100, 1, bca)
		if err != nil {
			t.Fatal(err)
		}
		if iv.Lower != 2 || iv.Upper != 2 || iv.Estimate != 2 {
			t.Errorf("bca=%v: %+v, want [2, 2]", bca, iv)
		}
	}
}

// Across blocks too: n = 6·2^14 + 5 spans many of the resampler's blocks
// (powers of two) and a short last one. The draws falling in each of six
// equal parts and in the five last values must match their sizes
// (chi-square, df 6, 22.46 at p = 0.001).
func TestBootstrapDrawsUniformAcrossBlocks(t *testing.T) {
	const half, resamples = 1 << 14, 100
	n := 6*half + 5
	parts := [][2]int{}
	for i := range 6 {
		parts = append(parts, [2]int{i * half, (i + 1) * half})
	}
	parts = append(parts, [2]int{6 * half, n})
	var chi float64
	for _, pt := range parts {
		x := make([]float64, n)
		for i := pt[0]; i < pt[1]; i++ {
			x[i] = 1
		}
		means, err := modelgate.BootstrapMeans(x, resamples, 8)
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		for _, m := range means {
			got += math.Round(m * float64(n))
		}
		want := float64(resamples) * float64(pt[1]-pt[0])
		chi += (got - want) * (got - want) / want
	}
	if chi > 22.46 {
		t.Errorf("chi-square %.2f > 22.46", chi)
	}
}
