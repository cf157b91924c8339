// Package model defines the built-in model document: what the built-in
// trainer writes and what the server reads. It is pure: bytes in, bytes out.
//
// Two versions exist. linear/v1 is a linear regression on standardised
// numeric features. linear/v2, written only when the training split had a
// text or an empty feature cell, adds one entry per feature in "columns":
// a number column imputes a missing value with its training mean, a
// category column is one-hot encoded over the categories seen in training.
// Features become the model's inputs (one per number column, one per
// category of a category column, in feature then category order), inputs
// are standardised, and mean, scale and weights are per input.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Schema identifies version 1 of the linear model document: numeric
// features only.
const Schema = "modelci.dev/model/linear/v1"

// SchemaV2 identifies version 2: Columns says how each feature becomes
// inputs (imputation, one-hot encoding).
const SchemaV2 = "modelci.dev/model/linear/v2"

// FileName is the document's name inside a model directory.
const FileName = "model.json"

// Column kinds of a v2 document.
const (
	// KindNumber: a numeric feature; a missing value is Impute.
	KindNumber = "number"
	// KindCategory: one input per category, 1 for the row's category and 0
	// for the others, before standardisation.
	KindCategory = "category"
)

// Column says how a v2 document turns one feature into inputs.
type Column struct {
	Kind string `json:"kind"`
	// Impute replaces a missing value of a number column: the mean of the
	// training split's values.
	Impute *float64 `json:"impute,omitempty"`
	// Categories of a category column, sorted by bytes and distinct: the
	// values seen in training. A number in the column is the category
	// spelled as CategoryKey spells it; an empty cell is the category "".
	Categories []string `json:"categories,omitempty"`
}

// Linear is a linear regression on standardised inputs:
// y = bias + Σ weights[k] · (input[k] − mean[k]) / scale[k].
// In v1 the inputs are the raw features; in v2 they are the features after
// imputation and one-hot encoding (Columns).
type Linear struct {
	Schema   string    `json:"schema"`
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Features []string  `json:"features"`
	Target   string    `json:"target"`
	Columns  []Column  `json:"columns,omitempty"`
	Mean     []float64 `json:"mean"`
	Scale    []float64 `json:"scale"`
	Weights  []float64 `json:"weights"`
	Bias     float64   `json:"bias"`

	// layout is what Validate worked out of Columns; rebuilt on every
	// Validate, so a document edited afterwards must be validated again.
	layout *layout
}

type layout struct {
	offset []int            // per feature: its first input
	index  []map[string]int // per category feature: category → position
	inputs int
}

// Errors of Process for a feature value the model cannot take; they arrive
// in a *CellError naming the feature.
var (
	// ErrUnseenCategory: a category feature's value was not seen in training.
	ErrUnseenCategory = errors.New("category not seen in training")
	// ErrNoImputation: a missing value for a linear/v1 model, trained
	// without missing values, which imputes none.
	ErrNoImputation = errors.New("missing value, and the model imputes none")
	// ErrNotNumber: text for a number feature.
	ErrNotNumber = errors.New("not a number")
	// ErrNotFinite: a value is NaN or infinite, or overflows float64.
	ErrNotFinite = errors.New("not a finite number")
)

// ErrInvalid is wrapped by every validation error of a model document.
var ErrInvalid = errors.New("invalid model document")

// CellError is a feature value the model cannot take.
type CellError struct {
	Feature int    // index in Features
	Name    string // the feature's name
	Value   string // the value as text: the category or text; "" when missing
	Err     error
	known   []string // the categories, for the message
}

func (e *CellError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "feature %q: ", e.Name)
	switch {
	case errors.Is(e.Err, ErrUnseenCategory):
		fmt.Fprintf(&b, "category %q not seen in training (the model's categories are %s)", e.Value, QuoteList(e.known))
	case e.Value != "":
		fmt.Fprintf(&b, "%q: %s", e.Value, e.Err)
	default:
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *CellError) Unwrap() error { return e.Err }

// QuoteList quotes names for an error message, the first ten of them and
// how many more.
func QuoteList(s []string) string {
	const most = 10
	var b strings.Builder
	for i, v := range s {
		if i == most {
			fmt.Fprintf(&b, " … (%d more)", len(s)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(v))
	}
	return b.String()
}

// CategoryKey is the category a number stands for in a category column:
// its shortest form ("2139" for 02139 and 2139.0).
func CategoryKey(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// ParseCell reads a cell given as text, as the CSV reader does: without
// spaces and tabs around it, a number when strconv.ParseFloat reads it (it
// must then be finite), empty when nothing is left (a missing value),
// text otherwise. v is NaN unless the cell is a number.
func ParseCell(s string) (v float64, text string, err error) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return math.NaN(), "", nil
	}
	v, perr := strconv.ParseFloat(s, 64)
	switch {
	case perr == nil && !math.IsNaN(v) && !math.IsInf(v, 0):
		return v, "", nil
	case perr == nil, errors.Is(perr, strconv.ErrRange) && math.IsInf(v, 0):
		return math.NaN(), "", fmt.Errorf("%q: %w", s, ErrNotFinite)
	}
	return math.NaN(), s, nil
}

