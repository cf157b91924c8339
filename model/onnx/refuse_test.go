package onnx_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelci/modelci/model/onnx"
)

// TestLoadHandBuilt checks that the hand-built linear model loads and runs
// (so that the refusals below fail for the reason they name).
func TestLoadHandBuilt(t *testing.T) {
	m, err := onnx.Load(linear(17))
	if err != nil {
		t.Fatal(err)
	}
	y, shape, err := m.Run([]float32{1, 1, 1, 1, 0, -1}, 2, 3)
	if err != nil || len(shape) != 2 || shape[0] != 2 || shape[1] != 1 || y[0] != 6.5 || y[1] != -1.5 {
		t.Fatalf("Run = %v, %v, %v; want [6.5 -1.5] [2 1]", y, shape, err)
	}
}

// TestLoadRefusals: each model is refused with the named sentinel error and a
// message that names the offending item.
func TestLoadRefusals(t *testing.T) {
	x := input("x", 1, "batch", 3)
	y := output("y", 1, "batch", 1)
	w := initializer(floatTensor("W", []int64{1, 3}, []float32{1, 2, 3}))
	gemm := node("Gemm", "fc", []string{"x", "W"}, []string{"y"}, attrInt("transB", 1))
	full := linear(17)
	for _, c := range []struct {
		name    string
		b       []byte
		want    error
		mention string
	}{
		{"unsupported op", model(17, graph(x, y, node("Conv", "conv1", []string{"x", "W"}, []string{"y"}), w)),
			onnx.ErrUnsupportedOp, `Conv (node "conv1") at opset 17`},
		{"unsupported op lists the supported", model(13, graph(x, y, node("LSTM", "", []string{"x", "W"}, []string{"y"}), w)),
			onnx.ErrUnsupportedOp, "LSTM (node #0 (unnamed)) at opset 13; supported operators: Add, Cast, Concat"},
		{"other domain", model(17, graph(x, y, msg(1, cat(str(3, "fg"), str(4, "FusedGemm"), str(7, "com.microsoft"), str(1, "x"), str(1, "W"), str(2, "y"))), w)),
			onnx.ErrUnsupportedOp, `FusedGemm of domain "com.microsoft" (node "fg")`},
		{"opset 12", linear(12), onnx.ErrOpset, "opset 12"},
		{"opset 18", linear(18), onnx.ErrOpset, "opset 18"},
		{"no default opset", cat(varint(1, 8), msg(8, cat(str(1, "com.microsoft"), varint(2, 1))), msg(7, graph(x, y, gemm, w))),
			onnx.ErrOpset, "no default-domain opset"},
		{"external data", model(17, graph(x, y, gemm, initializer(cat(str(8, "W"), varint(2, 1), varint(1, 1), varint(1, 3),
			msg(13, cat(str(1, "location"), str(2, "weights.bin"))))))),
			onnx.ErrExternalData, `initializer #0 "W"`},
		{"external data location", model(17, graph(x, y, gemm, initializer(cat(str(8, "W"), varint(2, 1), varint(1, 1), varint(1, 3), varint(14, 1))))),
			onnx.ErrExternalData, `"W" keeps its data in an external file`},
		{"missing input", model(17, graph(x, y, node("Gemm", "fc", []string{"x", "nope"}, []string{"y"}))),
			onnx.ErrUndefined, `node "fc" (Gemm) uses "nope"`},
		{"used before defined", model(17, graph(x, y, w,
			node("Relu", "late", []string{"h"}, []string{"y"}),
			node("Gemm", "fc", []string{"x", "W"}, []string{"h"}, attrInt("transB", 1)))),
			onnx.ErrUndefined, `node "late" (Relu) uses "h"`},
		{"output undefined", model(17, graph(x, output("z", 1, "batch", 1), gemm, w)),
			onnx.ErrUndefined, `graph output "z"`},
		{"defined twice", model(17, graph(x, y, w, gemm, node("Relu", "again", []string{"x"}, []string{"y"}))),
			onnx.ErrInvalidNode, `node "again" (Relu) defines "y"`},
		{"arity", model(17, graph(x, y, node("Relu", "r", []string{"x", "x"}, []string{"y"}))),
			onnx.ErrInvalidNode, `node "r" (Relu) has 2 inputs, want 1`},
		{"allowzero=1", model(17, graph(x, y, node("Reshape", "rs", []string{"x", "s"}, []string{"y"}, attrInt("allowzero", 1)),
			initializer(int64Tensor("s", []int64{2}, []int64{0, -1})))),
			onnx.ErrUnsupportedAttribute, `node "rs" (Reshape) at opset 17: unsupported attribute: allowzero=1`},
		{"allowzero before opset 14", model(13, graph(x, y, node("Reshape", "rs", []string{"x", "s"}, []string{"y"}, attrInt("allowzero", 0)),
			initializer(int64Tensor("s", []int64{2}, []int64{0, -1})))),
			onnx.ErrUnsupportedAttribute, `attribute "allowzero"`},
		{"Shape start before opset 15", model(14, graph(x, y, node("Shape", "sh", []string{"x"}, []string{"y"}, attrInt("start", 1)))),
			onnx.ErrUnsupportedAttribute, `node "sh" (Shape) at opset 14: unsupported attribute: attribute "start"`},
		{"unknown attribute", model(17, graph(x, y, w, node("Gemm", "fc", []string{"x", "W"}, []string{"y"}, attrInt("transC", 1)))),
			onnx.ErrUnsupportedAttribute, `attribute "transC"`},
		{"attribute type", model(17, graph(x, y, w, node("Gemm", "fc", []string{"x", "W"}, []string{"y"}, cat(str(1, "alpha"), varint(20, 2), varint(3, 2))))),
			onnx.ErrUnsupportedAttribute, `attribute "alpha" has type INT, want FLOAT`},
		{"Cast to DOUBLE", model(17, graph(x, y, node("Cast", "c", []string{"x"}, []string{"y"}, attrInt("to", 11)))),
			onnx.ErrDataType, "Cast to DOUBLE"},
		{"DOUBLE initializer", model(17, graph(x, y, gemm, initializer(cat(str(8, "W"), varint(2, 11), varint(1, 3))))),
			onnx.ErrDataType, `"W" has data type DOUBLE`},
		{"two inputs", model(17, graph(x, input("x2", 1, "batch", 3), y, gemm, w)),
			onnx.ErrSignature, `2 inputs ["x" "x2"]`},
		{"rank 3 input", model(17, graph(input("x", 1, "batch", 3, 1), y, gemm, w)),
			onnx.ErrSignature, `graph input "x" is FLOAT[batch,3,1]`},
		{"INT64 input", model(17, graph(input("x", 7, "batch", 3), y, gemm, w)),
			onnx.ErrSignature, `graph input "x" is INT64[batch,3]`},
		{"two outputs", model(17, graph(x, y, output("W", 1, 1, 3), gemm, w)),
			onnx.ErrSignature, "2 outputs"},
		{"data does not match dims", model(17, graph(x, y, gemm, initializer(floatTensor("W", []int64{2, 3}, []float32{1, 2, 3})))),
			onnx.ErrMalformed, `"W" has shape [2,3] (6 elements) but 3 values`},
		{"truncated", full[:len(full)-7], onnx.ErrMalformed, "model: field 7: unexpected EOF"},
		{"garbage", []byte("this is not an ONNX model"), onnx.ErrMalformed, "model"},
		{"wrong wire type", cat(varint(1, 8), varint(7, 1)), onnx.ErrMalformed, "model.graph: field 7 has wire type varint, want bytes"},
		{"no graph", cat(varint(1, 8), msg(8, cat(str(1, ""), varint(2, 17)))), onnx.ErrMalformed, "no graph"},
		{"empty", nil, onnx.ErrMalformed, "no graph"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := onnx.Load(c.b)
			if !errors.Is(err, c.want) {
				t.Fatalf("Load = %v, %v; want %v", m, err, c.want)
			}
			if m != nil {
				t.Error("Load returned a model with its error")
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("Load: %q does not mention %q", err, c.mention)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "onnx: ") {
				t.Errorf("Load: %q lacks the onnx: prefix", err)
			}
		})
	}
}

