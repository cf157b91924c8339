package data_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/data"
)

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		target   string // "y" when empty
		want     error
		where    string // "line:column"
		msg      string // also in the message
	}{
		{name: "empty file", in: "", want: data.ErrEmpty, where: "1:1"},
		{name: "only blank lines", in: "\n\r\n", want: data.ErrEmpty, where: "3:1"},
		{name: "only a byte order mark", in: "\xef\xbb\xbf", want: data.ErrEmpty, where: "1:1"},
		{name: "header without rows", in: "a,y\n", want: data.ErrNoRows, where: "2:1"},
		{name: "header without rows or newline", in: "a,y", want: data.ErrNoRows, where: "1:1"},
		{name: "header then blank lines", in: "a,y\n\n\n", want: data.ErrNoRows, where: "4:1"},
		{name: "missing target", in: "a,b\n1,2\n", want: data.ErrMissingTarget, where: "1:1", msg: `no column "y"; columns are "a", "b"`},
		{name: "target differs in case", in: "a,Y\n1,2\n", want: data.ErrMissingTarget, where: "1:1"},
		{name: "duplicate name", in: "a,b,a,y\n1,2,3,4\n", want: data.ErrDuplicateColumn, where: "1:3", msg: `"a" repeats column 1`},
		{name: "duplicate after trimming", in: "a, a ,y\n1,2,3\n", want: data.ErrDuplicateColumn, where: "1:2"},
		{name: "empty name", in: "a,,y\n1,2,3\n", want: data.ErrEmptyColumn, where: "1:2"},
		{name: "trailing comma in header", in: "a,y,\n1,2,\n", want: data.ErrEmptyColumn, where: "1:3"},
		{name: "blank quoted name", in: `a,"",y` + "\n1,2,3\n", want: data.ErrEmptyColumn, where: "1:2"},
		{name: "too many fields", in: "a,y\n1,2\n1,2,3\n", want: data.ErrRagged, where: "3:3", msg: "row has 3 fields, header has 2"},
		{name: "too few fields", in: "a,b,y\n1,2,3\n1,2\n", want: data.ErrRagged, where: "3:3", msg: "row has 2 fields, header has 3"},
		{name: "trailing comma in row", in: "a,y\n1,2,\n", want: data.ErrRagged, where: "2:3"},
		{name: "word", in: "a,y\n1,2\n1,abc\n", want: data.ErrNotNumber, where: "3:2", msg: `cell "abc" in column "y"`},
		{name: "empty target", in: "a,y\n1,\n", want: data.ErrNotNumber, where: "2:2", msg: `cell "" in column "y": not a number (the target column takes numbers only)`},
		{name: "blank cell", in: "a,y\n1,  \n", want: data.ErrNotNumber, where: "2:2"},
		{name: "quoted empty target", in: "y,a\n\"\",1\n", want: data.ErrNotNumber, where: "2:1"},
		{name: "two numbers in the target", in: "a,y\n1,2 3\n", want: data.ErrNotNumber, where: "2:2"},
		{name: "thousands separator in the target", in: "a,y\n3,\"1,000\"\n", want: data.ErrNotNumber, where: "2:2", msg: `cell "1,000" in column "y"`},
		{name: "bare carriage return", in: "a,y\n1\r2,3\n", want: data.ErrSyntax, where: "2:1", msg: `carriage return in cell "1\r2" in column "a"`},
		{name: "text not UTF-8", in: "a,b,y\n1,\xff\xfe,3\n", want: data.ErrSyntax, where: "2:2", msg: "not valid UTF-8"},
		{name: "NaN among text", in: "a,y\nred,1\nNaN,2\n", want: data.ErrNotFinite, where: "3:1"},
		{name: "NaN", in: "a,y\nNaN,1\n", want: data.ErrNotFinite, where: "2:1"},
		{name: "nan", in: "a,y\n1,nan\n", want: data.ErrNotFinite, where: "2:2"},
		{name: "Inf", in: "a,y\n1,2\n+Inf,1\n", want: data.ErrNotFinite, where: "3:1"},
		{name: "infinity", in: "a,y\n-infinity,1\n", want: data.ErrNotFinite, where: "2:1"},
		{name: "overflow", in: "a,y\n1,1e999\n", want: data.ErrNotFinite, where: "2:2", msg: "overflows float64"},
		{name: "quoted newline", in: "a,y\n\"1\n2\",3\n", want: data.ErrSyntax, where: "2:1", msg: "may not span lines"},
		{name: "quoted newline in header", in: "a,\"y\nz\"\n1,2\n", want: data.ErrSyntax, where: "1:2"},
		{name: "text after quote", in: "a,y\n1,\"2\"3\n", want: data.ErrSyntax, where: "2:2"},
		{name: "carriage returns alone", in: "a,y\r1,2\r", want: data.ErrSyntax, where: "1:2", msg: "carriage return"},
		{name: "bare quote in name", in: "a\"b,y\n1,2\n", want: data.ErrSyntax, where: "1:1"},
		{name: "line numbers count blank lines and CRLF", in: "a,y\r\n\r\n1,2\r\n\r\n1,x\r\n", want: data.ErrNotNumber, where: "5:2"},
		{name: "leading blank lines", in: "\n\na,y\n1,x\n", want: data.ErrNotNumber, where: "4:2"},
		{name: "byte order mark", in: "\xef\xbb\xbfa,y\n1,z\n", want: data.ErrNotNumber, where: "2:2"},
		{name: "long cell is shortened", in: "a,y\n1," + strings.Repeat("z", 100) + "\n", want: data.ErrNotNumber, where: "2:2", msg: `"` + strings.Repeat("z", 40) + `"…`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				target = "y"
			}
			d, err := data.Read(strings.NewReader(tc.in), "in.csv", target)
			if err == nil {
				t.Fatalf("Read succeeded with %d rows, want %v", d.Rows(), tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %q", err, tc.want)
			}
			if prefix := "in.csv:" + tc.where + ": "; !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
			var pe *data.ParseError
			if !errors.As(err, &pe) || pe.File != "in.csv" {
				t.Errorf("error %q is not a *ParseError for in.csv", err)
			}
		})
	}
}

