package data

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// Split divides d into train and test rows, deterministically for a seed.
//
// The test side has round(Rows()·testFraction) rows, at most Rows()−1 so
// that the train side keeps one; fewer than two test rows is an error
// (ErrTooFewTestRows): the gate's interval of the mean loss needs two. Rows are drawn by a Fisher–Yates permutation of
// the row indexes driven by rand.NewPCG(uint64(seed), 0): for i from n-1
// down to 1, swap i with j uniform in [0, i] (Lemire's multiply-and-reject
// on PCG.Uint64). The first k indexes of the permutation are the test rows.
// The algorithm is spelled out here, not left to rand.Shuffle, so that a
// split stays the same across Go releases.
//
// Both sides keep the rows in their original order, so a split is
// identified by its set of rows alone, and a reader can line test rows up
// with the source file. Rows move whole: numbers, empty cells, text, and
// their line in the file.
func Split(d *Dataset, testFraction float64, seed int64) (train, test *Dataset, err error) {
	if !(testFraction > 0 && testFraction < 1) {
		return nil, nil, fmt.Errorf("split dataset: test fraction %v: %w", testFraction, ErrFraction)
	}
	if err := d.Validate(); err != nil {
		return nil, nil, fmt.Errorf("split dataset: %w", err)
	}
	n := d.Rows()
	if n < 2 {
		return nil, nil, fmt.Errorf("split dataset: %d rows: %w", n, ErrTooFewRows)
	}
	k := int(math.Round(float64(n) * testFraction))
	k = min(max(k, 0), n-1)
	if k < 2 {
		return nil, nil, fmt.Errorf("split dataset: %d rows with test fraction %v leave %d test row(s); use more rows or a larger test fraction: %w",
			n, testFraction, k, ErrTooFewTestRows)
	}

	src := rand.NewPCG(uint64(seed), 0)
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(uniform(src, uint64(i+1)))
		perm[i], perm[j] = perm[j], perm[i]
	}
	inTest := make([]bool, n)
	for _, i := range perm[:k] {
		inTest[i] = true
	}

	p := len(d.Features)
	side := func(rows int) *Dataset {
		s := &Dataset{Features: slices.Clone(d.Features), Target: d.Target,
			X: make([]float64, 0, rows*p), Y: make([]float64, 0, rows),
			File: d.File, targetCol: d.targetCol}
		if d.Lines != nil {
			s.Lines = make([]int32, 0, rows)
		}
		if d.Text != nil {
			s.Text = make([][]string, p)
			for j, col := range d.Text {
				if col != nil {
					s.Text[j] = make([]string, 0, rows)
				}
			}
		}
		return s
	}
	train, test = side(n-k), side(k)
	for i, y := range d.Y {
		dst := train
		if inTest[i] {
			dst = test
		}
		dst.X = append(dst.X, d.Row(i)...)
		dst.Y = append(dst.Y, y)
		if d.Lines != nil {
			dst.Lines = append(dst.Lines, d.Lines[i])
		}
		for j, col := range d.Text {
			if col != nil {
				dst.Text[j] = append(dst.Text[j], col[i])
			}
		}
	}
	// A text column may have no text left on one side.
	for _, s := range []*Dataset{train, test} {
		any := false
		for j, col := range s.Text {
			if col != nil && !slices.ContainsFunc(col, func(t string) bool { return t != "" }) {
				s.Text[j] = nil
			}
			any = any || s.Text[j] != nil
		}
		if !any {
			s.Text = nil
		}
	}
	return train, test, nil
}

// uniform returns a uniform integer in [0, n) without modulo bias
// (Lemire, "Fast Random Integer Generation in an Interval", 2019).
func uniform(src *rand.PCG, n uint64) uint64 {
	hi, lo := bits.Mul64(src.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(src.Uint64(), n)
		}
	}
	return hi
}
