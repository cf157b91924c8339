package serve

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"testing"
)

// floatChecker compares appendFloat with appendFloatStrconv, and
// appendShortest with strconv's 'f' form wherever it answers, counting the
// values and stopping the test after a few differences.
type floatChecker struct {
	t         *testing.T
	n, bad    int
	got, want []byte
}

func (c *floatChecker) check(f float64) {
	c.t.Helper()
	c.n++
	c.got = appendFloat(c.got[:0], f)
	c.want = appendFloatStrconv(c.want[:0], f)
	if !bytes.Equal(c.got, c.want) {
		c.fail("appendFloat(%v) = %s, want %s", f, c.got, c.want)
	}
	var ok bool
	c.got, ok = appendShortest(c.got[:0], f)
	if abs := math.Abs(f); !ok && (abs == 0 || abs >= 1e-6 && abs < 1e21) {
		c.fail("appendShortest(%v) declined a float in its range", f)
	}
	if ok {
		c.want = strconv.AppendFloat(c.want[:0], f, 'f', -1, 64)
		if !bytes.Equal(c.got, c.want) {
			c.fail("appendShortest(%v) = %s, want %s", f, c.got, c.want)
		}
	}
}

// checkAround checks f and the n floats either side of it.
func (c *floatChecker) checkAround(f float64, n int) {
	c.check(f)
	up, down := f, f
	for range n {
		up = math.Nextafter(up, math.Inf(1))
		down = math.Nextafter(down, math.Inf(-1))
		c.check(up)
		c.check(down)
	}
}

func (c *floatChecker) fail(format string, args ...any) {
	c.t.Helper()
	c.t.Errorf(format, args...)
	if c.bad++; c.bad >= 20 {
		c.t.FailNow()
	}
}

// scaled returns short or long: the test's count under -short or not.
func scaled(short, long int) int {
	if testing.Short() {
		return short
	}
	return long
}

