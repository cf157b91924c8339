package serve

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var features3 = []string{"a", "b", "c"}

// The fast path must take the common shapes, and leave the rest to encoding/json.
func TestDecodeFastTakes(t *testing.T) {
	tests := []struct {
		body  string
		fast  bool
		shape shape
		x     []float64
	}{
		{`{"instances":[[1,2,3]]}`, true, shapeInstances, []float64{1, 2, 3}},
		{" {\n\t\"instances\" : [ [ -1.5e-3 , 0 , 2E+2 ] ,[0.25,-0,7] ] \r\n} \n", true, shapeInstances, []float64{-1.5e-3, 0, 200, 0.25, 0, 7}},
		{`{"input":[1,2,3]}`, true, shapeRow, []float64{1, 2, 3}},
		{`{"input":[[1,2,3],[4,5,6]]}`, true, shapeRows, []float64{1, 2, 3, 4, 5, 6}},
		{`{"Instances":[[1,2,3]]}`, false, shapeInstances, []float64{1, 2, 3}},
		{`{"input":{"a":1,"b":2,"c":3}}`, false, shapeObject, []float64{1, 2, 3}},
		{`{"input":[{"c":3,"b":2,"a":1}]}`, false, shapeObjects, []float64{1, 2, 3}},
		{`{"instances":[[1,2,3]],"instances":[[4,5,6]]}`, false, shapeInstances, []float64{4, 5, 6}},
		{`{"instances":[[1,2,3e0]]}`, true, shapeInstances, []float64{1, 2, 3}},
		{`{"instan\u0063es":[[1,2,3]]}`, false, shapeInstances, []float64{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			_, fast := decodeFast([]byte(tt.body), len(features3), nil)
			if fast != tt.fast {
				t.Errorf("fast path %v, want %v", fast, tt.fast)
			}
			r, err := decodeRequest([]byte(tt.body), features3, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.shape != tt.shape || !slices.Equal(r.x, tt.x) || r.rows*3 != len(tt.x) {
				t.Errorf("got shape %d rows %d x %v, want shape %d x %v", r.shape, r.rows, r.x, tt.shape, tt.x)
			}
		})
	}
}

// Bodies the fast path must refuse; encoding/json rejects them all.
func TestDecodeFastRefuses(t *testing.T) {
	for _, body := range []string{
		``, `{`, `{"instances":`, `{"instances":[]}`, `{"instances":[[]]}`, `{"instances":[[1,2]]}`,
		`{"instances":[[1,2,3,4]]}`, `{"instances":[[1,2,3],]}`, `{"instances":[[1,2,3]]`, `{"instances":[[1,2,3]]}x`,
		`{"instances":[[+1,2,3]]}`, `{"instances":[[.5,2,3]]}`, `{"instances":[[5.,2,3]]}`, `{"instances":[[01,2,3]]}`,
		`{"instances":[[1e,2,3]]}`, `{"instances":[[Infinity,2,3]]}`, `{"instances":[[NaN,2,3]]}`,
		`{"instances":[[0x10,2,3]]}`, `{"instances":[[1_0,2,3]]}`, `{"instances":[[1e999,2,3]]}`, `{"instances":[[-,2,3]]}`,
		`{"instances":[[1,2,null]]}`, `{"instances":[[1,2,"3"]]}`, `{"input":[1,2,3],}`, `{"other":[[1,2,3]]}`,
		"{\"in\x01put\":[1,2,3]}", `{"input":[1,2,3]}{}`,
	} {
		if _, ok := decodeFast([]byte(body), len(features3), nil); ok {
			t.Errorf("fast path took %q", body)
		}
	}
}

// FuzzDecode checks that the fast path agrees with encoding/json on every
// body it takes, and that no body makes the decoder panic.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"instances":[[1,2,3]]}`, `{"input":[1,2.5e-3,-3]}`, `{"input":[[1,2,3],[4,5,6]]}`,
		`{"input":{"a":1,"b":2,"c":3}}`, `{"instances":[[1e400,2,3]]}`, ` { "input" : [ 0 , -0.0 , 1E+2 ] } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		slow, slowErr := decodeSlow(b, features3, nil)
		fast, ok := decodeFast(b, len(features3), nil)
		if !ok {
			return
		}
		if slowErr != nil {
			t.Fatalf("fast path took %q, which encoding/json rejects: %v", b, slowErr)
		}
		if fast.shape != slow.shape || fast.rows != slow.rows || !slices.Equal(fast.x, slow.x) {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, slow)
		}
	})
}

func TestAppendFloatMatchesEncodingJSON(t *testing.T) {
	values := []float64{0, math.Copysign(0, -1), 1, -1, 0.1, 1e-6, 9.99999e-7, 1e-7, 1.5e-9, 1e20, 1e21, 123456789e13,
		math.MaxFloat64, math.SmallestNonzeroFloat64, -math.MaxFloat64, 206.11728264715617, 1e-300}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		if v := math.Float64frombits(rng.Uint64()); !math.IsNaN(v) && !math.IsInf(v, 0) {
			values = append(values, v)
		}
		values = append(values, rng.NormFloat64()*math.Pow(10, float64(rng.IntN(60)-30)))
	}
	for _, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendFloat(nil, v); string(got) != string(want) {
			t.Errorf("appendFloat(%v) = %s, encoding/json writes %s", v, got, want)
		}
	}
}

func TestEncodeShapes(t *testing.T) {
	y := []float64{1.5, -2}
	z := []float64{0.5, 1, -1, 2, 0, 3}
	tests := []struct {
		r                  request
		predict, processed string
	}{
		{request{rows: 2, shape: shapeInstances}, `{"predictions":[1.5,-2]}`, `{"processed_data":[[0.5,1,-1],[2,0,3]]}`},
		{request{rows: 1, shape: shapeRow}, `{"prediction":1.5}`, `{"processed_data":[0.5,1,-1]}`},
		{request{rows: 2, shape: shapeRows}, `{"prediction":[1.5,-2]}`, `{"processed_data":[[0.5,1,-1],[2,0,3]]}`},
		{request{rows: 1, shape: shapeObject}, `{"prediction":1.5}`, `{"processed_data":{"a":0.5,"b":1,"c":-1}}`},
		{request{rows: 2, shape: shapeObjects}, `{"prediction":[1.5,-2]}`,
			`{"processed_data":[{"a":0.5,"b":1,"c":-1},{"a":2,"b":0,"c":3}]}`},
	}
	for _, tt := range tests {
		if got := strings.TrimSuffix(string(encodePredictions(nil, tt.r, y)), "\n"); got != tt.predict {
			t.Errorf("shape %d: predictions %s, want %s", tt.r.shape, got, tt.predict)
		}
		if got := strings.TrimSuffix(string(encodeProcessed(nil, tt.r, features3, z)), "\n"); got != tt.processed {
			t.Errorf("shape %d: processed %s, want %s", tt.r.shape, got, tt.processed)
		}
	}
}

// The fast path against the encoding/json path it short-cuts, on the same body.
func BenchmarkDecode32(b *testing.B) {
	features := []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}
	row := `[59,2,32.1,101,157,93.2,38,4,4.8598,87]`
	body := []byte(`{"instances":[` + strings.Repeat(row+",", 31) + row + `]}`)
	for _, bb := range []struct {
		name   string
		decode func(x []float64) (request, error)
	}{
		{"fast", func(x []float64) (request, error) { return decodeRequest(body, features, x) }},
		{"encoding_json", func(x []float64) (request, error) { return decodeSlow(body, features, x) }},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var x []float64
			for b.Loop() {
				r, err := bb.decode(x[:0])
				if err != nil || r.rows != 32 {
					b.Fatal(r.rows, err)
				}
				x = r.x
			}
		})
	}
}

// A v2 model's request: strings and nulls besides numbers, in every shape.
func TestDecodeCells(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		body  string
		shape shape
		x     []float64
		text  []string
	}{
		{`{"instances":[[1,"north",null]]}`, shapeInstances, []float64{1, nan, nan}, []string{"", "north", ""}},
		{`{"input":[" 2 ","",-0.5]}`, shapeRow, []float64{2, nan, -0.5}, []string{"", "", ""}},
		{`{"input":[null,"x, y","1e3"]}`, shapeRow, []float64{nan, nan, 1000}, []string{"", "x, y", ""}},
		{`{"input":[[1,2,3],["a","b","c"]]}`, shapeRows, []float64{1, 2, 3, nan, nan, nan}, []string{"", "", "", "a", "b", "c"}},
		{`{"input":{"c":null,"b":"\u00fc","a":7}}`, shapeObject, []float64{7, nan, nan}, []string{"", "ü", ""}},
		{`{"input":[{"a":1,"b":2,"c":3}]}`, shapeObjects, []float64{1, 2, 3}, []string{"", "", ""}},
		{`{"instances":[[1,2,3]]}`, shapeInstances, []float64{1, 2, 3}, nil}, // numbers only: the fast path
	}
	same := func(a, b []float64) bool {
		return slices.EqualFunc(a, b, func(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) })
	}
	for _, tt := range tests {
		r, err := decodeCellsRequest([]byte(tt.body), features3, nil, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.body, err)
			continue
		}
		if r.shape != tt.shape || !same(r.x, tt.x) || !slices.Equal(r.text, tt.text) || r.rows*3 != len(tt.x) {
			t.Errorf("%s: shape %d rows %d x %v text %q, want shape %d x %v text %q", tt.body, r.shape, r.rows, r.x, r.text, tt.shape, tt.x, tt.text)
		}
	}
}

// FuzzDecodeCells: no body makes the v2 decoder panic; what it accepts has
// one value and one text per feature, text only where the value is not a
// number, and for bodies of numbers it agrees with the v1 decoder.
func FuzzDecodeCells(f *testing.F) {
	for _, s := range []string{
		`{"instances":[[1,"north",null]]}`, `{"input":[" 2 ","",-0.5]}`, `{"input":{"c":null,"b":"x","a":7}}`,
		`{"input":[{"a":1,"b":"NaN","c":3}]}`, `{"input":[[1,2,3],["a",true,"c"]]}`, `{"instances":[[1e400,"x",null]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeCellsRequest(b, features3, nil, nil)
		if err != nil {
			return
		}
		if r.rows < 1 || len(r.x) != 3*r.rows || r.text != nil && len(r.text) != len(r.x) {
			t.Fatalf("%q: %d rows, %d values, %d texts", b, r.rows, len(r.x), len(r.text))
		}
		for i, v := range r.x {
			if math.IsInf(v, 0) || r.text != nil && r.text[i] != "" && !math.IsNaN(v) {
				t.Fatalf("%q: value %v text %q", b, v, r.text[i])
			}
			if r.text != nil && strings.Trim(r.text[i], " \t") != r.text[i] {
				t.Fatalf("%q: text %q not trimmed", b, r.text[i])
			}
		}
		if v1, err := decodeRequest(b, features3, nil); err == nil {
			if v1.shape != r.shape || v1.rows != r.rows || !slices.Equal(v1.x, r.x) {
				t.Fatalf("%q: v1 decoder %+v, v2 decoder %+v", b, v1, r)
			}
		}
	})
}

