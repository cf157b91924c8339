package data

import (
	"errors"
	"fmt"
)

// Sentinel errors. Parse failures arrive wrapped in a *ParseError that
// says where; test for the state with errors.Is.
var (
	// ErrEmpty: the input has no header row.
	ErrEmpty = errors.New("empty input: no header row")
	// ErrNoRows: the header is not followed by any data row.
	ErrNoRows = errors.New("no data rows after the header")
	// ErrMissingTarget: no header column carries the target's name.
	ErrMissingTarget = errors.New("target column not found")
	// ErrDuplicateColumn: two header columns share a name.
	ErrDuplicateColumn = errors.New("duplicate column name")
	// ErrEmptyColumn: a header column has no name.
	ErrEmptyColumn = errors.New("empty column name")
	// ErrRagged: a row has more or fewer fields than the header.
	ErrRagged = errors.New("wrong number of fields")
	// ErrNotNumber: a target cell is empty or does not parse as a number
	// (feature cells may be text or empty; targets must be numbers).
	ErrNotNumber = errors.New("not a number")
	// ErrNotFinite: a data cell is NaN or infinite, or overflows float64.
	ErrNotFinite = errors.New("not a finite number")
	// ErrSyntax: malformed CSV (quoting, an over-long line, a carriage
	// return inside a line, text that is not UTF-8).
	ErrSyntax = errors.New("csv syntax error")

	// ErrShape: a Dataset's slices disagree with its column count.
	ErrShape = errors.New("inconsistent dataset shape")
	// ErrFraction: a test fraction outside (0, 1).
	ErrFraction = errors.New("test fraction must be in (0, 1)")
	// ErrTooFewRows: fewer than two rows, so no split leaves both sides non-empty.
	ErrTooFewRows = errors.New("need at least 2 rows to split")
	// ErrTooFewTestRows: the test split would hold fewer than two rows,
	// too few for the gate's interval of the mean loss.
	ErrTooFewTestRows = errors.New("test split would have fewer than 2 rows")
)

// ParseError locates a problem in CSV input. Line and Column are 1-based;
// Column is the field index within the line (not a byte offset), since
// that is what a person looks up in a spreadsheet.
type ParseError struct {
	File   string
	Line   int
	Column int
	Err    error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %v", e.File, e.Line, e.Column, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }
