// Package model defines the built-in model document: what the built-in
// trainer writes and what the server reads. It is pure: bytes in, bytes out.
package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// Schema identifies version 1 of the linear model document.
const Schema = "modelci.dev/model/linear/v1"

// FileName is the document's name inside a model directory.
const FileName = "model.json"

// Linear is a linear regression on standardised features:
// y = bias + Σ weights[j] · (x[j] − mean[j]) / scale[j].
type Linear struct {
	Schema   string    `json:"schema"`
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Features []string  `json:"features"`
	Target   string    `json:"target"`
	Mean     []float64 `json:"mean"`
	Scale    []float64 `json:"scale"`
	Weights  []float64 `json:"weights"`
	Bias     float64   `json:"bias"`
}

// ErrInvalid is wrapped by every validation error of a model document.
var ErrInvalid = errors.New("invalid model document")

// NumFeatures is the number of raw features Predict expects.
func (m *Linear) NumFeatures() int { return len(m.Features) }

// Standardize writes the standardised form of the raw features x into dst
// (allocating when dst is too short) and returns it.
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

// Predict returns the prediction for one row of raw features. The caller
// guarantees len(x) == NumFeatures().
func (m *Linear) Predict(x []float64) float64 {
	y := m.Bias
	for j, v := range x {
		y += m.Weights[j] * (v - m.Mean[j]) / m.Scale[j]
	}
	return y
}

// Validate checks the document's shape and that every number is finite.
func (m *Linear) Validate() error {
	if m.Schema != Schema {
		return fmt.Errorf("%w: schema %q, want %q", ErrInvalid, m.Schema, Schema)
	}
	p := len(m.Features)
	if p == 0 {
		return fmt.Errorf("%w: no features", ErrInvalid)
	}
	for name, v := range map[string][]float64{"mean": m.Mean, "scale": m.Scale, "weights": m.Weights} {
		if len(v) != p {
			return fmt.Errorf("%w: %s has %d values for %d features", ErrInvalid, name, len(v), p)
		}
		for j, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("%w: %s[%d] (%s) is %v", ErrInvalid, name, j, m.Features[j], x)
			}
		}
	}
	for j, s := range m.Scale {
		if s == 0 {
			return fmt.Errorf("%w: scale[%d] (%s) is zero", ErrInvalid, j, m.Features[j])
		}
	}
	if math.IsNaN(m.Bias) || math.IsInf(m.Bias, 0) {
		return fmt.Errorf("%w: bias is %v", ErrInvalid, m.Bias)
	}
	return nil
}

// Encode returns the canonical JSON form (stable key order, trailing newline),
// so that the same model always has the same bytes and image digest.
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
