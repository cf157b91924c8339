package train

import (
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
)

// BenchmarkEpoch measures one full-batch epoch (one pass over the rows plus
// the step) on 10⁶ × 20 standardised rows. The blas-gemv case is the
// two-call alternative (r = Zw + b − y, then g = Zᵀr), kept for comparison.
func BenchmarkEpoch(b *testing.B) {
	const n, d = 1_000_000, 20
	rng := rand.New(rand.NewPCG(1, 2))
	s := newState(make([]float64, n*d), make([]float64, n), d, 0)
	defer s.close()
	for i := range s.z {
		s.z[i] = rng.NormFloat64()
	}
	for i := range s.y {
		s.y[i] = rng.NormFloat64()
	}
	p := DefaultParams()

	b.Run("fused", func(b *testing.B) {
		b.ReportAllocs()
		gb := 0.0
		for t := 0; b.Loop(); t++ {
			s.step(2.0/n, gb, p.LearningRateAt(t), p.ClipNorm)
			_, gb = s.fullPass()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("blas-gemv", func(b *testing.B) {
		b.ReportAllocs()
		z := blas64.General{Rows: n, Cols: d, Stride: d, Data: s.z}
		r := make([]float64, n)
		gb := 0.0
		for t := 0; b.Loop(); t++ {
			s.step(2.0/n, gb, p.LearningRateAt(t), p.ClipNorm)
			for i, yi := range s.y {
				r[i] = s.b - yi
			}
			blas64.Gemv(blas.NoTrans, 1, z, blas64.Vector{N: d, Inc: 1, Data: s.w}, 1, blas64.Vector{N: n, Inc: 1, Data: r})
			blas64.Gemv(blas.Trans, 1, z, blas64.Vector{N: n, Inc: 1, Data: r}, 0, blas64.Vector{N: d, Inc: 1, Data: s.g})
			gb = floats.Sum(r)
			_ = floats.Dot(r, r)
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})
}
