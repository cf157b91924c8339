package serve

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

var sig3 = &v2Sig{features: features3, input: "input", output: "prediction"}

// The fast path must take the bodies clients send most, so that they
// allocate nothing.
func TestDecodeV2FastTakes(t *testing.T) {
	for _, body := range []string{
		`{"inputs":[{"name":"input","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5,6]}]}`,
		`{"id":"42","inputs":[{"name":"input","shape":[2,3],"datatype":"FP64","data":[[1,2,3],[4,5,6]]}]}`,
		` { "inputs" : [ { "data" : [ 1 , 2.5e-3 , -3 ] , "datatype" : "FP32" , "shape" : [ 1 , 3 ] , "name" : "input" } ] , "id" : "x" } `,
		`{"inputs":[{"name":"a","shape":[2],"datatype":"INT64","data":[1,2]},{"name":"c","shape":[2,1],"datatype":"FP64","data":[[5],[6]]},{"name":"b","shape":[2],"datatype":"FP32","data":[3,4]}]}`,
	} {
		var sc v2Scratch
		if _, ok := decodeV2Fast([]byte(body), &sc); !ok {
			t.Errorf("fast path refused %s", body)
		}
		d, err := decodeV2([]byte(body), sig3, &sc, nil, nil)
		if err != nil || d.req.rows == 0 {
			t.Errorf("%s: %+v %v", body, d.req, err)
		}
	}
	var sc v2Scratch
	d, err := decodeV2([]byte(`{"inputs":[{"name":"a","shape":[2],"datatype":"INT64","data":[1,2]},{"name":"c","shape":[2,1],"datatype":"FP64","data":[[5],[6]]},{"name":"b","shape":[2],"datatype":"FP32","data":[3,4]}]}`), sig3, &sc, nil, nil)
	if err != nil || d.req.rows != 2 || d.req.x[0] != 1 || d.req.x[1] != 3 || d.req.x[2] != 5 || d.req.x[3] != 2 || d.req.x[4] != 4 || d.req.x[5] != 6 {
		t.Errorf("per feature: %+v %v, want rows [1 3 5] [2 4 6]", d.req, err)
	}
}

