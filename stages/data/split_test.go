package data_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/modelci/modelci/stages/data"
)

// indexed has n rows whose feature "i" and target are the row index.
func indexed(n int) *data.Dataset {
	d := &data.Dataset{Features: []string{"i"}, Target: "y"}
	for i := range n {
		d.X = append(d.X, float64(i))
		d.Y = append(d.Y, float64(i))
	}
	return d
}

func indexes(d *data.Dataset) []int {
	var out []int
	for i := range d.Rows() {
		if d.Row(i)[0] != d.Y[i] {
			panic("row features and target came apart")
		}
		out = append(out, int(d.Y[i]))
	}
	return out
}

func TestSplitSizes(t *testing.T) {
	for _, tc := range []struct {
		rows     int
		fraction float64
		test     int
	}{
		{10, 0.2, 2},
		{442, 0.2, 88}, // 88.4
		{5, 0.5, 3},    // 2.5 rounds away from zero
		{7, 0.5, 4},    // 3.5
		{3, 0.99, 2},   // clamped down: the train side is never empty
		{3, 0.5, 2},    // 1.5 rounds to 2
		{100, 0.999, 99},
		{100, 0.02, 2},
	} {
		train, test, err := data.Split(indexed(tc.rows), tc.fraction, 1)
		if err != nil {
			t.Fatal(err)
		}
		if test.Rows() != tc.test || train.Rows() != tc.rows-tc.test {
			t.Errorf("Split(%d rows, %v): %d train + %d test, want %d + %d", tc.rows, tc.fraction, train.Rows(), test.Rows(), tc.rows-tc.test, tc.test)
		}
	}
}

func TestSplitPartitions(t *testing.T) {
	const n = 1000
	d := indexed(n)
	for seed := range int64(20) {
		train, test, err := data.Split(d, 0.3, seed)
		if err != nil {
			t.Fatal(err)
		}
		tr, te := indexes(train), indexes(test)
		if !slices.IsSorted(tr) || !slices.IsSorted(te) {
			t.Errorf("seed %d: rows not in their original order", seed)
		}
		all := slices.Concat(tr, te)
		slices.Sort(all)
		if len(all) != n || slices.Compact(all)[n-1] != n-1 || len(slices.Compact(all)) != n {
			t.Errorf("seed %d: train and test do not cover the rows exactly once", seed)
		}
		if !slices.Equal(train.Features, d.Features) || test.Target != d.Target {
			t.Errorf("seed %d: columns changed", seed)
		}
	}
}

func TestSplitDeterministic(t *testing.T) {
	d := indexed(500)
	_, a, err := data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(indexes(a), indexes(b)) {
		t.Error("same seed, different test rows")
	}
	_, c, err := data.Split(d, 0.2, 43)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(indexes(a), indexes(c)) {
		t.Error("seeds 42 and 43 drew the same test rows")
	}
	// Splits must not change across Go releases or refactors: recorded
	// metrics compare test digests.
	_, small, err := data.Split(indexed(20), 0.25, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := indexes(small), []int{2, 6, 9, 13, 14}; !slices.Equal(got, want) {
		t.Errorf("seed 1 test rows %v, pinned %v", got, want)
	}
}

func TestSplitDiabetesPinned(t *testing.T) {
	d, err := data.Load(context.Background(), filepath.Join("testdata", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	train, test, err := data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	if train.Rows() != 354 || test.Rows() != 88 {
		t.Errorf("%d train + %d test rows, want 354 + 88", train.Rows(), test.Rows())
	}
	for _, c := range []struct{ what, got, want string }{
		{"train", train.Digest(), "sha256:eb67977ef94fbd781f1483128751c6d5af0514e12c843699aed89bc07da24d97"},
		{"test", test.Digest(), "sha256:32bc1113a783a7166f142947b1cd4948286618ae6f89e348af056adb08a56082"},
	} {
		if c.got != c.want {
			t.Errorf("%s digest %s, pinned %s", c.what, c.got, c.want)
		}
	}
}

func TestSplitErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		d        *data.Dataset
		fraction float64
		want     error
	}{
		{"zero fraction", indexed(10), 0, data.ErrFraction},
		{"whole", indexed(10), 1, data.ErrFraction},
		{"negative", indexed(10), -0.2, data.ErrFraction},
		{"above one", indexed(10), 1.5, data.ErrFraction},
		{"NaN", indexed(10), math.NaN(), data.ErrFraction},
		{"one row", indexed(1), 0.5, data.ErrTooFewRows},
		{"no rows", indexed(0), 0.5, data.ErrTooFewRows},
		// The gate needs two test rows.
		{"two rows", indexed(2), 0.5, data.ErrTooFewTestRows},
		{"two rows, most for test", indexed(2), 0.99, data.ErrTooFewTestRows},
		{"one test row", indexed(10), 0.1, data.ErrTooFewTestRows},
		{"no test row", indexed(100), 1e-9, data.ErrTooFewTestRows},
		{"1.49 test rows", indexed(149), 0.01, data.ErrTooFewTestRows},
		{"bad shape", &data.Dataset{Features: []string{"a"}, X: []float64{1}, Y: []float64{1, 2}}, 0.5, data.ErrShape},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := data.Split(tc.d, tc.fraction, 1)
			if !errors.Is(err, tc.want) {
				t.Errorf("Split: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSplitUniform checks that every row is drawn for test about equally
// often across seeds: a biased shuffle (an off-by-one in Fisher–Yates, a
// modulo bias) shows up here. The seeds are fixed, so the counts are too.
func TestSplitUniform(t *testing.T) {
	const n, seeds = 10, 3000
	d := indexed(n)
	counts := make([]int, n)
	for seed := range int64(seeds) {
		_, test, err := data.Split(d, 0.3, seed)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range indexes(test) {
			counts[i]++
		}
	}
	// Each count is Binomial(3000, 0.3): mean 900, sd 25; allow 5 sd.
	for i, c := range counts {
		if c < 900-125 || c > 900+125 {
			t.Errorf("row %d drawn %d times in %d splits, want about 900: %v", i, c, seeds, counts)
		}
	}
}