func TestAppendShortest(t *testing.T) {
	rng := rand.New(rand.NewPCG(20, 26))
	c := &floatChecker{t: t}
	signed := func(f float64) float64 {
		if rng.IntN(2) == 0 {
			return -f
		}
		return f
	}

	// Boundaries of the range, zeros, and their neighbours.
	maxBelow1e21 := math.Nextafter(1e21, 0)
	for _, f := range []float64{0, math.Copysign(0, -1), 1e-6, math.Nextafter(1e-6, 0), math.Nextafter(1e-6, 1),
		1e21, maxBelow1e21, math.Nextafter(1e21, math.Inf(1)), 1, 0.1, 0.5, 157.23072569900214, 206.11728264715617,
		math.SmallestNonzeroFloat64, 0x1p-1022, math.MaxFloat64, 9007199254740993, 4503599627370496.5} {
		c.checkAround(f, 8)
		c.checkAround(-f, 8)
	}
	boundaries := c.n

	// Random bit patterns whose magnitude is in [2^-20, 2^70): the
	// range, and a little either side of it.
	for range scaled(300_000, 3_000_000) {
		exp := uint64(1023-20+rng.IntN(90)) << 52
		c.check(signed(math.Float64frombits(exp | rng.Uint64()&(1<<52-1))))
	}
	random := c.n - boundaries

	// Values like the model's predictions and features.
	for range scaled(20_000, 200_000) {
		c.check(150 + 50*rng.NormFloat64())
		c.check(rng.NormFloat64())
		c.check(signed(math.Pow(10, -6+3*rng.Float64())))  // 1e-6..1e-3
		c.check(signed(math.Pow(10, 15+6*rng.Float64())))  // 1e15..1e21
		c.check(signed(math.Pow(10, -7+29*rng.Float64()))) // all of it
	}
	typical := c.n - boundaries - random

	// Powers of two and of ten in the range, and their neighbours: the
	// powers of two have the narrower interval below them.
	for e := -21; e <= 70; e++ {
		c.checkAround(math.Ldexp(1, e), 16)
		c.checkAround(-math.Ldexp(1, e), 4)
	}
	for e := -7; e <= 22; e++ {
		f, err := strconv.ParseFloat("1e"+strconv.Itoa(e), 64)
		if err != nil {
			t.Fatal(err)
		}
		c.checkAround(f, 16)
		c.checkAround(-f, 4)
	}

	// Integers: small ones, up to 2^53, and around 2^52, 2^53, 2^54.
	for i := range 100_000 {
		c.check(float64(i))
	}
	for range scaled(20_000, 200_000) {
		c.check(signed(float64(rng.Uint64N(1 << 53))))
		c.check(signed(float64(rng.Uint64N(1 << 20))))
	}
	for _, p := range []float64{1 << 52, 1 << 53, 1 << 54} {
		for j := range 2000 {
			c.check(p + float64(j))
			c.check(p - float64(j))
		}
	}

	// Decimals of 1 to 17 significant digits, and their neighbours: the
	// shortest form of many of them is the decimal itself.
	var digits []byte
	for range scaled(50_000, 500_000) {
		digits = digits[:0]
		for i := range 1 + rng.IntN(17) {
			d := rng.IntN(10)
			if i == 0 {
				d = 1 + rng.IntN(9)
			}
			digits = append(digits, byte('0'+d))
		}
		digits = append(digits, 'e')
		digits = strconv.AppendInt(digits, int64(rng.IntN(45)-25), 10)
		f, err := strconv.ParseFloat(string(digits), 64)
		if err != nil {
			t.Fatal(err)
		}
		c.checkAround(signed(f), 1)
	}

	// Floats f = c·2^q whose interval's ends (2c±1)·2^(q-1), or f
	// itself, are multiples of a large power of ten: the cases where an
	// end of the interval is exactly a candidate, and where the products
	// are integers (q >= 1).
	for q := 1; q <= 17; q++ {
		for m := 1; m <= 22; m++ {
			p5 := uint64(1)
			for range m {
				p5 *= 5
			}
			// 2c-1, 2c+1 and c divisible by 5^m.
			for _, r := range []uint64{(p5 + 1) / 2, (p5 - 1) / 2, 0} {
				for range 8 {
					cm := uint64(1)<<52 + (r+p5-(uint64(1)<<52)%p5)%p5
					cm += p5 * rng.Uint64N(((1<<53)-cm)/p5)
					for _, cc := range []uint64{cm, cm + p5} { // both parities
						if cc < 1<<53 {
							c.checkAround(math.Ldexp(float64(cc), q), 1)
						}
					}
				}
			}
		}
	}

	// Outside the range: appendFloat's 'e' form, subnormals, extremes.
	for range scaled(20_000, 200_000) {
		if f := math.Float64frombits(rng.Uint64()); !math.IsNaN(f) && !math.IsInf(f, 0) {
			c.check(f)
		}
		c.check(signed(math.Float64frombits(rng.Uint64N(1 << 52))))
	}
	t.Logf("%d floats compared: %d boundary, %d random bit patterns, %d typical values", c.n, boundaries, random, typical)
}

