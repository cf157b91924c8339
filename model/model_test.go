package model_test

import (
	"errors"
	"math"
	"testing"

	"github.com/modelci/modelci/model"
)

func linear() *model.Linear {
	return &model.Linear{
		Schema: model.Schema, Name: "m", Version: "1.0.0",
		Features: []string{"a", "b"}, Target: "y",
		Mean: []float64{1, 2}, Scale: []float64{2, 4},
		Weights: []float64{3, -1}, Bias: 10,
	}
}

func TestPredictAndStandardize(t *testing.T) {
	m := linear()
	x := []float64{5, 10}
	// (5−1)/2 = 2, (10−2)/4 = 2: 10 + 3·2 − 1·2 = 14.
	if got := m.Predict(x); got != 14 {
		t.Fatalf("Predict = %v, want 14", got)
	}
	z := m.Standardize(nil, x)
	if z[0] != 2 || z[1] != 2 {
		t.Fatalf("Standardize = %v, want [2 2]", z)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	b, err := linear().Encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := m.Encode()
	if string(again) != string(b) {
		t.Fatalf("encoding is not canonical:\n%s\n%s", b, again)
	}
}

func TestValidate(t *testing.T) {
	tests := map[string]func(*model.Linear){
		"schema":        func(m *model.Linear) { m.Schema = "x" },
		"no features":   func(m *model.Linear) { m.Features = nil },
		"short weights": func(m *model.Linear) { m.Weights = m.Weights[:1] },
		"zero scale":    func(m *model.Linear) { m.Scale[1] = 0 },
		"NaN mean":      func(m *model.Linear) { m.Mean[0] = math.NaN() },
		"Inf bias":      func(m *model.Linear) { m.Bias = math.Inf(1) },
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			m := linear()
			edit(m)
			if err := m.Validate(); !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			if _, err := m.Encode(); !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("Encode = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := model.Decode([]byte("{")); !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("Decode of bad JSON = %v, want ErrInvalid", err)
	}
}
