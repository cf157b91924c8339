package onnx_test

import (
	"errors"
	"math"
	"os"
	"testing"

	"github.com/modelci/modelci/model/onnx"
)

// Tolerance: a value matches when |got − want| ≤ relTol·|want|, or both are
// the same infinity or both NaN. The interpreter accumulates dot products in
// float32 in its own order and evaluates transcendental functions in
// float64, so it may differ from torch and numpy in the last bits; 1e-5 is
// about 80 float32 ulps. For expected values so close to zero that
// cancellation dominates, absTol (1e-6) bounds the difference instead.
const (
	relTol = 1e-5
	absTol = 1e-6
)

func close32(got, want float32) bool {
	g, w := float64(got), float64(want)
	switch {
	case math.IsNaN(w):
		return math.IsNaN(g)
	case math.IsInf(w, 0):
		return g == w
	}
	return math.Abs(g-w) <= math.Max(relTol*math.Abs(w), absTol)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sentinels are the package's sentinel errors; every error wraps one.
var sentinels = []error{
	onnx.ErrMalformed, onnx.ErrOpset, onnx.ErrUnsupportedOp, onnx.ErrUnsupportedAttribute,
	onnx.ErrExternalData, onnx.ErrDataType, onnx.ErrInvalidNode, onnx.ErrUndefined,
	onnx.ErrSignature, onnx.ErrInput, onnx.ErrEval,
}

func sentinel(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}
