package modelgate

import (
	"math"
	"strconv"
	"strings"
)

// FormatNumber writes a number as every report shows it (text, Markdown,
// reasons, plot labels, progress lines): four significant digits, trailing
// zeros dropped (0.01, 0.01234, 3.5), integer digits never rounded away
// below a million (1235 for 1234.5678, 12346 for 12345.6, 5000), and
// scientific notation below 1e-4 and from 1e6 on (1e-7, 1.235e8).
func FormatNumber(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == 0:
		return "0"
	}
	// Rounded to four significant digits first: the exponent is the
	// rounded number's (9999.7 is 1.000e+04).
	mant, exp, _ := strings.Cut(strconv.FormatFloat(v, 'e', 3, 64), "e")
	e, _ := strconv.Atoi(exp)
	switch {
	case e < -4 || e >= 6:
		return trimZeros(mant) + "e" + strconv.Itoa(e)
	case e >= 3:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return trimZeros(strconv.FormatFloat(v, 'f', 3-e, 64))
}

// trimZeros drops a decimal fraction's trailing zeros, and its point when
// nothing is left after it.
func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".")
}
