package data_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/data"
)

// houses is testdata/houses.csv (written by testdata/houses.py): 60 rows,
// a text column (region, some cells empty), a column of numbers and text
// (zone), empty cells in two numeric columns, the target last.
func houses(t *testing.T) *data.Dataset {
	t.Helper()
	d, err := data.Load(context.Background(), filepath.Join("testdata", "houses.csv"), "price")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Pinned: a change here changes every recorded digest of data with text or
// empty cells.
const housesDigest = "sha256:c67a9be6372ac2af60fd3386d56af7c120fe4573133a860d777ce8c40dac3ce7"

type cell struct {
	kind data.CellKind
	v    float64
	text string
}

func cellAt(d *data.Dataset, i, j int) cell {
	k, v, s := d.Cell(i, j)
	return cell{k, v, s}
}

func TestReadHouses(t *testing.T) {
	d := houses(t)
	if want := []string{"sqft", "region", "age", "rooms", "zone"}; !slices.Equal(d.Features, want) || d.Target != "price" || d.Rows() != 60 {
		t.Fatalf("features %q target %q rows %d", d.Features, d.Target, d.Rows())
	}
	for _, c := range []struct {
		i, j int
		want cell
	}{
		{0, 0, cell{data.Number, 1825, ""}},
		{0, 1, cell{data.Text, 0, "north"}},
		{0, 4, cell{data.Number, 1, ""}}, // a number in a column that also holds text
		{3, 1, cell{data.Empty, 0, ""}},  // line 5: "2942,,0.6,…"
		{4, 0, cell{data.Empty, 0, ""}},  // line 6: ",\"north, hills\",…"
		{4, 1, cell{data.Text, 0, "north, hills"}},
		{4, 4, cell{data.Text, 0, "B"}},
		{7, 2, cell{data.Empty, 0, ""}},
		{7, 3, cell{data.Number, 5, ""}},
	} {
		if got := cellAt(d, c.i, c.j); got != c.want {
			t.Errorf("row %d column %q: %+v, want %+v", c.i, d.Features[c.j], got, c.want)
		}
	}
	if d.Text == nil || d.Text[0] != nil || d.Text[1] == nil || d.Text[2] != nil || d.Text[3] != nil || d.Text[4] == nil {
		t.Errorf("text columns %v, want region and zone only", d.Text != nil)
	}
	for i, l := range d.Lines {
		if int(l) != i+2 {
			t.Fatalf("row %d at line %d, want %d", i, l, i+2)
		}
	}
	if d.Numeric() {
		t.Error("Numeric() with text and empty cells")
	}
	// Stable across reads, and pinned.
	if a, b := d.Digest(), houses(t).Digest(); a != b || a != housesDigest {
		t.Errorf("digests %s and %s, pinned %s", a, b, housesDigest)
	}
}

// TestDigestV2CanonicalForm recomputes the digest of a data set with text
// and empty cells from the form documented on Digest.
func TestDigestV2CanonicalForm(t *testing.T) {
	d := houses(t)
	var b []byte
	u64 := func(v uint64) { b = binary.LittleEndian.AppendUint64(b, v) }
	str := func(s string) { u64(uint64(len(s))); b = append(b, s...) }
	b = append(b, "modelci.dev/dataset/v2\n"...)
	u64(uint64(len(d.Features)))
	for _, f := range d.Features {
		str(f)
	}
	str(d.Target)
	u64(uint64(d.Rows()))
	for i := range d.Rows() {
		for j := range d.Features {
			switch c := cellAt(d, i, j); c.kind {
			case data.Number:
				b = append(b, 'n')
				u64(math.Float64bits(c.v))
			case data.Empty:
				b = append(b, 'e')
			case data.Text:
				b = append(b, 't')
				str(c.text)
			}
		}
		u64(math.Float64bits(d.Y[i]))
	}
	sum := sha256.Sum256(b)
	if got, want := d.Digest(), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Digest() = %s, canonical form hashes to %s", got, want)
	}
}

// The digest depends on cells, not on how the file spelled them.
func TestDigestTextIgnoresFormatting(t *testing.T) {
	want := mustRead(t, "a,b,y\n1.5,red,10\n,\"x, y\",20\n", "y").Digest()
	for _, in := range []string{
		"a,b,y\r\n1.50, red ,1e1\r\n , \"x, y\" ,20\r\n",
		"y,a,b\n10,1.5,\"red\"\n20,\"\",\"x, y\"\n",
		"\xef\xbb\xbfa,b,y\n\"1.5\",\" red \",10\n\"  \",\"x, y\",20.0\n",
	} {
		if got := mustRead(t, in, "y").Digest(); got != want {
			t.Errorf("digest of %q = %s, want %s", in, got, want)
		}
	}
}

// Numbers, empty cells and text never digest alike.
func TestDigestTellsCellsApart(t *testing.T) {
	seen := map[string]string{}
	for _, in := range []string{
		"a,y\n0,1\n", "a,y\n,1\n", "a,y\nx,1\n", "a,y\nX,1\n", "a,y\n\"x,\",1\n", "a,y\nx,2\n",
		"a,b,y\nx,,1\n", "a,b,y\n,x,1\n",
	} {
		dg := mustRead(t, in, "y").Digest()
		if prev, ok := seen[dg]; ok {
			t.Errorf("%q digests like %q", in, prev)
		}
		seen[dg] = in
	}
}