// The scales are what their comments say: checked with math/big apart from
// how initShortestScales computes them.
func TestShortestScales(t *testing.T) {
	for irregular := range 2 {
		for i, s := range shortestScales[irregular] {
			q := shortestQMin + i
			if s.h < 1 || s.h > 4 {
				t.Errorf("q=%d: h=%d, want 1..4", q, s.h)
			}
			// width = 2^q, or 3/4·2^q: 10^k <= width < 10^(k+1).
			width := new(big.Rat).SetFloat64(math.Ldexp(1, q))
			if irregular == 1 {
				width.Mul(width, big.NewRat(3, 4))
			}
			pow10 := func(k int) *big.Rat {
				p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(k, -k))), nil)
				if k < 0 {
					return new(big.Rat).SetFrac(big.NewInt(1), p)
				}
				return new(big.Rat).SetInt(p)
			}
			if pow10(s.k).Cmp(width) > 0 || pow10(s.k+1).Cmp(width) <= 0 {
				t.Errorf("q=%d irregular=%d: k=%d", q, irregular, s.k)
			}
			// g/2^128 · 2^(h-q) is 10^-k, exactly for k <= 0, rounded
			// up by less than 2^(h-q-128) for k > 0.
			g := new(big.Int).Lsh(new(big.Int).SetUint64(s.g1), 64)
			g.Or(g, new(big.Int).SetUint64(s.g0))
			approx := new(big.Rat).SetInt(g)
			approx.Mul(approx, new(big.Rat).SetFloat64(math.Ldexp(1, int(s.h)-q-128)))
			exact := new(big.Rat).Inv(pow10(s.k))
			diff := new(big.Rat).Sub(approx, exact)
			ulp := new(big.Rat).SetFloat64(math.Ldexp(1, int(s.h)-q-128))
			switch {
			case g.BitLen() != 128:
				t.Errorf("q=%d: g has %d bits", q, g.BitLen())
			case s.k <= 0 && diff.Sign() != 0:
				t.Errorf("q=%d: k=%d, g not exact", q, s.k)
			case s.k > 0 && (diff.Sign() <= 0 || diff.Cmp(ulp) >= 0):
				t.Errorf("q=%d: k=%d, g off by %v", q, s.k, diff)
			case s.k > 0 && s.pow5 != uint64(math.Pow(5, float64(s.k))):
				t.Errorf("q=%d: k=%d, pow5=%d", q, s.k, s.pow5)
			case s.k > 0 && q-s.k < 1: // exact relies on integer products being even
				t.Errorf("q=%d: k=%d", q, s.k)
			case s.k <= 0 && s.pow5 != 0:
				t.Errorf("q=%d: k=%d, pow5=%d", q, s.k, s.pow5)
			}
		}
	}
}

// eightDigits' divisions by multiplying hold for every lane value, and it
// writes the digits in order.
func TestEightDigits(t *testing.T) {
	for y := uint64(0); y < 10000; y++ {
		if y*5243>>19 != y/100 {
			t.Fatalf("%d·5243>>19 = %d", y, y*5243>>19)
		}
	}
	for z := uint64(0); z < 100; z++ {
		if z*103>>10 != z/10 {
			t.Fatalf("%d·103>>10 = %d", z, z*103>>10)
		}
	}
	rng := rand.New(rand.NewPCG(8, 8))
	for range 100_000 {
		x := rng.Uint32N(1e8)
		var got [8]byte
		binary.LittleEndian.PutUint64(got[:], eightDigits(x)|ascii8)
		if want := fmt.Sprintf("%08d", x); string(got[:]) != want {
			t.Fatalf("eightDigits(%d) = %s", x, got[:])
		}
	}
}

func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 1, -1, 0.1, 1e-6, 1e21, 157.23072569900214, 1 << 53, 5e-324, math.MaxFloat64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		c := &floatChecker{t: t}
		c.check(v)
	})
}

// predictions32 are 32 values like a regression model's answers to a
// 32-row request.
func predictions32() []float64 {
	rng := rand.New(rand.NewPCG(3, 32))
	fs := make([]float64, 32)
	for i := range fs {
		fs[i] = 150 + 50*rng.NormFloat64()
	}
	return fs
}

// BenchmarkAppendFloat32Predictions formats 32 predictions with
// appendFloat and with strconv, as it did before.
func BenchmarkAppendFloat32Predictions(b *testing.B) {
	fs := predictions32()
	for _, bc := range []struct {
		name   string
		append func([]byte, float64) []byte
	}{
		{"appendFloat", appendFloat},
		{"strconv", func(b []byte, f float64) []byte { return strconv.AppendFloat(b, f, 'f', -1, 64) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				buf = buf[:0]
				for _, f := range fs {
					buf = bc.append(buf, f)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(fs)), "ns/float")
		})
	}
}

// BenchmarkInitShortestScales is the cost of the table at start.
func BenchmarkInitShortestScales(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		initShortestScales()
	}
}