func TestReadFormats(t *testing.T) {
	want := &data.Dataset{Features: []string{"a", "b"}, Target: "y", X: []float64{1.5, -2, 0.25, 3e10}, Y: []float64{10, 20}}
	for _, tc := range []struct{ name, in string }{
		{"plain", "a,b,y\n1.5,-2,10\n0.25,3e10,20\n"},
		{"no final newline", "a,b,y\n1.5,-2,10\n0.25,3e10,20"},
		{"CRLF", "a,b,y\r\n1.5,-2,10\r\n0.25,3e10,20\r\n"},
		{"byte order mark", "\xef\xbb\xbfa,b,y\n1.5,-2,10\n0.25,3e10,20\n"},
		{"spaces and tabs", " a , b\t,y \n 1.5 ,\t-2 , 10\n0.25 , 3e10,20  \n"},
		{"blank lines", "\na,b,y\n\n1.5,-2,10\r\n\r\n0.25,3e10,20\n\n"},
		{"quoted", "\"a\",\"b\",\"y\"\n\"1.5\", \"-2\" ,10\n0.25,\" 3e10 \",20\n"},
		{"other spellings", "a,b,y\n1.50,-2.0,1e1\n.25,30000000000,+20\n"},
		{"target first", "y,a,b\n10,1.5,-2\n20,0.25,3e10\n"},
		{"target in the middle", "a,y,b\n1.5,10,-2\n0.25,20,3e10\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := data.Read(strings.NewReader(tc.in), "in.csv", "y")
			if err != nil {
				t.Fatal(err)
			}
			assertEqual(t, d, want)
		})
	}
}

func TestReadQuotedNames(t *testing.T) {
	d, err := data.Read(strings.NewReader(`"a,b"," c ","say ""hi""",y`+"\n1,2,3,4\n"), "in.csv", "y")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a,b", " c ", `say "hi"`}; !slices.Equal(d.Features, want) {
		t.Errorf("features %q, want %q", d.Features, want)
	}
}

