package data_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/data"
)

func TestWriteCSVRoundTrip(t *testing.T) {
	diabetes, err := data.Load(context.Background(), filepath.Join("testdata", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	var random bytes.Buffer
	writeRandomCSV(t, &random, 1000, 8, 17, 3)
	for _, tc := range []struct {
		name string
		d    *data.Dataset
	}{
		{"diabetes", diabetes},
		{"random", mustRead(t, random.String(), "y")},
		{"extremes", &data.Dataset{
			Features: []string{"a", "b", "c"}, Target: "y",
			X: []float64{math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64,
				math.Copysign(0, -1), 0.1, 1e-300, 1 << 53, 1<<53 + 2, 123456789.123456789},
			Y: []float64{math.Pi, -math.E, 2.2250738585072014e-308},
		}},
		{"awkward names", &data.Dataset{
			Features: []string{"a,b", " c ", `say "hi"`, "\ufeffbom", "ünï"}, Target: "tar get",
			X: []float64{1, 2, 3, 4, 5}, Y: []float64{6},
		}},
		{"no features", &data.Dataset{Features: []string{}, Target: "y", Y: []float64{1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := data.WriteCSV(&buf, tc.d); err != nil {
				t.Fatal(err)
			}
			back, err := data.Read(&buf, "written.csv", tc.d.Target)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := back.Digest(), tc.d.Digest(); got != want {
				t.Errorf("digest after round trip %s, want %s", got, want)
			}
			assertEqualBits(t, back, tc.d)
		})
	}
}

// assertEqualBits compares values bit for bit, telling -0 from 0.
func assertEqualBits(t *testing.T, got, want *data.Dataset) {
	t.Helper()
	same := func(a, b []float64) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
				return false
			}
		}
		return true
	}
	if !same(got.X, want.X) || !same(got.Y, want.Y) {
		t.Errorf("values X=%v Y=%v, want X=%v Y=%v", got.X, got.Y, want.X, want.Y)
	}
}

func TestWriteCSVFormat(t *testing.T) {
	d := &data.Dataset{Features: []string{"a", "b"}, Target: "y", X: []float64{1.5, -2, 1e21, 0.1}, Y: []float64{10, 1e-7}}
	var buf bytes.Buffer
	if err := data.WriteCSV(&buf, d); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), "a,b,y\n1.5,-2,10\n1e+21,0.1,1e-07\n"; got != want {
		t.Errorf("WriteCSV wrote %q, want %q", got, want)
	}
}

type failingWriter struct{}

var errDiskFull = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func TestWriteCSVErrors(t *testing.T) {
	ok := func() *data.Dataset {
		return &data.Dataset{Features: []string{"a"}, Target: "y", X: []float64{1, 2}, Y: []float64{3, 4}}
	}
	nan, inf, infX, badShape, newline, empty := ok(), ok(), ok(), ok(), ok(), ok()
	nan.Y[1] = math.NaN()
	inf.Y[0] = math.Inf(-1)
	infX.X[1] = math.Inf(1)
	withText := func(text string) *data.Dataset {
		d := ok()
		d.X[1] = math.NaN()
		d.Text = [][]string{{"", text}}
		return d
	}
	badShape.X = badShape.X[:1]
	newline.Features[0] = "a\nb"
	empty.Target = ""
	for _, tc := range []struct {
		name string
		d    *data.Dataset
		want error
		msg  string
	}{
		{"NaN target", nan, data.ErrNotFinite, `row 2 target "y" is NaN`},
		{"infinite feature", infX, data.ErrNotFinite, `row 2 feature "a" is +Inf`},
		{"infinite target", inf, data.ErrNotFinite, `row 1 target "y" is -Inf`},
		{"text that is a number", withText("1.5"), data.ErrSyntax, `row 2 feature "a": text "1.5" reads back as a number`},
		{"text that is NaN", withText("NaN"), data.ErrSyntax, "reads back as a number"},
		{"text with spaces around", withText(" x"), data.ErrSyntax, "spaces around it"},
		{"text with a line break", withText("x\ny"), data.ErrSyntax, "line break"},
		{"text on a number", func() *data.Dataset { d := withText("x"); d.X[1] = 2; return d }(), data.ErrShape, "both the number 2 and the text"},
		{"bad shape", badShape, data.ErrShape, ""},
		{"line break in name", newline, data.ErrSyntax, "column 1"},
		{"empty name", empty, data.ErrEmptyColumn, "column 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := data.WriteCSV(&bytes.Buffer{}, tc.d)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("WriteCSV: %v, want %v mentioning %q", err, tc.want, tc.msg)
			}
		})
	}
	if err := data.WriteCSV(failingWriter{}, ok()); !errors.Is(err, errDiskFull) {
		t.Errorf("WriteCSV to a failing writer: %v, want %v", err, errDiskFull)
	}
}
