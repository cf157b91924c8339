package data_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

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
		for _, v := range slices.Concat(d.X, d.Y) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("non-finite value %v", v)
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
