package data_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/modelci/modelci/stages/data"
)

// BenchmarkLoad loads 10^5 rows × 20 columns from a file, reporting MB/s of
// CSV, for short numbers and for float64's full 17 significant digits.
// The encoding/csv peer does the same work the obvious way, for a ratio.
func BenchmarkLoad(b *testing.B) {
	for _, digits := range []int{6, 15, 17} {
		path, size := randomCSVFile(b, b.TempDir(), 100_000, 20, digits)
		b.Run(fmt.Sprintf("digits=%d", digits), func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := data.Load(context.Background(), path, "y"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("digits=%d/peer=encoding-csv", digits), func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if err := loadEncodingCSV(path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func loadEncodingCSV(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = true
	if _, err := r.Read(); err != nil {
		return err
	}
	var x []float64
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		for _, s := range rec {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return err
			}
			x = append(x, v)
		}
	}
}

// BenchmarkDigest hashes a table of 10^5 rows × 20 columns.
func BenchmarkDigest(b *testing.B) {
	path, _ := randomCSVFile(b, b.TempDir(), 100_000, 20, 17)
	d, err := data.Load(context.Background(), path, "y")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(8 * (len(d.X) + len(d.Y))))
	for b.Loop() {
		d.Digest()
	}
}