// FuzzDecodeV2 checks that the fast path agrees with encoding/json on
// every body it takes (the same tensors, so the same rows to the bit, or
// the same error), and that no body makes either panic.
func FuzzDecodeV2(f *testing.F) {
	for _, s := range []string{
		`{"inputs":[{"name":"input","shape":[2,3],"datatype":"FP64","data":[1,2,3,4,5,6]}]}`,
		`{"id":"42","inputs":[{"name":"input","shape":[2,3],"datatype":"FP64","data":[[1,2,3],[4,5,6]]}]}`,
		`{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1e39,-0,3]}]}`,
		`{"inputs":[{"name":"a","shape":[2],"datatype":"INT64","data":[1,-0]},{"name":"b","shape":[2],"datatype":"FP64","data":[3,4]},{"name":"c","shape":[2,1],"datatype":"FP64","data":[[5],[6]]}]}`,
		`{"inputs":[{"name":"input","shape":[1,3],"datatype":"BYTES","data":["1","north",""]}],"outputs":[{"name":"prediction"}],"parameters":{}}`,
		`{"inputs":[{"name":"input","shape":[0,3],"datatype":"FP64","data":[]}]}`,
		`{"inputs":[{"name":"a","shape":[1],"datatype":"FP64","data":[1]},{"name":"a","shape":[1],"datatype":"FP64","data":[1]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ssc, fsc v2Scratch
		slow, slowErr := decodeV2Slow(b, sig3, &ssc, nil, nil)
		fsc.reset()
		id, ok := decodeV2Fast(b, &fsc)
		if !ok {
			return
		}
		fast, fastErr := fsc.assemble(sig3, nil, nil)
		if slowErr != nil && (fastErr == nil || fastErr.Error() != slowErr.Error()) {
			t.Fatalf("%q: fast path %v, encoding/json %v", b, fastErr, slowErr)
		}
		if slowErr != nil {
			return
		}
		if fastErr != nil {
			t.Fatalf("%q: fast path %v, encoding/json took it", b, fastErr)
		}
		if fast.rows != slow.req.rows || len(fast.x) != len(slow.req.x) || fast.text != nil || slow.req.text != nil {
			t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, slow.req)
		}
		for i := range fast.x {
			if math.Float64bits(fast.x[i]) != math.Float64bits(slow.req.x[i]) {
				t.Fatalf("%q: value %d: fast path %v, encoding/json %v", b, i, fast.x[i], slow.req.x[i])
			}
		}
		var fastID, slowID string
		if (id == nil) != (slow.id == nil) {
			t.Fatalf("%q: id %q vs %q", b, id, slow.id)
		}
		if id != nil {
			if json.Unmarshal(id, &fastID) != nil || json.Unmarshal(slow.id, &slowID) != nil || fastID != slowID {
				t.Fatalf("%q: id %q vs %q", b, id, slow.id)
			}
		}
	})
}

// parseNumber must give strconv.ParseFloat's value, to the bit.
func TestParseNumber(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var lits []string
	for _, s := range []string{"0", "-0", "1", "-1", "0.1", "1e22", "1e23", "9007199254740993", "9007199254740992", "4.8598",
		"123456789012345678901234567890", "0.000000000000000000000000001", "1.7976931348623157e308", "5e-324", "2.2250738585072014e-308",
		"1E+2", "1e-2", "0.30000000000000004", "1234567.0000001", "18446744073709551615", "1844674407370955161.5"} {
		lits = append(lits, s)
	}
	for range 50000 {
		v := math.Float64frombits(rng.Uint64())
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		lits = append(lits, strconv.FormatFloat(v, 'g', -1, 64), strconv.FormatFloat(v, 'e', rng.IntN(20), 64))
		w := math.Round(rng.NormFloat64()*math.Pow(10, float64(rng.IntN(8)))) / math.Pow(10, float64(rng.IntN(8)))
		lits = append(lits, strconv.FormatFloat(w, 'f', -1, 64), strconv.FormatFloat(w, 'f', rng.IntN(12), 64))
	}
	for _, lit := range lits {
		want, err := strconv.ParseFloat(lit, 64)
		v, end, integer, ok := parseNumber([]byte(lit+","), 0)
		if err != nil {
			if ok {
				t.Errorf("parseNumber(%q) took a number strconv refuses: %v", lit, err)
			}
			continue
		}
		if !ok || end != len(lit) || math.Float64bits(v) != math.Float64bits(want) {
			t.Fatalf("parseNumber(%q) = %v, %d, %v; strconv %v, %v", lit, v, end, ok, want, err)
		}
		if integer != (strconv.QuoteToASCII(lit) == strconv.Quote(lit) && !containsAny(lit, ".eE")) {
			t.Errorf("parseNumber(%q): integer %v", lit, integer)
		}
		// The scanner's own path for the common numbers agrees too.
		s := scanner{b: []byte(lit + " , " + lit + "]")}
		allInt := true
		x, n, ok := s.numbers(nil, &allInt)
		if !ok || n != 2 || math.Float64bits(x[0]) != math.Float64bits(want) || math.Float64bits(x[1]) != math.Float64bits(want) ||
			allInt != (integer && len(lit) <= 18) {
			t.Fatalf("numbers(%q) = %v, %d, %v, allInt %v; strconv %v", lit, x, n, ok, allInt, want)
		}
	}
	for _, bad := range []string{"", "-", "+1", ".5", "5.", "1e", "1e+", "-x", "Infinity", "NaN", "1e400", "-1e400"} {
		if _, _, _, ok := parseNumber([]byte(bad), 0); ok {
			t.Errorf("parseNumber(%q) ok", bad)
		}
	}
}

func containsAny(s, chars string) bool {
	for _, c := range s {
		for _, d := range chars {
			if c == d {
				return true
			}
		}
	}
	return false
}

// FuzzParseNumber: whatever parseNumber reads is a JSON number that
// strconv reads to the same bits.
func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"0", "-12.5e-3", "4.8598", "1e23", "123456789012345678901234567890", "0.1x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, end, _, ok := parseNumber(b, 0)
		if !ok {
			return
		}
		lit := b[:end]
		var viaJSON float64
		if err := json.Unmarshal(lit, &viaJSON); err != nil {
			t.Fatalf("%q: took %q, which is not a JSON number: %v", b, lit, err)
		}
		if math.Float64bits(v) != math.Float64bits(viaJSON) {
			t.Fatalf("%q: %v, encoding/json %v", lit, v, viaJSON)
		}
	})
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		path          string
		route         route
		name, version string
	}{
		{"/predict", routePredict, "", ""},
		{"/v2", routeV2Server, "", ""},
		{"/v2/", routeV2Server, "", ""},
		{"/v2/health/live", routeV2Live, "", ""},
		{"/v2/models/m", routeV2Model, "m", ""},
		{"/v2/models/m/ready", routeV2ModelReady, "m", ""},
		{"/v2/models/m/infer", routeV2Infer, "m", ""},
		{"/v2/models/m/versions/1.0.0", routeV2ModelVersion, "m", "1.0.0"},
		{"/v2/models/m/versions/1.0.0/ready", routeV2ModelVersionReady, "m", "1.0.0"},
		{"/v2/models/m/versions/1.0.0/infer", routeV2InferVersion, "m", "1.0.0"},
		{"/v2/models/m/versions/", routeOther, "", ""},
		{"/v2/models/", routeOther, "", ""},
		{"/v2/models/a/b", routeOther, "", ""},
		{"/v2/models/m/versions/1/2/infer", routeOther, "", ""},
		{"/v1/models/m", routeV1Model, "m", ""},
		{"/v1/models/m:predict", routeV1Predict, "m", ""},
		{"/v1/models/m:explain", routeOther, "", ""},
		{"/v1/models/:predict", routeOther, "", ""},
		{"/v1/models/a/b", routeOther, "", ""},
		{"/invocations", routeInvocations, "", ""},
		{"/ping", routePing, "", ""},
		{"/pingx", routeOther, "", ""},
	} {
		r, tg := parseRoute([]byte(tc.path))
		if r != tc.route || string(tg.name) != tc.name || string(tg.version) != tc.version {
			t.Errorf("%s: %s %q %q, want %s %q %q", tc.path, routeLabels[r], tg.name, tg.version, routeLabels[tc.route], tc.name, tc.version)
		}
	}
}

func BenchmarkDecodeV2_32(b *testing.B) {
	features := []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}
	sig := &v2Sig{features: features, input: "input", output: "prediction"}
	row := `[59,2,32.1,101,157,93.2,38,4,4.8598,87]`
	body := []byte(`{"inputs":[{"name":"input","shape":[32,10],"datatype":"FP64","data":[` + row + repeat(","+row, 31) + `]}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var sc v2Scratch
	var x []float64
	for b.Loop() {
		d, err := decodeV2(body, sig, &sc, x[:0], nil)
		if err != nil || d.req.rows != 32 {
			b.Fatal(d.req.rows, err)
		}
		x = d.req.x
	}
}

func repeat(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}
