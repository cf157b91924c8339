package pipeline

import (
	"encoding/json"
	"fmt"

	"github.com/modelci/modelci/internal/strictyaml"
	"github.com/modelci/modelci/stages/train"
)

// builtinParams mirrors train.Params with pointers, so that a key left out
// keeps its default and an unknown key is an error naming it.
type builtinParams struct {
	Epochs       *int     `yaml:"epochs"`
	LearningRate *float64 `yaml:"learning_rate"`
	LRDecay      *float64 `yaml:"lr_decay"`
	ClipNorm     *float64 `yaml:"clip_norm"`
	BatchSize    *int     `yaml:"batch_size"`
}

// BuiltinParams decodes train.params for the built-in trainer, strictly,
// over the trainer's defaults.
func (s *Spec) BuiltinParams() (train.Params, error) {
	p := train.DefaultParams()
	if s.Train.Params.Kind == 0 {
		return p, nil
	}
	var bp builtinParams
	if err := strictyaml.DecodeNodeAt(s.File, "train.params", &s.Train.Params, &bp); err != nil {
		return p, err
	}
	set(&p.Epochs, bp.Epochs)
	set(&p.LearningRate, bp.LearningRate)
	set(&p.LRDecay, bp.LRDecay)
	set(&p.ClipNorm, bp.ClipNorm)
	set(&p.BatchSize, bp.BatchSize)
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%s:%d: train.params: %w", s.File, s.Train.Params.Line, err)
	}
	return p, nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// ParamsMap is the effective training parameters as JSON values: what
// metrics.json records and what an external trainer gets in MODELCI_PARAMS.
func (s *Spec) ParamsMap() (map[string]any, error) {
	var v any
	if s.Train.Builtin != "" {
		p, err := s.BuiltinParams()
		if err != nil {
			return nil, err
		}
		v = p
	} else {
		m := map[string]any{}
		if s.Train.Params.Kind != 0 {
			if err := s.Train.Params.Decode(&m); err != nil {
				return nil, fmt.Errorf("%s:%d: train.params: %w", s.File, s.Train.Params.Line, err)
			}
		}
		v = m
	}
	// A JSON round trip gives plain JSON values (float64, string, …) either way.
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("train.params: %w", err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("train.params: %w", err)
	}
	return out, nil
}
