// Package data loads CSV data sets, digests them over canonical content and
// splits them deterministically into train and test rows.
//
// Cells are numbers, empty, or text. The target column must hold numbers
// only; feature columns may hold any of the three, and what a model makes
// of text and empty cells is the model's business (the built-in linear
// model one-hot encodes text columns and imputes empty numbers; an external
// trainer gets the cells as they were).
package data

import (
	"fmt"
	"math"
)

// Dataset is a table held row-major: row i's features are
// X[i*len(Features) : (i+1)*len(Features)] and its target is Y[i].
//
// A feature cell that is not a number is NaN in X: an empty cell, or a
// text cell whose text is in Text. Targets are always numbers.
type Dataset struct {
	Features []string
	Target   string
	X        []float64
	Y        []float64

	// Text holds the text of text cells, by feature column: Text is nil
	// when no cell is text; otherwise it has one entry per feature, nil for
	// a column without text, else one string per row, "" where that row's
	// cell is a number or empty. A text cell is never empty, never a
	// number, and its X entry is NaN.
	Text [][]string

	// File and Lines locate rows in the file they were read from, for
	// errors about a cell: Lines[i] is row i's line (1-based; 0 past line
	// 2³¹−1). A dataset made in code has neither.
	File  string
	Lines []int32
	// targetCol is the target's column in File's header plus one; 0 when
	// unknown.
	targetCol int
}

// Rows is the number of rows.
func (d *Dataset) Rows() int { return len(d.Y) }

// Row returns row i's features (a view, not a copy); NaN marks a cell that
// is not a number.
func (d *Dataset) Row(i int) []float64 {
	p := len(d.Features)
	return d.X[i*p : (i+1)*p : (i+1)*p]
}

// CellKind says what a feature cell holds.
type CellKind uint8

// The kinds of feature cells.
const (
	Number CellKind = iota // a finite number, in X
	Empty                  // nothing: a missing value
	Text                   // text that is not a number, in Text
)

func (k CellKind) String() string {
	switch k {
	case Number:
		return "number"
	case Empty:
		return "empty"
	case Text:
		return "text"
	}
	return fmt.Sprintf("CellKind(%d)", uint8(k))
}

// Cell returns feature j of row i: its kind, its value when a number, its
// text when text.
func (d *Dataset) Cell(i, j int) (kind CellKind, v float64, text string) {
	v = d.X[i*len(d.Features)+j]
	if !math.IsNaN(v) {
		return Number, v, ""
	}
	if d.Text != nil && d.Text[j] != nil && d.Text[j][i] != "" {
		return Text, 0, d.Text[j][i]
	}
	return Empty, 0, ""
}

// RowText returns the text of row i's cells in dst (allocated when too
// short): "" for numbers and empty cells. It returns nil when the dataset
// has no text at all, which callers may take as "no text cell".
func (d *Dataset) RowText(dst []string, i int) []string {
	if d.Text == nil {
		return nil
	}
	p := len(d.Features)
	if cap(dst) < p {
		dst = make([]string, p)
	}
	dst = dst[:p]
	for j := range dst {
		dst[j] = ""
		if d.Text[j] != nil {
			dst[j] = d.Text[j][i]
		}
	}
	return dst
}

// Numeric reports whether every feature cell is a number.
func (d *Dataset) Numeric() bool {
	for _, v := range d.X {
		if v != v { // NaN
			return false
		}
	}
	return true
}

// CellError wraps err with where feature j of row i came from: a
// *ParseError with file:line:column when the dataset was read from a file,
// else the row number and column name.
func (d *Dataset) CellError(i, j int, err error) error {
	if d.File != "" && i < len(d.Lines) && d.Lines[i] > 0 && d.targetCol > 0 {
		col := j + 1
		if col >= d.targetCol {
			col++
		}
		return &ParseError{File: d.File, Line: int(d.Lines[i]), Column: col, Err: err}
	}
	return fmt.Errorf("row %d, column %q: %w", i+1, d.Features[j], err)
}
