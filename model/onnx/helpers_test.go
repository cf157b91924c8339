package onnx_test

import (
	"errors"
	"math"
	"os"
	"testing"

	"github.com/modelci/modelci/model/onnx"
)

// Tolerance: a float value matches when |got − want| ≤ relTol·|want| (so an
// expected 0 must be exactly 0), or both are the same infinity or both NaN.
// The interpreter accumulates dot products in float32 in its own fixed order
// and evaluates Sigmoid, Tanh and Softmax in float64, so it may differ from
// torch and numpy in the last bits; 1e-5 is about 80 float32 ulps (the
// largest difference seen on the committed fixtures is reported by
// TestMaxRelativeError with -v).
const relTol = 1e-5

// maxRel records the largest relative difference close32 has seen.
var maxRel float64

func close32(got, want float32) bool {
	g, w := float64(got), float64(want)
	switch {
	case math.IsNaN(w):
		return math.IsNaN(g)
	case math.IsInf(w, 0) || w == 0:
		return g == w
	}
	rel := math.Abs(g-w) / math.Abs(w)
	maxRel = max(maxRel, rel)
	return rel <= relTol
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