// numbersRef is scanner.numbers as it was before its inline path for the
// common numbers: every number through parseNumber. The two must agree on
// every input, to the bit.
func numbersRef(s *scanner, x []float64, allInt *bool) ([]float64, int, bool) {
	n := 0
	for {
		s.ws()
		start := s.i
		v, end, integer, ok := parseNumber(s.b, s.i)
		if !ok {
			return x, n, false
		}
		s.i = end
		if allInt != nil && (!integer || end-start > 18) {
			*allInt = false
		}
		x = append(x, v)
		n++
		s.ws()
		if s.eat(',') {
			continue
		}
		return x, n, s.eat(']')
	}
}

// checkNumbers runs scanner.numbers and numbersRef over the same bytes and
// fails on any difference: values (bits), count, acceptance, where the
// scanner stopped, allInt.
func checkNumbers(t *testing.T, b []byte) (x []float64, ok bool) {
	t.Helper()
	fast, ref := scanner{b: b}, scanner{b: b}
	fastInt, refInt := true, true
	x, n, ok := fast.numbers(nil, &fastInt)
	xr, nr, okr := numbersRef(&ref, nil, &refInt)
	if ok != okr {
		t.Fatalf("%q: numbers ok %v, parseNumber's path ok %v", b, ok, okr)
	}
	if !ok {
		return nil, false
	}
	if n != nr || len(x) != len(xr) || fast.i != ref.i || fastInt != refInt {
		t.Fatalf("%q: numbers %v (n %d, end %d, allInt %v), parseNumber's path %v (n %d, end %d, allInt %v)",
			b, x, n, fast.i, fastInt, xr, nr, ref.i, refInt)
	}
	for i := range x {
		if math.Float64bits(x[i]) != math.Float64bits(xr[i]) {
			t.Fatalf("%q: value %d: numbers %v (%#x), parseNumber %v (%#x)", b, i, x[i], math.Float64bits(x[i]), xr[i], math.Float64bits(xr[i]))
		}
	}
	return x, true
}