func TestReadFeatureless(t *testing.T) {
	d, err := data.Read(strings.NewReader("y\n1\n2\n"), "in.csv", "y")
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, d, &data.Dataset{Features: []string{}, Target: "y", Y: []float64{1, 2}})
}

func assertEqual(t *testing.T, got, want *data.Dataset) {
	t.Helper()
	if !slices.Equal(got.Features, want.Features) || got.Target != want.Target {
		t.Errorf("columns %q → %q, want %q → %q", got.Features, got.Target, want.Features, want.Target)
	}
	if !slices.Equal(got.X, want.X) || !slices.Equal(got.Y, want.Y) {
		t.Errorf("values X=%v Y=%v, want X=%v Y=%v", got.X, got.Y, want.X, want.Y)
	}
}

func TestLoadDiabetes(t *testing.T) {
	d, err := data.Load(context.Background(), filepath.Join("testdata", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"}; !slices.Equal(d.Features, want) {
		t.Errorf("features %q, want %q", d.Features, want)
	}
	if d.Target != "target" || d.Rows() != 442 || len(d.X) != 442*10 {
		t.Errorf("target %q, %d rows, %d values; want target, 442 rows, 4420 values", d.Target, d.Rows(), len(d.X))
	}
	// First and last rows of the file.
	if want := []float64{59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87}; !slices.Equal(d.Row(0), want) || d.Y[0] != 151 {
		t.Errorf("row 0 = %v → %v, want %v → 151", d.Row(0), d.Y[0], want)
	}
	if cap(d.X) != len(d.X) || cap(d.Y) != len(d.Y) {
		t.Errorf("capacities %d/%d for lengths %d/%d: appending would write into storage the dataset does not own", cap(d.X), cap(d.Y), len(d.X), len(d.Y))
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := data.Load(context.Background(), filepath.Join(t.TempDir(), "absent.csv"), "y")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}

	path := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(path, []byte("a,y\n1,2\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = data.Load(context.Background(), path, "y")
	if !errors.Is(err, data.ErrRagged) || !strings.HasPrefix(err.Error(), path+":3:2: ") {
		t.Errorf("Load of a ragged file: %v, want %s:3:2 and ErrRagged", err, path)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = data.Load(ctx, filepath.Join("testdata", "diabetes.csv"), "target")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestReadPaths reads the same bytes through every storage path: pre-sized
// from the size (exact, over- and under-estimated) and chunked, and
// through reads of one byte, and checks that they all agree.
func TestReadPaths(t *testing.T) {
	var random bytes.Buffer
	writeRandomCSV(t, &random, 30000, 6, 17, 7)

	short := strings.Repeat("1,2\n", 300000)
	long := strings.Repeat("1.2345678901234,-2.345678901234567\n", 100000)
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"random", random.String()},
		{"short rows then long: overestimate", "a,y\n" + short + long},
		{"long rows then short: underestimate", "a,y\n" + long + short},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := data.Read(strings.NewReader(tc.in), "in.csv", "y")
			if err != nil {
				t.Fatal(err)
			}
			chunked, err := data.Read(plainReader{strings.NewReader(tc.in)}, "in.csv", "y")
			if err != nil {
				t.Fatal(err)
			}
			assertEqual(t, chunked, ref)
			if lines := strings.Count(tc.in, "\n") - 1; ref.Rows() != lines {
				t.Errorf("%d rows, want %d", ref.Rows(), lines)
			}
			if len(ref.X) != cap(ref.X) || len(ref.Y) != cap(ref.Y) {
				t.Errorf("capacities %d/%d for lengths %d/%d", cap(ref.X), cap(ref.Y), len(ref.X), len(ref.Y))
			}
		})
	}
	t.Run("one byte per read", func(t *testing.T) {
		in := random.String()[:100000]
		in = in[:strings.LastIndexByte(in, '\n')+1]
		ref, err := data.Read(strings.NewReader(in), "in.csv", "y")
		if err != nil {
			t.Fatal(err)
		}
		got, err := data.Read(oneByteReader{strings.NewReader(in)}, "in.csv", "y")
		if err != nil {
			t.Fatal(err)
		}
		assertEqual(t, got, ref)
	})
}
