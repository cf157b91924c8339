package serve

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"
)

// Shortest round-trip formatting of a float64 in the range appendFloat
// writes without an exponent (1e-6 <= |f| < 1e21), byte for byte as
// strconv.AppendFloat(b, f, 'f', -1, 64) writes it, in under half the
// time.
//
// The digits come from Schubfach (Raffaello Giulietti, "The Schubfach way
// to render doubles", 2020): f = c·2^q has the rounding interval R of the
// reals that read back to f; k is chosen so that R is at least 10^k wide
// and less than 10^(k+1) wide; then the shortest decimal in R is either
// the one multiple of 10^(k+1) in R, or the one of the two multiples of
// 10^k around f that is in R, the closer one if both are (ties to even).
// f and the ends of R, x·2^(q-2) for x = 4c, 4c-2 (or 4c-1), 4c+2, are
// scaled by 4·10^-k and rounded to odd: that keeps every comparison with
// a multiple of 4 (the candidates s·10^k scaled are 4s) exact.
//
// The paper approximates 10^-k to 126 bits and proves that enough for
// every double. We need only q in [-72, 17], so we keep the scaled values
// exact instead, which is simpler to check: for k <= 0, 10^-k times a
// power of two is an exact 128-bit integer; for the few k > 0 (f >= 2^56)
// the one thing a rounded-up 10^-k can get wrong, whether the product is
// an integer, is decided exactly by divisibility by 5^k.

const (
	// f = c·2^q with 2^52 <= c < 2^53: 1e-6 is in [2^-20, 2^-19), so
	// q >= -72; 1e21 is in [2^69, 2^70), so q <= 17.
	shortestQMin = -72
	shortestQMax = 17
)

// shortestScale is what the conversion needs for one binary exponent q.
type shortestScale struct {
	// g = g1·2^64 + g0 is 10^-k·2^(127-e) rounded up, where 2^e <= 10^-k <
	// 2^(e+1), so 2^127 <= g < 2^128. Exact for k <= 0.
	g1, g0 uint64
	// pow5 is 5^k when k > 0 (g is not exact), 0 otherwise.
	pow5 uint64
	k    int
	// h = q + e + 1: x·2^q·10^-k = (x<<h)·g / 2^128. In [1, 4].
	h uint
}

// shortestScales[0][q-shortestQMin] is for the regular case, [1] for
// c = 2^52, whose interval reaches only half as far below f as above.
var shortestScales [2][shortestQMax - shortestQMin + 1]shortestScale

func init() { initShortestScales() }

// initShortestScales fills shortestScales, g exactly with math/big.
func initShortestScales() {
	// k is in [-22, 5] over the range; g depends on k alone.
	const kMin, kMax = -22, 5
	type power struct {
		g1, g0, pow5 uint64
		e            int
	}
	var powers [kMax - kMin + 1]power
	ten := big.NewInt(10)
	low64 := new(big.Int).SetUint64(math.MaxUint64)
	for k := kMin; k <= kMax; k++ {
		p := &powers[k-kMin]
		var g *big.Int
		if k <= 0 {
			g = new(big.Int).Exp(ten, big.NewInt(int64(-k)), nil)
			p.e = g.BitLen() - 1
			g.Lsh(g, uint(127-p.e))
		} else {
			// 10^k is not a power of two: 2^(n-1) < 10^k < 2^n with n
			// its bit length, so e = -n.
			p10 := new(big.Int).Exp(ten, big.NewInt(int64(k)), nil)
			p.e = -p10.BitLen()
			g = new(big.Int).Lsh(big.NewInt(1), uint(127-p.e))
			g.Add(g, p10)
			g.Sub(g, big.NewInt(1))
			g.Quo(g, p10) // ceil(2^(127-e) / 10^k)
			p.pow5 = new(big.Int).Exp(big.NewInt(5), big.NewInt(int64(k)), nil).Uint64()
		}
		p.g0 = new(big.Int).And(g, low64).Uint64()
		p.g1 = g.Rsh(g, 64).Uint64()
	}
	for q := shortestQMin; q <= shortestQMax; q++ {
		for irregular := range 2 {
			// The interval is 2^q wide, or 3/4·2^q for c = 2^52: k is
			// the largest integer with 10^k <= that width. Its log10 is
			// at least 0.007 from an integer in the range but for
			// width = 1, so the float logarithm gives k exactly
			// (TestShortestScales checks).
			width := math.Ldexp(1, q)
			if irregular == 1 {
				width *= 0.75
			}
			k := int(math.Floor(math.Log10(width)))
			p := powers[k-kMin]
			shortestScales[irregular][q-shortestQMin] = shortestScale{
				g1: p.g1, g0: p.g0, pow5: p.pow5, k: k, h: uint(q + p.e + 1),
			}
		}
	}
}

// rop is x·2^q·10^-k rounded to odd: its floor, with the lowest bit set
// when it is not an integer. Exact for k <= 0; for k > 0 see exact.
func (s *shortestScale) rop(x uint64) uint64 {
	cp := x << (s.h & 63)
	hi1, lo1 := bits.Mul64(s.g1, cp)
	hi0, lo0 := bits.Mul64(s.g0, cp)
	mid, carry := bits.Add64(lo1, hi0, 0)
	v := hi1 + carry
	if mid|lo0 != 0 {
		v |= 1
	}
	return v
}

// exact corrects rop(x) = v for k > 0, where g is rounded up by less than
// 1, so rop sees a fraction of less than 2^-69 (x<<h < 2^60) where the
// product x·2^(q-k)/5^k is an integer: it is one iff 5^k divides x, and
// then it is even (q-k >= 1), and its floor is right.
func (s *shortestScale) exact(x, v uint64) uint64 {
	if x%s.pow5 == 0 {
		return v &^ 1
	}
	return v
}

// appendShortest appends f as strconv.AppendFloat(b, f, 'f', -1, 64)
// does, for f = ±0 and 1e-6 <= |f| < 1e21. For any other f it appends
// nothing and reports false.
func appendShortest(b []byte, f float64) ([]byte, bool) {
	fb := math.Float64bits(f)
	neg := fb>>63 != 0
	if f == 0 {
		if neg {
			return append(b, "-0"...), true
		}
		return append(b, '0'), true
	}
	if abs := math.Abs(f); !(abs >= 1e-6 && abs < 1e21) { // NaN fails too
		return b, false
	}
	q := int(fb>>52&0x7ff) - 1075
	if q < shortestQMin || q > shortestQMax {
		return b, false // not reached: the range check implies it
	}
	c := fb&(1<<52-1) | 1<<52

	// The interval R = [cbl, cbr]·2^(q-2), closed if c is even (reading
	// rounds ties to even), open if odd.
	cb := c << 2
	cbr := cb + 2
	cbl := cb - 2
	scale := &shortestScales[0][q-shortestQMin]
	if c == 1<<52 {
		// The float below has half the spacing.
		cbl = cb - 1
		scale = &shortestScales[1][q-shortestQMin]
	}
	out := c & 1 // 1 when the interval's ends are excluded
	vb := scale.rop(cb)
	vbl := scale.rop(cbl)
	vbr := scale.rop(cbr)
	if scale.pow5 != 0 { // f >= 2^56
		vb, vbl, vbr = scale.exact(cb, vb), scale.exact(cbl, vbl), scale.exact(cbr, vbr)
	}

	// u <= f < w are multiples of 10^k; s = floor(f·10^-k).
	s := vb >> 2
	var d uint64
	switch sp10 := s / 10 * 10; {
	case vbl+out <= sp10<<2:
		// The multiple of 10^(k+1) below f is in R (the one above can't
		// be too: R is narrower than 10^(k+1)).
		d = sp10
	case (sp10+10)<<2+out <= vbr:
		d = sp10 + 10
	default:
		t := s + 1
		uin := vbl+out <= s<<2
		win := t<<2+out <= vbr
		switch {
		case uin && !win:
			d = s
		case win && !uin:
			d = t
		case vb < s<<2+2: // both in R: the closer to f, ties to even
			d = s
		case vb > s<<2+2:
			d = t
		case s&1 == 0:
			d = s
		default:
			d = t
		}
	}
	return appendDecimalF(b, neg, d, scale.k), true
}

// appendDecimalF writes ±d·10^exp (0 < d < 10^17, -22 <= exp <= 5, and 1e-6 <= d·10^exp < 1e21) in 'f' form: no trailing
// zeros after the point, no point for an integer. It lays the number out
// in one buffer and appends that once.
func appendDecimalF(b []byte, neg bool, d uint64, exp int) []byte {
	// buf[at:at+17] holds the 17 digits of d, a leading zero included;
	// before them is room for "-0.00000", after them for an integer's
	// zeros.
	var buf [48]byte
	const at = 8
	hi := d / 1e8
	top := hi / 1e8
	mid := eightDigits(uint32(hi - top*1e8))
	low := eightDigits(uint32(d - hi*1e8))
	buf[at] = byte('0' + top)
	binary.LittleEndian.PutUint64(buf[at+1:], mid|ascii8)
	binary.LittleEndian.PutUint64(buf[at+9:], low|ascii8)

	first := at // d has 16 or 17 digits, but scanning costs no more
	for buf[first] == '0' {
		first++
	}
	// Trailing zeros are the high zero bytes of the blocks (d's last digit
	// is low's highest byte).
	tz := bits.LeadingZeros64(low) / 8
	if low == 0 {
		tz = 8 + bits.LeadingZeros64(mid)/8
		if mid == 0 {
			tz = 16
		}
	}
	end := at + 17 - tz
	exp += tz
	n := end - first
	lo, hi2 := first, end  // the answer is buf[lo:hi2]
	switch p := n + exp; { // p digits before the point
	case p <= 0: // 0.000ddd (p >= -5 since d·10^exp >= 1e-6)
		lo = first - 2 + p
		buf[lo], buf[lo+1] = '0', '.'
		for i := lo + 2; i < first; i++ {
			buf[i] = '0'
		}
	case p < n: // ddd.ddd: move the integer part one to the left
		lo = first - 1
		for i := lo; i < lo+p; i++ {
			buf[i] = buf[i+1]
		}
		buf[lo+p] = '.'
	default: // ddd000 (p <= 21 since d·10^exp < 1e21)
		hi2 = first + p
		for i := end; i < hi2; i++ {
			buf[i] = '0'
		}
	}
	if neg {
		lo--
		buf[lo] = '-'
	}
	return append(b, buf[lo:hi2]...)
}

const ascii8 = 0x3030303030303030 // '0' in each byte

// eightDigits returns the 8 decimal digits of x < 10^8 as the bytes of a
// little-endian word, first digit lowest, each byte 0..9. It splits x
// in halves, quarters and single digits in parallel lanes of one word,
// dividing by multiplying: y/100 = y·5243>>19 for y < 10^4, and
// z/10 = z·103>>10 for z < 100 (TestEightDigits checks both).
func eightDigits(x uint32) uint64 {
	v := uint64(x/10000) | uint64(x%10000)<<32 // 32-bit lanes: 0..9999
	q := (v * 5243 >> 19) & 0x0000007f0000007f // lane / 100
	v = q | (v-q*100)<<16                      // 16-bit lanes: 0..99
	q = (v * 103 >> 10) & 0x000f000f000f000f   // lane / 10
	return q | (v-q*10)<<8                     // 8-bit lanes: 0..9
}