// The inline path of scanner.numbers gives exactly strconv.ParseFloat's
// value on the literals at its edges: where it hands over to parseNumber
// (19/20 digits, 2^53, exponents, 22/23 fraction digits) and the forms
// JSON refuses (leading zeros, bare signs and points).
func TestNumbersMatchesStrconv(t *testing.T) {
	lits := []string{
		"0", "-0", "0.0", "-0.0", "-0.000", "0.5", "-0.5", "1", "-1", "10", "100.25", "4.8598", "152.13300000000001",
		// 2^53 - 1, 2^53, 2^53 + 1: the last ones go to parseNumber.
		"9007199254740991", "-9007199254740991", "9007199254740992", "9007199254740993", "-9007199254740993",
		"900719925474099.1", "900719925474099.3", "90071992547409.93", "0.9007199254740993",
		// 18, 19 and 20 digits.
		"123456789012345678", "-123456789012345678", "1234567890123456789", "12345678901234567890",
		"1.23456789012345678", "1.234567890123456789", "0.1234567890123456789", "0.12345678901234567890",
		"999999999999999999", "9999999999999999999", "99999999999999999999", "18446744073709551615", "18446744073709551616",
		// Fractions of up to 22 and 23 digits, with and without leading zeros.
		"0.000000000000000000001", "0.0000000000000000000001", "0.00000000000000000000001",
		"0.1234567890123456789012", "0.12345678901234567890123", "1.0000000000000000000001",
		"0.3", "0.30000000000000004", "0.1", "0.2", "0.7", "1.1", "2.675", "1.005", "0.000001", "0.0000001",
		// Exponents.
		"1e0", "1e22", "1e23", "1E+2", "1e-2", "-1.5e-3", "5e-324", "2.2250738585072014e-308", "1.7976931348623157e308",
		"4.9e-324", "1e-400", "-0e5", "0e0",
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		// Decimal literals of 1 to 20 digits with the point anywhere.
		d := 1 + rng.IntN(20)
		digits := make([]byte, d)
		for i := range digits {
			digits[i] = byte('0' + rng.IntN(10))
		}
		if d > 1 && digits[0] == '0' {
			digits[0] = '1'
		}
		lit := string(digits)
		if p := rng.IntN(d + 1); p > 0 && p < d {
			lit = lit[:p] + "." + lit[p:]
		} else if p == 0 {
			lit = "0." + lit
		}
		if rng.IntN(2) == 0 {
			lit = "-" + lit
		}
		lits = append(lits, lit)
	}
	for _, lit := range lits {
		want, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			t.Fatalf("test literal %q: %v", lit, err)
		}
		for _, body := range []string{lit + "]", " " + lit + " , " + lit + "\n]", lit + ",1,0.5," + lit + "]"} {
			x, ok := checkNumbers(t, []byte(body))
			if !ok || math.Float64bits(x[0]) != math.Float64bits(want) {
				t.Fatalf("%q: %v, %v; strconv %v", body, x, ok, want)
			}
		}
	}
	// Refused by JSON, and so by both paths (checkNumbers compares them).
	for _, bad := range []string{"]", "01]", "-01]", "00]", "00.5]", "+1]", ".5]", "-.5]", "5.]", "-]", "1.2.3]", "1e]",
		"1,]", "1 2]", "[1]", "1", "1,", "0x1]", "1.5e+]", "Infinity]", "NaN]", "1e400]", "12345678901234567890123e400]"} {
		if _, ok := checkNumbers(t, []byte(bad)); ok {
			t.Errorf("%q: numbers took it", bad)
		}
	}
}

