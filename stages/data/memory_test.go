package data_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelci/modelci/stages/data"
)

// TestLoadMemory bounds what loading allocates, relative to the float64
// payload, on both storage paths. TotalAlloc counts every byte allocated
// whether or not it was freed, so it bounds the peak heap from above.
// Not parallel: other tests' allocations would count.
func TestLoadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 30 MB file")
	}
	const rows, cols = 200_000, 20
	path, _ := randomCSVFile(t, t.TempDir(), rows, cols, 6)
	payload := float64(rows * cols * 8)

	for _, tc := range []struct {
		name  string
		load  func() (*data.Dataset, error)
		limit float64 // × payload
	}{
		// Pre-sized from the file size: about the payload itself.
		{"sized", func() (*data.Dataset, error) {
			return data.Load(context.Background(), path, "y")
		}, 1.25},
		// Size unknown: chunks, then one exact copy.
		{"chunked", func() (*data.Dataset, error) {
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			return data.Read(plainReader{f}, path, "y")
		}, 2.2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			d, err := tc.load()
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if d.Rows() != rows || len(d.X) != rows*(cols-1) {
				t.Fatalf("%d rows, %d values; want %d, %d", d.Rows(), len(d.X), rows, rows*(cols-1))
			}
			ratio := float64(after.TotalAlloc-before.TotalAlloc) / payload
			t.Logf("allocated %.2f× the %.0f MB payload", ratio, payload/1e6)
			if ratio > tc.limit {
				t.Errorf("allocated %.2f× the payload, want at most %.2f×", ratio, tc.limit)
			}
		})
	}
}

// lenReader declares far more bytes than it holds, as Len does on readers
// that know their size.
type lenReader struct {
	r    io.Reader
	size int
}

func (l lenReader) Read(b []byte) (int, error) { return l.r.Read(b) }
func (l lenReader) Len() int                   { return l.size }

// statReader declares a huge regular file, as os.File's Stat does.
type statReader struct{ r io.Reader }

func (s statReader) Read(b []byte) (int, error) { return s.r.Read(b) }
func (s statReader) Stat() (fs.FileInfo, error) { return hugeInfo{}, nil }

type hugeInfo struct{}

func (hugeInfo) Name() string       { return "huge.csv" }
func (hugeInfo) Size() int64        { return 1 << 32 }
func (hugeInfo) Mode() fs.FileMode  { return 0o644 }
func (hugeInfo) ModTime() time.Time { return time.Time{} }
func (hugeInfo) IsDir() bool        { return false }
func (hugeInfo) Sys() any           { return nil }

// TestHugeDeclaredSize: storage grows from the rows actually there, never
// from a size the input declares. The code before this test sized its
// storage from Len or Stat and asked for petabytes here.
func TestHugeDeclaredSize(t *testing.T) {
	const in = "a,b,y\n1,2,3\n4,5,6\n"
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"Len", lenReader{strings.NewReader(in), 1 << 32}},
		{"Stat", statReader{strings.NewReader(in)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			d, err := data.Read(tc.r, "huge.csv", "y")
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if d.Rows() != 2 || !slices.Equal(d.X, []float64{1, 2, 4, 5}) {
				t.Errorf("read %d rows %v", d.Rows(), d.X)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
				t.Errorf("allocated %d bytes for two rows", alloc)
			}
		})
	}
}

// TestSparseFile: a file of a huge size (sparse: no disk used) holding two
// rows and then no line end: the reader stops at the over-long line having
// allocated what it reads, not what the size promises.
func TestSparseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparse.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("a,b,y\n1,2,3\n4,5,6\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		f.Close()
		t.Skipf("no sparse files here: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = data.Load(context.Background(), path, "y")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, data.ErrSyntax) || !strings.HasPrefix(err.Error(), path+":4:1: ") || !strings.Contains(err.Error(), "line longer than") {
		t.Fatalf("Load: %v, want a line too long at %s:4:1", err, path)
	}
	// The line buffer doubles up to the 64 MiB line limit: 128 MiB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 160<<20 {
		t.Errorf("allocated %d MiB for a file of two rows", alloc>>20)
	}
}
