package serve

import "strconv"

// pow10 are the powers of ten that float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseNumber reads the JSON number at b[i:] (JSON's grammar, stricter
// than strconv.ParseFloat's: no "inf", hex, '+' or bare '.') and returns
// its value, the index after it and whether it is an integer literal (no
// fraction, no exponent). ok is false when b[i:] does not start with a
// number, or when the number overflows float64. The value is exactly
// strconv.ParseFloat's: a number of at most 19 significant digits whose
// digits fit in 53 bits, scaled by at most 10^±22, is converted with one
// correctly rounded multiplication or division (Clinger's fast path, as
// strconv takes it); anything else goes to strconv.ParseFloat.
func parseNumber(b []byte, i int) (v float64, end int, integer, ok bool) {
	start := i
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	var mant uint64
	nd, exp := 0, 0
	trunc := false
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for ; i < len(b); i++ {
			c := b[i] - '0'
			if c > 9 {
				break
			}
			if nd < 19 {
				mant = mant*10 + uint64(c)
				nd++
			} else {
				trunc = true
				exp++
			}
		}
	default:
		return 0, i, false, false
	}
	integer = true
	if i < len(b) && b[i] == '.' {
		integer = false
		i++
		j := i
		for ; i < len(b); i++ {
			c := b[i] - '0'
			if c > 9 {
				break
			}
			if nd < 19 {
				mant = mant*10 + uint64(c)
				if mant != 0 {
					nd++
				}
				exp--
			} else {
				trunc = true
			}
		}
		if i == j {
			return 0, i, false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		integer = false
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		j := i
		e := 0
		for ; i < len(b); i++ {
			c := b[i] - '0'
			if c > 9 {
				break
			}
			if e < 100000 {
				e = e*10 + int(c)
			}
		}
		if i == j {
			return 0, i, false, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if !trunc && mant < 1<<53 && exp >= -22 && exp <= 22 {
		f := float64(mant)
		if neg {
			f = -f
		}
		switch {
		case exp > 0:
			f *= pow10[exp]
		case exp < 0:
			f /= pow10[-exp]
		}
		return f, i, integer, true
	}
	f, err := strconv.ParseFloat(string(b[start:i]), 64)
	if err != nil {
		return 0, i, false, false // out of range: encoding/json words the error
	}
	return f, i, integer, true
}
