package data_test

import (
	"context"
	"os"
	"runtime"
	"testing"

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