// TestRunRefusals: Run checks its arguments (ErrInput) and reports a node
// that cannot be evaluated by name (ErrEval).
func TestRunRefusals(t *testing.T) {
	m, err := onnx.Load(linear(17))
	if err != nil {
		t.Fatal(err)
	}
	fixed, err := onnx.Load(model(17, graph(input("x", 1, 2, 3), output("y", 1, 2, 1),
		node("Gemm", "fc", []string{"x", "W"}, []string{"y"}, attrInt("transB", 1)),
		initializer(floatTensor("W", []int64{1, 3}, []float32{1, 2, 3})))))
	if err != nil {
		t.Fatal(err)
	}
	// Reshape to a fixed [2, 3]: any other batch size cannot be evaluated.
	rs, err := onnx.Load(model(17, graph(input("x", 1, "batch", 3), output("y", 1, 2, 3),
		node("Reshape", "to23", []string{"x", "s"}, []string{"y"}),
		initializer(int64Tensor("s", []int64{2}, []int64{2, 3})))))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name           string
		m              *onnx.Model
		x              []float32
		rows, features int
		want           error
		mention        string
	}{
		{"features", m, make([]float32, 8), 2, 4, onnx.ErrInput, "takes 3 features, got 4"},
		{"length", m, make([]float32, 5), 2, 3, onnx.ErrInput, "5 values for 2 rows of 3 features"},
		{"no rows", m, nil, 0, 3, onnx.ErrInput, "0 rows"},
		{"fixed batch", fixed, make([]float32, 9), 3, 3, onnx.ErrInput, "exactly 2 rows, got 3"},
		{"too large", m, nil, onnx.MaxElements, 3, onnx.ErrInput, "more than"},
		{"eval", rs, make([]float32, 9), 3, 3, onnx.ErrEval, `node "to23" (Reshape): evaluation failed: cannot reshape FLOAT[3,3] to [2 3]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := c.m.Run(c.x, c.rows, c.features)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("Run: %v; want %v mentioning %q", err, c.want, c.mention)
			}
		})
	}
	if _, shape, err := fixed.Run(make([]float32, 6), 2, 3); err != nil || shape[0] != 2 {
		t.Errorf("fixed batch: Run = %v, %v", shape, err)
	}
	if name, f := fixed.Input(); name != "x" || f != 3 {
		t.Errorf("Input() = %q, %d", name, f)
	}
}
