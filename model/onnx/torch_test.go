package onnx_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/modelci/modelci/model/onnx"
)

// expected is testdata/torch/expected.json, written by gen.py: the input
// rows and, per model, torch's own output on them (model.eval(), float32)
// and the operators of each opset's export.
type expected struct {
	Input  [][]float32 `json:"input"`
	Models map[string]struct {
		Ops    map[string][]string `json:"ops"`
		Shape  []int               `json:"shape"`
		Output []float32           `json:"output"`
	} `json:"models"`
}

func loadExpected(t testing.TB) *expected {
	t.Helper()
	var e expected
	if err := json.Unmarshal(readFile(t, "testdata/torch/expected.json"), &e); err != nil {
		t.Fatal(err)
	}
	return &e
}

func (e *expected) rows() ([]float32, int, int) {
	return slices.Concat(e.Input...), len(e.Input), len(e.Input[0])
}

func loadTorch(t testing.TB, name string, opset int) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(readFile(t, fmt.Sprintf("testdata/torch/%s_opset%d.onnx", name, opset)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTorchModels loads the torch exports (the seed's Linear(10, 1), an MLP
// 10→16→1 squeezed to [batch], and a model using the dynamic-shape ops torch
// emits) at every opset 13..17 and checks the accessors and that Run
// reproduces torch's outputs, for the whole batch and row by row (dynamic
// batch axis).
func TestTorchModels(t *testing.T) {
	e := loadExpected(t)
	x, rows, features := e.rows()
	for _, name := range []string{"linear", "mlp", "dyn"} {
		want := e.Models[name]
		for opset := onnx.MinOpset; opset <= onnx.MaxOpset; opset++ {
			t.Run(fmt.Sprintf("%s/opset%d", name, opset), func(t *testing.T) {
				m := loadTorch(t, name, opset)
				if m.Opset() != opset {
					t.Errorf("Opset() = %d, want %d", m.Opset(), opset)
				}
				if ops := m.Ops(); !slices.Equal(ops, want.Ops[fmt.Sprint(opset)]) {
					t.Errorf("Ops() = %v, want %v", ops, want.Ops[fmt.Sprint(opset)])
				}
				if in, f := m.Input(); in != "x" || f != features {
					t.Errorf("Input() = %q, %d; want \"x\", %d", in, f, features)
				}
				if out := m.Output(); out != "y" {
					t.Errorf("Output() = %q, want \"y\"", out)
				}
				y, shape, err := m.Run(x, rows, features)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(shape, want.Shape) {
					t.Fatalf("shape %v, want %v", shape, want.Shape)
				}
				checkClose(t, y, want.Output)
				per := len(want.Output) / rows
				for r := range rows {
					y1, shape1, err := m.Run(x[r*features:(r+1)*features], 1, features)
					if err != nil {
						t.Fatal(err)
					}
					if shape1[0] != 1 || !slices.Equal(shape1[1:], want.Shape[1:]) {
						t.Fatalf("row %d: shape %v", r, shape1)
					}
					checkClose(t, y1, want.Output[r*per:(r+1)*per])
				}
			})
		}
	}
}

func checkClose(t *testing.T, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for k := range want {
		if !close32(got[k], want[k]) {
			t.Errorf("[%d] = %v, want %v (torch)", k, got[k], want[k])
		}
	}
}

// TestRunConcurrent runs one model from many goroutines at once, each with
// its own batch size, and checks every result against a sequential run. Run
// it with -race.
func TestRunConcurrent(t *testing.T) {
	e := loadExpected(t)
	x, rows, features := e.rows()
	for _, name := range []string{"mlp", "dyn"} {
		m := loadTorch(t, name, 17)
		ref := make([][]float32, rows+1)
		for r := 1; r <= rows; r++ {
			y, _, err := m.Run(x[:r*features], r, features)
			if err != nil {
				t.Fatal(err)
			}
			ref[r] = y
		}
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					r := 1 + (g+i)%rows
					in := slices.Clone(x[:r*features])
					y, _, err := m.Run(in, r, features)
					if err == nil && !slices.Equal(y, ref[r]) {
						err = fmt.Errorf("%s: goroutine %d, %d rows: %v, want %v", name, g, r, y, ref[r])
					}
					if err != nil {
						errs <- err
						return
					}
					y[0] = -1 // the caller owns y: scribbling on it must not affect other runs
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

// BenchmarkRunMLP measures Run on the MLP (Linear 10→16, ReLU, Linear 16→1,
// Squeeze) for 1 and 32 rows.
func BenchmarkRunMLP(b *testing.B) {
	m := loadTorch(b, "mlp", 17)
	for _, rows := range []int{1, 32} {
		x := make([]float32, rows*10)
		for k := range x {
			x[k] = float32(k%7) - 3
		}
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := m.Run(x, rows, 10); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMaxRelativeError runs last (file order) and logs the largest relative
// difference from torch and numpy the other tests saw.
func TestMaxRelativeError(t *testing.T) {
	t.Logf("largest relative difference from the fixtures: %.3g (tolerance %g)", maxRel, relTol)
}
