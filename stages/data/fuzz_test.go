package data_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
)

func FuzzRead(f *testing.F) {
	diabetes, err := os.ReadFile(filepath.Join("testdata", "diabetes.csv"))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(diabetes[:2000]),
		"a,b,y\n1,2,3\n4,5,6\n",
		"\xef\xbb\xbfa,y\r\n1.5,2\r\n",
		"\"a,b\",\"y\"\n\" 1 \",2\n",
		"y\n1\n\n2",
		"a,y\n1,\"2\n3\"\n",
		"a,a,y\n", "a,,y\n", "", "a,y\nNaN,1\n", "a,y\n1e999,1\n", "a,y\n0x1p-2,-0\n",
		"a,b,y\nred,,1\n\"x, \"\"y\"\"\",2,3\n", "a,y\n a b ,1\n,2\n\" \",3\n", "a,b,y\nx\ty,1e3,4\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := data.Read(bytes.NewReader(in), "fuzz.csv", "y")
		if err != nil {
			var pe *data.ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || pe.Column < 1 {
				t.Fatalf("error %q is not a located *ParseError", err)
			}
			return
		}
		if d.Rows() < 1 || len(d.X) != d.Rows()*len(d.Features) || d.Target != "y" {
			t.Fatalf("%d rows, %d features, %d values, target %q", d.Rows(), len(d.Features), len(d.X), d.Target)
		}
		if slices.Contains(d.Features, "y") || slices.Contains(d.Features, "") {
			t.Fatalf("bad feature names %q", d.Features)
		}
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, v := range d.Y {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("non-finite target %v", v)
			}
		}
		// A feature is a finite number, empty, or text: NaN in X.
		for i := range d.Rows() {
			for j := range d.Features {
				kind, v, text := d.Cell(i, j)
				if x := d.Row(i)[j]; math.IsInf(x, 0) || (kind == data.Number) == math.IsNaN(x) || (kind == data.Number && v != x) {
					t.Fatalf("row %d feature %d: %v holds %v", i, j, kind, x)
				}
				if kind == data.Text && (text == "" || strings.Trim(text, " \t") != text || strings.ContainsAny(text, "\r\n")) {
					t.Fatalf("row %d feature %d: text %q", i, j, text)
				}
			}
		}
		// Whatever was read must survive a write and a read unchanged.
		var buf bytes.Buffer
		if err := data.WriteCSV(&buf, d); err != nil {
			t.Fatalf("WriteCSV of what Read returned: %v", err)
		}
		back, err := data.Read(&buf, "written.csv", "y")
		if err != nil {
			t.Fatalf("Read of what WriteCSV wrote: %v\n%q", err, buf.String())
		}
		if back.Digest() != d.Digest() {
			t.Fatalf("digest changed over a round trip:\n%q", buf.String())
		}
	})
}

// FuzzCell: a cell means the same in a CSV file and in a request to the
// server, which reads strings with model.ParseCell: the same number bit for
// bit, the same text, both empty, or both refused as not finite.
func FuzzCell(f *testing.F) {
	for _, s := range []string{"1.5", " 02139 ", "", " ", "north", " north, hills ", `say "hi"`, "NaN", "-inf", "1e999",
		"0x1p-2", "1_000", "0x10", "-0", "1e-400", "ünï", "\t7\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n") {
			return // the reader refuses these; a JSON string never has invalid UTF-8
		}
		in := "a,y\n\"" + strings.ReplaceAll(s, `"`, `""`) + "\",1\n"
		d, rerr := data.Read(strings.NewReader(in), "cell.csv", "y")
		v, text, perr := model.ParseCell(s)
		if rerr != nil || perr != nil {
			if !errors.Is(rerr, data.ErrNotFinite) || !errors.Is(perr, model.ErrNotFinite) {
				t.Fatalf("cell %q: reader %v, ParseCell %v", s, rerr, perr)
			}
			return
		}
		switch kind, dv, dtext := d.Cell(0, 0); kind {
		case data.Number:
			if math.Float64bits(dv) != math.Float64bits(v) || text != "" {
				t.Fatalf("cell %q: reader %v, ParseCell %v %q", s, dv, v, text)
			}
		case data.Empty:
			if !math.IsNaN(v) || text != "" {
				t.Fatalf("cell %q: reader empty, ParseCell %v %q", s, v, text)
			}
		case data.Text:
			if !math.IsNaN(v) || text != dtext {
				t.Fatalf("cell %q: reader text %q, ParseCell %v %q", s, dtext, v, text)
			}
		}
	})
}
