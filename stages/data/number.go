package data

// pow10 holds the powers of ten that float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseDecimal is a fast path for the plain decimals that make up most
// CSV files: [+-]digits[.digits][(e|E)[+-]digits]. When the value is
// m·10^e with m ≤ 2^53 and |e| ≤ 22, both factors are exact float64s and
// one IEEE multiplication or division rounds correctly (Clinger's fast
// path), giving the bits strconv.ParseFloat would. Anything else — more
// digits, far exponents, hex, inf, nan, malformed text — reports !ok and
// goes to strconv.ParseFloat, which scans far more generally and slowly.
func parseDecimal(s []byte) (f float64, ok bool) {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	var m uint64
	exp, digits := 0, 0 // power of ten, digits seen
	for ; i < len(s) && s[i]-'0' < 10; i++ {
		digits++
		// m ≤ 2^53 here, so this cannot overflow.
		if m = m*10 + uint64(s[i]-'0'); m > 1<<53 {
			return 0, false
		}
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i]-'0' < 10; i++ {
			digits++
			exp--
			if m = m*10 + uint64(s[i]-'0'); m > 1<<53 {
				return 0, false
			}
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		if i == len(s) {
			return 0, false
		}
		e := 0
		for ; i < len(s) && s[i]-'0' < 10; i++ {
			if e > 1000 {
				return 0, false
			}
			e = e*10 + int(s[i]-'0')
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if i != len(s) {
		return 0, false
	}
	f = float64(m)
	switch {
	case m == 0 || exp == 0:
	case exp > 0 && exp < len(pow10):
		f *= pow10[exp]
	case exp < 0 && -exp < len(pow10):
		f /= pow10[-exp]
	default:
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}
