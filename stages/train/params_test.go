package train_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/train"
)

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*train.Params)
		ok     bool
	}{
		{name: "defaults", modify: func(*train.Params) {}, ok: true},
		{name: "no decay, no clipping, mini-batch", modify: func(p *train.Params) { p.LRDecay, p.ClipNorm, p.BatchSize = 0, 0, 8 }, ok: true},
		{name: "zero epochs", modify: func(p *train.Params) { p.Epochs = 0 }},
		{name: "zero learning rate", modify: func(p *train.Params) { p.LearningRate = 0 }},
		{name: "NaN learning rate", modify: func(p *train.Params) { p.LearningRate = math.NaN() }},
		{name: "infinite learning rate", modify: func(p *train.Params) { p.LearningRate = math.Inf(1) }},
		{name: "negative decay", modify: func(p *train.Params) { p.LRDecay = -0.1 }},
		{name: "negative clip", modify: func(p *train.Params) { p.ClipNorm = -1 }},
		{name: "infinite clip", modify: func(p *train.Params) { p.ClipNorm = math.Inf(1) }},
		{name: "negative batch", modify: func(p *train.Params) { p.BatchSize = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := train.DefaultParams()
			tt.modify(&p)
			err := p.Validate()
			if tt.ok != (err == nil) {
				t.Fatalf("Validate: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, train.ErrInvalidParams) {
				t.Errorf("Validate: %v does not wrap ErrInvalidParams", err)
			}
		})
	}
}

func TestDecodeParams(t *testing.T) {
	tests := []struct {
		name    string
		in      map[string]any
		want    train.Params
		wantErr string
	}{
		{name: "empty keeps defaults", in: nil, want: train.DefaultParams()},
		{name: "YAML ints and floats", in: map[string]any{"epochs": 50, "learning_rate": 0.5, "batch_size": 16},
			want: train.Params{Epochs: 50, LearningRate: 0.5, LRDecay: 0.01, ClipNorm: 10, BatchSize: 16}},
		{name: "unknown key", in: map[string]any{"epoch": 50}, wantErr: `unknown field "epoch"`},
		{name: "wrong type", in: map[string]any{"epochs": "many"}, wantErr: "epochs"},
		{name: "fractional epochs", in: map[string]any{"epochs": 2.5}, wantErr: "epochs"},
		{name: "out of range", in: map[string]any{"learning_rate": -1}, wantErr: "learning_rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := train.DecodeParams(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, train.ErrInvalidParams) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeParams: %v, want ErrInvalidParams naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
