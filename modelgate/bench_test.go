package modelgate_test

import (
	"math/rand/v2"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

// bigMetrics is a candidate with n per-example losses (squared normal
// errors, heavy-tailed like real ones).
func bigMetrics(n int) *modelgate.Metrics {
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float64, n)
	var s float64
	for i := range x {
		e := 50 * rng.NormFloat64()
		x[i] = e * e
		s += x[i]
	}
	return &modelgate.Metrics{
		Schema: modelgate.MetricsSchema,
		Train:  modelgate.TrainMetrics{Loss: []float64{5000, 3000, 2600, 2500}},
		Eval:   modelgate.EvalMetrics{Loss: s / float64(n), PerExample: x},
		Split:  modelgate.SplitInfo{TestDigest: "sha256:bench", TestRows: n},
	}
}

// BenchmarkBootstrap is the headline figure: the whole gate on 10^6
// per-example losses with 10,000 BCa bootstrap resamples of 10^6 draws
// each (10^10 draws per op). Run with -benchtime 1x. cpu-s/op is the CPU
// time the process used per op (all threads): on a shared machine, wall
// time over it says how much of the cores the benchmark was given.
func BenchmarkBootstrap(b *testing.B) {
	const n, resamples = 1_000_000, 10_000
	m := bigMetrics(n)
	threshold := 2600.0
	p := modelgate.DefaultPolicy()
	p.Threshold = &threshold
	p.Method = modelgate.MethodBootstrap
	p.Resamples = resamples
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		r, err := modelgate.Evaluate(p, m, nil)
		if err != nil {
			b.Fatal(err)
		}
		if r.Verdict != modelgate.Pass {
			b.Fatalf("verdict %s", r.Verdict)
		}
	}
	b.ReportMetric(float64(b.N)*n*resamples/b.Elapsed().Seconds(), "draws/s")
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkBootstrapMeans is the resampling alone, at a size that runs in
// well under a second.
func BenchmarkBootstrapMeans(b *testing.B) {
	const n, resamples = 1_000_000, 100
	x := bigMetrics(n).Eval.PerExample
	b.ReportAllocs()
	for b.Loop() {
		if _, err := modelgate.BootstrapMeans(x, resamples, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*n*resamples/b.Elapsed().Seconds(), "draws/s")
}

func BenchmarkTInterval(b *testing.B) {
	x := bigMetrics(1_000_000).Eval.PerExample
	b.ReportAllocs()
	for b.Loop() {
		if _, err := modelgate.TInterval(x, 0.95); err != nil {
			b.Fatal(err)
		}
	}
}