// FuzzNumbers: the inline path of scanner.numbers and parseNumber's agree on
// any bytes, and what they take encoding/json reads as the same numbers.
func FuzzNumbers(f *testing.F) {
	for _, s := range []string{"1,2.5,-3]", "9007199254740993,0.1]", " 1234567890123456789 , 0.0000000000000000000001]",
		"01]", "-0]", "1e22,1e23]", "5.]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		x, ok := checkNumbers(t, b)
		if !ok {
			return
		}
		s := scanner{b: b}
		s.numbers(nil, nil)
		var viaJSON []float64
		if err := json.Unmarshal(append([]byte("["), b[:s.i]...), &viaJSON); err != nil {
			t.Fatalf("%q: took %q, which encoding/json refuses: %v", b, b[:s.i], err)
		}
		if len(viaJSON) != len(x) {
			t.Fatalf("%q: %v, encoding/json %v", b, x, viaJSON)
		}
		for i := range x {
			if math.Float64bits(x[i]) != math.Float64bits(viaJSON[i]) {
				t.Fatalf("%q: value %d: %v, encoding/json %v", b, i, x[i], viaJSON[i])
			}
		}
	})
}

// The inline path against parseNumber's, on 320 numbers: one row of the
// diabetes set 32 times, and 32 rows drawn as bench/serve.sh draws them
// (each feature near its mean, four decimals, Python's ", " separator),
// whose varying lengths a branch predictor cannot learn.
func BenchmarkNumbers32(b *testing.B) {
	row := `59,2,32.1,101,157,93.2,38,4,4.8598,87`
	repeated := []byte(strings.Repeat(row+",", 31) + row + `]`)
	rng := rand.New(rand.NewPCG(1, 2))
	means := []float64{48.5, 1.47, 26.4, 94.6, 189, 115, 49.8, 4.07, 4.64, 91.3}
	var drawn []byte
	for i := range 320 {
		if i > 0 {
			drawn = append(drawn, ", "...)
		}
		v := means[i%10] * (1 + 0.2*rng.NormFloat64())
		drawn = strconv.AppendFloat(drawn, math.Round(v*1e4)/1e4, 'f', -1, 64)
	}
	drawn = append(drawn, ']')
	for _, bb := range []struct {
		name    string
		numbers func(*scanner, []float64, *bool) ([]float64, int, bool)
		body    []byte
	}{
		{"inline", (*scanner).numbers, repeated},
		{"parseNumber", numbersRef, repeated},
		{"inline/drawn", (*scanner).numbers, drawn},
		{"parseNumber/drawn", numbersRef, drawn},
	} {
		body := bb.body
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			x := make([]float64, 0, 320)
			for b.Loop() {
				s := scanner{b: body}
				allInt := true
				var n int
				var ok bool
				if x, n, ok = bb.numbers(&s, x[:0], &allInt); !ok || n != 320 {
					b.Fatal(n, ok)
				}
			}
		})
	}
}
