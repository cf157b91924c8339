package onnx_test

import (
	"path/filepath"
	"testing"

	"github.com/modelci/modelci/model/onnx"
)

// FuzzLoad: Load never panics, every error wraps one of the package's
// sentinel errors, and a model that loads can be Run (on 1 and 2 rows)
// without panicking, returning a result or a sentinel error. The corpus
// seeds are every committed model and a few hand-built ones.
//
//	go test ./model/onnx/ -run '^$' -fuzz FuzzLoad -fuzztime 30s -fuzzminimizetime 2s
//
// (-fuzzminimizetime keeps the engine from spending the run minimizing new
// corpus entries, during which it reports 0 execs/sec; golang/go#51484.)
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/torch/*.onnx")
	more, _ := filepath.Glob("testdata/node/*/model.onnx")
	refuse, _ := filepath.Glob("testdata/refuse/*.onnx")
	for _, p := range append(append(files, more...), refuse...) {
		f.Add(readFile(f, p))
	}
	f.Add(linear(13))
	f.Add(linear(17))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := onnx.Load(b)
		if err != nil {
			if sentinel(err) == nil {
				t.Fatalf("Load error wraps no sentinel: %v", err)
			}
			if m != nil {
				t.Fatal("Load returned a model with its error")
			}
			return
		}
		_, features := m.Input()
		if features == 0 {
			features = 3
		}
		for rows := 1; rows <= 2; rows++ {
			x := make([]float32, rows*features)
			for k := range x {
				x[k] = float32(k) - 1.5
			}
			y, shape, err := m.Run(x, rows, features)
			if err != nil {
				if sentinel(err) == nil {
					t.Fatalf("Run error wraps no sentinel: %v", err)
				}
				continue
			}
			n := 1
			for _, d := range shape {
				n *= d
			}
			if n != len(y) {
				t.Fatalf("Run: shape %v for %d values", shape, len(y))
			}
		}
	})
}
