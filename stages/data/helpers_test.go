package data_test

import (
	"bufio"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// writeRandomCSV writes rows×cols random numbers (the last column named
// "y") with the given significant digits, returning the byte count.
func writeRandomCSV(tb testing.TB, w io.Writer, rows, cols, digits int, seed uint64) int64 {
	tb.Helper()
	bw := bufio.NewWriterSize(w, 1<<20)
	n := int64(0)
	write := func(b []byte) {
		m, err := bw.Write(b)
		if err != nil {
			tb.Fatal(err)
		}
		n += int64(m)
	}
	var buf []byte
	for j := range cols {
		if j > 0 {
			buf = append(buf, ',')
		}
		if j == cols-1 {
			buf = append(buf, 'y')
		} else {
			buf = append(buf, 'x')
			buf = strconv.AppendInt(buf, int64(j), 10)
		}
	}
	write(append(buf, '\n'))
	rng := rand.New(rand.NewPCG(seed, 0))
	for range rows {
		buf = buf[:0]
		for j := range cols {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendFloat(buf, rng.NormFloat64()*100, 'g', digits, 64)
		}
		write(append(buf, '\n'))
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// randomCSVFile writes a random CSV under dir and returns its path and size.
func randomCSVFile(tb testing.TB, dir string, rows, cols, digits int) (string, int64) {
	tb.Helper()
	path := filepath.Join(dir, "random.csv")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	n := writeRandomCSV(tb, f, rows, cols, digits, 1)
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path, n
}

// plainReader hides the size of the reader it wraps, so that Read cannot
// pre-size and takes the chunked path.
type plainReader struct{ r io.Reader }

func (p plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// oneByteReader returns at most one byte per call, to exercise lines that
// straddle reads.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	return o.r.Read(b[:1])
}