// NumFeatures is the number of raw features a row has.
func (m *Linear) NumFeatures() int { return len(m.Features) }

// NumInputs is the length of the model's input row: NumFeatures() in v1.
func (m *Linear) NumInputs() int { return len(m.Mean) }

// InputName names input k: the feature's name, "name=category" for a
// category's input.
func (m *Linear) InputName(k int) string {
	if m.Columns == nil {
		return m.Features[k]
	}
	for j, c := range m.Columns {
		if c.Kind == KindCategory {
			if k < len(c.Categories) {
				return m.Features[j] + "=" + c.Categories[k]
			}
			k -= len(c.Categories)
			continue
		}
		if k == 0 {
			return m.Features[j]
		}
		k--
	}
	return "input " + strconv.Itoa(k)
}

// Standardize writes the standardised form of the input row x (raw
// features in v1; Process does imputation, one-hot encoding and this
// together) into dst, allocating when dst is too short, and returns it.
func (m *Linear) Standardize(dst, x []float64) []float64 {
	if cap(dst) < len(x) {
		dst = make([]float64, len(x))
	}
	dst = dst[:len(x)]
	for j, v := range x {
		dst[j] = (v - m.Mean[j]) / m.Scale[j]
	}
	return dst
}

// Predict returns the prediction for one row of raw numeric features (NaN
// for a missing value, which a v2 model imputes). The caller guarantees
// len(x) == NumFeatures(). It is NaN for a row Process refuses; rows with
// text take PredictRow.
func (m *Linear) Predict(x []float64) float64 {
	if m.Columns == nil {
		// v1, as it always was: keeps predictions and losses bit for bit.
		y := m.Bias
		for j, v := range x {
			y += m.Weights[j] * (v - m.Mean[j]) / m.Scale[j]
		}
		return y
	}
	y, err := m.PredictRow(x, nil)
	if err != nil {
		return math.NaN()
	}
	return y
}

// PredictRow returns the prediction for one raw row: x as for Process,
// text the text of cells that are not numbers (nil when there are none).
func (m *Linear) PredictRow(x []float64, text []string) (float64, error) {
	if m.Columns == nil && !slices.ContainsFunc(x, math.IsNaN) {
		return m.Predict(x), nil
	}
	z, err := m.Process(nil, x, text)
	if err != nil {
		return math.NaN(), err
	}
	return m.Score(z), nil
}

// Score is the prediction for a processed input row z (what Process
// returns): bias + Σ weights[k]·z[k].
func (m *Linear) Score(z []float64) float64 {
	y := m.Bias
	for k, v := range z {
		y += m.Weights[k] * v
	}
	return y
}

// Process writes the model's input row for one raw row into dst
// (allocating when dst is too short) and returns it: each number feature
// imputed when missing, each category feature one-hot encoded, every input
// standardised. x holds the raw features in Features order, NaN for a cell
// that is not a number; text[j] is the text of such a cell, "" for a
// missing value (text may be nil: every NaN is missing). A value the model
// cannot take is a *CellError.
func (m *Linear) Process(dst, x []float64, text []string) ([]float64, error) {
	l := m.layout
	if l == nil {
		var err error
		if l, err = m.buildLayout(); err != nil {
			return nil, err
		}
	}
	if cap(dst) < l.inputs {
		dst = make([]float64, l.inputs)
	}
	dst = dst[:l.inputs]
	for j, v := range x {
		k := l.offset[j]
		var t string
		if text != nil {
			t = text[j]
		}
		if m.Columns == nil {
			if math.IsNaN(v) {
				if t != "" {
					return nil, &CellError{Feature: j, Name: m.Features[j], Value: t, Err: ErrNotNumber}
				}
				return nil, &CellError{Feature: j, Name: m.Features[j], Err: ErrNoImputation}
			}
			dst[k] = (v - m.Mean[k]) / m.Scale[k]
			continue
		}
		c := &m.Columns[j]
		if c.Kind == KindNumber {
			if math.IsNaN(v) {
				if t != "" {
					return nil, &CellError{Feature: j, Name: m.Features[j], Value: t, Err: ErrNotNumber}
				}
				v = *c.Impute
			}
			dst[k] = (v - m.Mean[k]) / m.Scale[k]
			continue
		}
		key := t
		if !math.IsNaN(v) {
			key = CategoryKey(v)
		}
		pos, ok := l.index[j][key]
		if !ok {
			return nil, &CellError{Feature: j, Name: m.Features[j], Value: key, Err: ErrUnseenCategory, known: c.Categories}
		}
		for q := range c.Categories {
			ind := 0.0
			if q == pos {
				ind = 1
			}
			dst[k+q] = (ind - m.Mean[k+q]) / m.Scale[k+q]
		}
	}
	return dst, nil
}

