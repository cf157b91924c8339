package data

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// FuzzParseNumber checks the fast path against strconv.ParseFloat: the same
// bits whenever it answers, and an answer for the common forms.
func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.5", "-123.456", ".5", "5.", "1e22", "1e23", "1e-22",
		"9007199254740993", "9007199254740992", "0.0380759064334241", "123456789012345678901",
		"0.000000000000000000000000001", "1.7976931348623157e308", "4.9e-324", "1e", "+", ".",
		"1e+", "0e999", "-0e-999", "1_0", "0x1p3", "inf", "NaN", "00012.3400", "1E5", "+.5e-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseDecimal([]byte(s))
		if !ok {
			return
		}
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("parseDecimal(%q) = %v, strconv: %v", s, got, err)
		}
		if math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseDecimal(%q) = %v (%#x), strconv %v (%#x)", s, got, math.Float64bits(got), want, math.Float64bits(want))
		}
	})
}

func TestParseDecimalTakesCommonForms(t *testing.T) {
	for _, s := range []string{"0", "-0", "151", "32.1", "-0.0380759064334241", "4.8598", "1e-07", "1.5E+10",
		"+2", ".25", "9007199254740992", "0.000001"} {
		if _, ok := parseDecimal([]byte(s)); !ok {
			t.Errorf("parseDecimal(%q) fell back to strconv", s)
		}
	}
}

// TestParseDecimalMatchesStrconv compares bits with strconv.ParseFloat over
// many formatted values, near the edges of the fast path (2^53, 10^±22).
func TestParseDecimalMatchesStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for n := range 300_000 {
		var v float64
		switch n % 3 {
		case 0:
			v = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(60)-30))
		case 1:
			v = float64(rng.Uint64N(1<<54)) * math.Pow(10, float64(rng.IntN(50)-25))
		default:
			v = math.Float64frombits(rng.Uint64())
		}
		s := strconv.FormatFloat(v, "gef"[rng.IntN(3)], rng.IntN(20)-1, 64)
		got, ok := parseDecimal([]byte(s))
		if !ok {
			continue
		}
		fast++
		want, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseDecimal(%q) = %v, strconv %v, %v", s, got, want, err)
		}
	}
	if fast < 100_000 {
		t.Errorf("only %d of 300000 values took the fast path", fast)
	}
}
