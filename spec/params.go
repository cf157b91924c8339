package spec

import (
	"encoding/json"
	"fmt"

	"go.yaml.in/yaml/v3"

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

// decodeParams decodes train.params once: strictly over the built-in
// trainer's defaults for a built-in model, as free JSON values for an
// external trainer (its own contract).
func (s *Spec) decodeParams(n *yaml.Node) error {
	var v any
	if s.Train.Builtin != "" {
		p := train.DefaultParams()
		if n.Kind != 0 {
			var bp builtinParams
			if err := strictyaml.DecodeNodeAt(s.File, "train.params", n, &bp); err != nil {
				return err
			}
			set(&p.Epochs, bp.Epochs)
			set(&p.LearningRate, bp.LearningRate)
			set(&p.LRDecay, bp.LRDecay)
			set(&p.ClipNorm, bp.ClipNorm)
			set(&p.BatchSize, bp.BatchSize)
			if err := p.Validate(); err != nil {
				return fmt.Errorf("%s:%d: train.params: %w", s.File, n.Line, err)
			}
		}
		s.Train.Linear, v = p, p
	} else {
		m := map[string]any{}
		if n.Kind != 0 {
			if err := n.Decode(&m); err != nil {
				return fmt.Errorf("%s:%d: train.params: %w", s.File, n.Line, err)
			}
		}
		v = m
	}
	// A JSON round trip gives plain JSON values (float64, string, …) either way.
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s:%d: train.params: %w", s.File, n.Line, err)
	}
	s.Train.Params = map[string]any{}
	if err := json.Unmarshal(b, &s.Train.Params); err != nil {
		return fmt.Errorf("%s:%d: train.params: %w", s.File, n.Line, err)
	}
	return nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