// Validate checks the document's shape and that every number is finite,
// and prepares the tables Process uses.
func (m *Linear) Validate() error {
	m.layout = nil
	switch m.Schema {
	case Schema:
		if len(m.Columns) > 0 {
			return fmt.Errorf("%w: columns need schema %q", ErrInvalid, SchemaV2)
		}
	case SchemaV2:
	default:
		return fmt.Errorf("%w: schema %q, want %q or %q", ErrInvalid, m.Schema, Schema, SchemaV2)
	}
	p := len(m.Features)
	if p == 0 {
		return fmt.Errorf("%w: no features", ErrInvalid)
	}
	l, err := m.buildLayout()
	if err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		v    []float64
	}{{"mean", m.Mean}, {"scale", m.Scale}, {"weights", m.Weights}} {
		if len(c.v) != l.inputs {
			if m.Columns == nil {
				return fmt.Errorf("%w: %s has %d values for %d features", ErrInvalid, c.name, len(c.v), p)
			}
			return fmt.Errorf("%w: %s has %d values for %d inputs", ErrInvalid, c.name, len(c.v), l.inputs)
		}
		for k, x := range c.v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("%w: %s[%d] (%s) is %v", ErrInvalid, c.name, k, m.InputName(k), x)
			}
		}
	}
	for k, s := range m.Scale {
		if s == 0 {
			return fmt.Errorf("%w: scale[%d] (%s) is zero", ErrInvalid, k, m.InputName(k))
		}
	}
	if math.IsNaN(m.Bias) || math.IsInf(m.Bias, 0) {
		return fmt.Errorf("%w: bias is %v", ErrInvalid, m.Bias)
	}
	m.layout = l
	return nil
}

// buildLayout checks Columns against Features and works out where each
// feature's inputs start.
func (m *Linear) buildLayout() (*layout, error) {
	p := len(m.Features)
	l := &layout{offset: make([]int, p)}
	if m.Columns == nil {
		for j := range l.offset {
			l.offset[j] = j
		}
		l.inputs = p
		return l, nil
	}
	if len(m.Columns) != p {
		return nil, fmt.Errorf("%w: %d columns for %d features", ErrInvalid, len(m.Columns), p)
	}
	seen := make(map[string]bool, p)
	l.index = make([]map[string]int, p)
	for j, c := range m.Columns {
		name := m.Features[j]
		if seen[name] {
			return nil, fmt.Errorf("%w: feature %q appears twice", ErrInvalid, name)
		}
		seen[name] = true
		l.offset[j] = l.inputs
		switch c.Kind {
		case KindNumber:
			if c.Impute == nil || math.IsNaN(*c.Impute) || math.IsInf(*c.Impute, 0) {
				return nil, fmt.Errorf("%w: column %d (%s): a number column needs a finite impute", ErrInvalid, j, name)
			}
			if c.Categories != nil {
				return nil, fmt.Errorf("%w: column %d (%s): a number column has no categories", ErrInvalid, j, name)
			}
			l.inputs++
		case KindCategory:
			if c.Impute != nil {
				return nil, fmt.Errorf("%w: column %d (%s): a category column has no impute", ErrInvalid, j, name)
			}
			if len(c.Categories) == 0 {
				return nil, fmt.Errorf("%w: column %d (%s): no categories", ErrInvalid, j, name)
			}
			idx := make(map[string]int, len(c.Categories))
			for q, cat := range c.Categories {
				if q > 0 && cat <= c.Categories[q-1] {
					return nil, fmt.Errorf("%w: column %d (%s): categories not sorted and distinct at %q", ErrInvalid, j, name, cat)
				}
				if !utf8.ValidString(cat) {
					return nil, fmt.Errorf("%w: column %d (%s): category %q is not UTF-8", ErrInvalid, j, name, cat)
				}
				idx[cat] = q
			}
			l.index[j] = idx
			l.inputs += len(c.Categories)
		default:
			return nil, fmt.Errorf("%w: column %d (%s): kind %q, want %q or %q", ErrInvalid, j, name, c.Kind, KindNumber, KindCategory)
		}
	}
	return l, nil
}

// Encode returns the canonical JSON form (stable key order, trailing newline),
// so that the same model always has the same bytes and image digest. A v1
// document encodes as it always has.
func (m *Linear) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode model: %w", err)
	}
	return append(b, '\n'), nil
}

// Decode parses and validates a model document.
func Decode(b []byte) (*Linear, error) {
	var m Linear
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}