func TestReadCells(t *testing.T) {
	for _, tc := range []struct {
		cell string
		want cell
	}{
		{"1.5", cell{data.Number, 1.5, ""}},
		{"02139", cell{data.Number, 2139, ""}},
		{"0x1p4", cell{data.Number, 16, ""}},
		{"0x10", cell{data.Text, 0, "0x10"}}, // strconv.ParseFloat wants the p exponent
		{`" 7 "`, cell{data.Number, 7, ""}},
		{"", cell{data.Empty, 0, ""}},
		{"   ", cell{data.Empty, 0, ""}},
		{`""`, cell{data.Empty, 0, ""}},
		{`" "`, cell{data.Empty, 0, ""}},
		{"red", cell{data.Text, 0, "red"}},
		{"  red car\t", cell{data.Text, 0, "red car"}},
		{`" red "`, cell{data.Text, 0, "red"}},
		{`"1,000"`, cell{data.Text, 0, "1,000"}},
		{`"say ""hi"""`, cell{data.Text, 0, `say "hi"`}},
		{`a""b`, cell{data.Text, 0, `a""b`}},
		{"1 2", cell{data.Text, 0, "1 2"}},
		{"1_000", cell{data.Number, 1000, ""}}, // as strconv.ParseFloat reads it
		{"-", cell{data.Text, 0, "-"}},
		{"ünï", cell{data.Text, 0, "ünï"}},
	} {
		d := mustRead(t, "a,y\n"+tc.cell+",1\n", "y")
		if got := cellAt(d, 0, 0); got != tc.want {
			t.Errorf("cell %q: %+v, want %+v", tc.cell, got, tc.want)
		}
	}
}

// TestSplitPassesCellsThrough: an external trainer's train.csv (and an
// evaluator's test.csv) hold each row's cells as the data set's file had
// them. houses.csv spells numbers as WriteCSV does and has its target
// last, so the files are exactly the header and the source lines of the
// side's rows.
func TestSplitPassesCellsThrough(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "houses.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	d := houses(t)
	train, test, err := data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	if train.Rows() != 48 || test.Rows() != 12 {
		t.Fatalf("%d train + %d test rows, want 48 + 12", train.Rows(), test.Rows())
	}
	for _, c := range []struct {
		name, digest string
		d            *data.Dataset
	}{
		{"train.csv", "sha256:9952058062ba989d2093c0c80c031de35f66bc7e229aea3b89bfd174dd1d92dc", train},
		{"test.csv", "sha256:19e44067fe5e6801766a4251824fd8340a9520d645bd4a7c1995d99720b14ba9", test},
	} {
		if got := c.d.Digest(); got != c.digest {
			t.Errorf("%s digest %s, pinned %s", c.name, got, c.digest)
		}
		want := lines[0]
		for _, l := range c.d.Lines {
			want += lines[l-1]
		}
		var buf bytes.Buffer
		if err := data.WriteCSV(&buf, c.d); err != nil {
			t.Fatal(err)
		}
		if buf.String() != want {
			t.Errorf("%s:\n%s\nwant the source lines:\n%s", c.name, buf.String(), want)
		}
		back, err := data.Read(&buf, c.name, "price")
		if err != nil {
			t.Fatal(err)
		}
		if back.Digest() != c.digest {
			t.Errorf("%s read back digests %s, want %s", c.name, back.Digest(), c.digest)
		}
	}
	// Rows keep their cells and their lines.
	for i := range test.Rows() {
		row := int(test.Lines[i]) - 2
		for j := range d.Features {
			if got, want := cellAt(test, i, j), cellAt(d, row, j); got != want {
				t.Errorf("test row %d (line %d) column %q: %+v, source %+v", i, test.Lines[i], d.Features[j], got, want)
			}
		}
	}
}

func TestCellError(t *testing.T) {
	errBad := errors.New("bad cell")
	d := houses(t)
	err := d.CellError(4, 1, errBad)
	var pe *data.ParseError
	if !errors.As(err, &pe) || !errors.Is(err, errBad) || err.Error() != filepath.Join("testdata", "houses.csv")+":6:2: bad cell" {
		t.Errorf("CellError = %v", err)
	}
	// The target first: features start in the file's second column.
	d = mustRead(t, "y,a,b\n1,2,3\n\n4,5,6\n", "y")
	if err := d.CellError(1, 1, errBad); err.Error() != "in.csv:4:3: bad cell" {
		t.Errorf("CellError = %v, want in.csv:4:3", err)
	}
	_, test, err := data.Split(mustRead(t, "a,y,b\n1,2,3\n4,5,6\n7,8,9\n10,11,12\n", "y"), 0.5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := test.CellError(1, 1, errBad); !strings.HasSuffix(err.Error(), ":3: bad cell") || !strings.HasPrefix(err.Error(), "in.csv:") {
		t.Errorf("CellError on a split = %v, want in.csv:LINE:3", err)
	}
	// Made in code: no file to point into.
	d = &data.Dataset{Features: []string{"a"}, Target: "y", X: []float64{1}, Y: []float64{2}}
	if err := d.CellError(0, 0, errBad); err.Error() != `row 1, column "a": bad cell` {
		t.Errorf("CellError = %v", err)
	}
}

// TestTooSmallToSplit: a data set that cannot give two test rows is refused
// by the data stage's split, with a named error.
func TestTooSmallToSplit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tiny.csv")
	if err := os.WriteFile(path, []byte("a,y\n1,2\n3,4\n5,6\n7,8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := data.Load(context.Background(), path, "y")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = data.Split(d, 0.2, 42)
	if !errors.Is(err, data.ErrTooFewTestRows) || !strings.Contains(err.Error(), "4 rows with test fraction 0.2 leave 1 test row") {
		t.Fatalf("Split of 4 rows: %v, want ErrTooFewTestRows", err)
	}
	if _, test, err := data.Split(d, 0.5, 42); err != nil || test.Rows() != 2 {
		t.Fatalf("Split of 4 rows in halves: %v", err)
	}
}
