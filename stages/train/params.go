package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// ErrInvalidParams is wrapped by every error about training parameters.
var ErrInvalidParams = errors.New("invalid training parameters")

// Params are the built-in trainer's hyper-parameters, the spec's
// train.params.
type Params struct {
	// Epochs is the number of passes over the training rows.
	Epochs int `json:"epochs"`
	// LearningRate is α₀, the step size of the first epoch.
	LearningRate float64 `json:"learning_rate"`
	// LRDecay is β in α_t = α₀ / (1 + β·t); 0 keeps the rate constant.
	LRDecay float64 `json:"lr_decay"`
	// ClipNorm caps the Euclidean norm of each gradient; 0 turns clipping off.
	ClipNorm float64 `json:"clip_norm"`
	// BatchSize is the number of rows per step; 0 (or at least the number
	// of rows) means full-batch gradient descent.
	BatchSize int `json:"batch_size"`
}

// DefaultParams returns the documented defaults. They bring the training MSE
// of the bundled diabetes example within 1% of the least-squares optimum.
func DefaultParams() Params {
	return Params{Epochs: 300, LearningRate: 0.1, LRDecay: 0.01, ClipNorm: 10, BatchSize: 0}
}

// Validate checks every parameter's range.
func (p Params) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case p.Epochs < 1:
		return fmt.Errorf("%w: epochs is %d, want at least 1", ErrInvalidParams, p.Epochs)
	case !finite(p.LearningRate) || p.LearningRate <= 0:
		return fmt.Errorf("%w: learning_rate is %v, want a finite number above 0", ErrInvalidParams, p.LearningRate)
	case !finite(p.LRDecay) || p.LRDecay < 0:
		return fmt.Errorf("%w: lr_decay is %v, want a finite number at least 0", ErrInvalidParams, p.LRDecay)
	case !finite(p.ClipNorm) || p.ClipNorm < 0:
		return fmt.Errorf("%w: clip_norm is %v, want a finite number at least 0", ErrInvalidParams, p.ClipNorm)
	case p.BatchSize < 0:
		return fmt.Errorf("%w: batch_size is %d, want at least 0", ErrInvalidParams, p.BatchSize)
	}
	return nil
}

// LearningRateAt returns the step size of epoch t (counted from 0):
// α_t = α₀ / (1 + β·t).
func (p Params) LearningRateAt(t int) float64 {
	return p.LearningRate / (1 + p.LRDecay*float64(t))
}

// DecodeParams reads the spec's train.params map: missing keys keep their
// defaults, and an unknown key or a value of the wrong type is an error
// naming the key. The result is validated.
func DecodeParams(m map[string]any) (Params, error) {
	p := DefaultParams()
	b, err := json.Marshal(m)
	if err != nil {
		return Params{}, fmt.Errorf("%w: %w", ErrInvalidParams, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Params{}, fmt.Errorf("%w: %w", ErrInvalidParams, err)
	}
	if err := p.Validate(); err != nil {
		return Params{}, err
	}
	return p, nil
}
