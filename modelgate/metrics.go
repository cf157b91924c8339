package modelgate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
)

// MetricsSchema identifies metrics.json v1.
const MetricsSchema = "modelci.dev/metrics/v1"

// Metrics is metrics.json v1 (ARCHITECTURE.md): what training and evaluation
// measured, with enough per-example detail for statistical and paired gates.
type Metrics struct {
	Schema  string         `json:"schema"`
	Train   TrainMetrics   `json:"train"`
	Eval    EvalMetrics    `json:"eval"`
	Params  map[string]any `json:"params"`
	Dataset DatasetInfo    `json:"dataset"`
	Split   SplitInfo      `json:"split"`
}

// TrainMetrics holds the training loss per epoch.
type TrainMetrics struct {
	Loss []float64 `json:"loss"`
}

// EvalMetrics holds the mean evaluation loss and the per-example losses it is the mean of.
type EvalMetrics struct {
	Loss       float64   `json:"loss"`
	PerExample []float64 `json:"per_example"`
}

// DatasetInfo identifies the whole data set.
type DatasetInfo struct {
	Digest string `json:"digest"`
	Rows   int    `json:"rows"`
}

// SplitInfo identifies the test split; paired comparisons need equal TestDigest.
type SplitInfo struct {
	TestDigest   string  `json:"test_digest"`
	TestRows     int     `json:"test_rows"`
	Seed         int64   `json:"seed"`
	TestFraction float64 `json:"test_fraction"`
}

// LossTolerance is how far eval.loss may be from the mean of
// eval.per_example, relative to the mean absolute per-example value: room
// for a different summation order, not for a different quantity.
const LossTolerance = 1e-8

// DecodeMetrics decodes and validates metrics.json v1. Unknown fields, a
// wrong schema, NaN or infinite numbers (which JSON cannot carry, but
// other writers emit as NaN or Infinity) and inconsistent figures are
// errors wrapping the sentinels ErrMetricsSchema, ErrNonFinite,
// ErrEmptyPerExample, ErrEmptyTrainLoss, ErrLossMismatch and ErrRowsMismatch.
func DecodeMetrics(b []byte) (*Metrics, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Metrics
	if err := dec.Decode(&m); err != nil {
		return nil, metricsJSONError(b, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("metrics: data after the JSON document: %w", ErrMetricsSchema)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if err := m.checkFinite(); err != nil {
		return nil, err
	}
	return &m, nil
}

// metricsJSONError names the sentinel behind a JSON decoding error.
func metricsJSONError(b []byte, err error) error {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		off := max(int(syn.Offset)-1, 0)
		rest := b[min(off, len(b)):]
		// The offending byte starts a non-standard literal (NaN, Infinity, -Infinity).
		for _, lit := range []string{"NaN", "nan", "Infinity", "inf", "Inf"} {
			if bytes.HasPrefix(rest, []byte(lit)) {
				return fmt.Errorf("metrics: line %d: %s: %w", lineAt(b, off), lit, ErrNonFinite)
			}
		}
		return fmt.Errorf("metrics: line %d: %v: %w", lineAt(b, off), err, ErrMetricsSchema)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if strings.HasPrefix(typ.Value, "number ") && typ.Type.Kind() == reflect.Float64 {
			return fmt.Errorf("metrics: %s: %s is out of range: %w", typ.Field, strings.TrimPrefix(typ.Value, "number "), ErrNonFinite)
		}
		return fmt.Errorf("metrics: line %d: %s: want %s, got %s: %w", lineAt(b, int(typ.Offset)), typ.Field, typ.Type, typ.Value, ErrMetricsSchema)
	}
	return fmt.Errorf("metrics: %w: %w", err, ErrMetricsSchema)
}

func lineAt(b []byte, off int) int {
	return bytes.Count(b[:min(off, len(b))], []byte("\n")) + 1
}

// Validate checks the structure of m: the schema, non-empty loss lists,
// split.test_rows and eval.loss consistent with eval.per_example. It
// tolerates NaN and infinite losses, which the gate's health check
// reports as a failing model (DecodeMetrics refuses them: JSON cannot
// carry them).
func (m *Metrics) Validate() error {
	if m == nil {
		return fmt.Errorf("metrics: none: %w", ErrMetricsSchema)
	}
	var errs []error
	if m.Schema != MetricsSchema {
		errs = append(errs, fmt.Errorf("metrics: schema %q, want %q: %w", m.Schema, MetricsSchema, ErrMetricsSchema))
	}
	if len(m.Train.Loss) == 0 {
		errs = append(errs, fmt.Errorf("metrics: train.loss: %w", ErrEmptyTrainLoss))
	}
	n := len(m.Eval.PerExample)
	if n == 0 {
		errs = append(errs, fmt.Errorf("metrics: eval.per_example: %w", ErrEmptyPerExample))
	} else {
		if m.Split.TestRows != n {
			errs = append(errs, fmt.Errorf("metrics: split.test_rows is %d, eval.per_example has %d: %w", m.Split.TestRows, n, ErrRowsMismatch))
		}
		mean, scale := meanOf(m.Eval.PerExample), meanAbs(m.Eval.PerExample)
		if finite(mean) && finite(m.Eval.Loss) && math.Abs(m.Eval.Loss-mean) > LossTolerance*math.Max(scale, 1e-300) {
			errs = append(errs, fmt.Errorf("metrics: eval.loss is %v, the mean of eval.per_example is %v: %w", m.Eval.Loss, mean, ErrLossMismatch))
		}
	}
	return errors.Join(errs...)
}

func meanAbs(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += math.Abs(v)
	}
	return s / float64(len(x))
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// checkFinite names the first non-finite loss.
func (m *Metrics) checkFinite() error {
	for i, v := range m.Train.Loss {
		if !finite(v) {
			return fmt.Errorf("metrics: train.loss[%d] is %v: %w", i, v, ErrNonFinite)
		}
	}
	if !finite(m.Eval.Loss) {
		return fmt.Errorf("metrics: eval.loss is %v: %w", m.Eval.Loss, ErrNonFinite)
	}
	for i, v := range m.Eval.PerExample {
		if !finite(v) {
			return fmt.Errorf("metrics: eval.per_example[%d] is %v: %w", i, v, ErrNonFinite)
		}
	}
	if !finite(m.Split.TestFraction) {
		return fmt.Errorf("metrics: split.test_fraction is %v: %w", m.Split.TestFraction, ErrNonFinite)
	}
	return nil
}

// Encode writes m as indented JSON with a final newline, refusing NaN and
// infinite losses (ErrNonFinite) rather than writing what JSON cannot hold.
func (m *Metrics) Encode() ([]byte, error) {
	if err := m.checkFinite(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("metrics: encoding: %w", err)
	}
	return append(b, '\n'), nil
}
