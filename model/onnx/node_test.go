package onnx_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/model/onnx"
)

// TestNodeCases runs every case under testdata/node: the official ONNX node
// test cases for the operators the interpreter implements, as onnx 1.12's
// generator writes them (expected outputs computed by the ONNX reference
// implementations in numpy), and gen.py's extra_* cases made the same way.
// Each case's inputs and expected outputs are TensorProto files decoded with
// the package's own decoder.
func TestNodeCases(t *testing.T) {
	dirs, err := filepath.Glob("testdata/node/*")
	if err != nil || len(dirs) < 100 {
		t.Fatalf("found %d node cases (%v); regenerate with testdata/gen.py", len(dirs), err)
	}
	covered := map[string]bool{}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m, err := onnx.LoadGraph(readFile(t, filepath.Join(dir, "model.onnx")))
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range m.Ops() {
				covered[op] = true
			}
			ins := readTensors(t, filepath.Join(dir, "test_data_set_0", "input_*.pb"))
			wants := readTensors(t, filepath.Join(dir, "test_data_set_0", "output_*.pb"))
			got, err := m.Eval(ins)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(wants) {
				t.Fatalf("%d outputs, want %d", len(got), len(wants))
			}
			for k, want := range wants {
				if err := compare(got[k], want); err != nil {
					t.Errorf("output %d: %v", k, err)
				}
			}
		})
	}
	for op := range onnx.Operators() {
		if !covered[op] {
			t.Errorf("no node case covers %s", op)
		}
	}
}

func readTensors(t *testing.T, pattern string) []onnx.Tensor {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files) // fewer than 10 per case, so lexical order is numeric order
	var ts []onnx.Tensor
	for _, f := range files {
		_, tt, err := onnx.DecodeTensor(readFile(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ts = append(ts, tt)
	}
	return ts
}

func compare(got, want onnx.Tensor) error {
	if !slices.Equal(got.Shape, want.Shape) {
		return fmt.Errorf("shape %v, want %v", got.Shape, want.Shape)
	}
	if got.IsInt != want.IsInt {
		return fmt.Errorf("int64=%v, want %v", got.IsInt, want.IsInt)
	}
	if want.IsInt {
		if !slices.Equal(got.Int, want.Int) {
			return fmt.Errorf("got %v, want %v", got.Int, want.Int)
		}
		return nil
	}
	if len(got.Float) != len(want.Float) {
		return fmt.Errorf("%d values, want %d", len(got.Float), len(want.Float))
	}
	for k := range want.Float {
		if !close32(got.Float[k], want.Float[k]) {
			return fmt.Errorf("[%d] = %v, want %v (and maybe more)", k, got.Float[k], want.Float[k])
		}
	}
	return nil
}

// TestRefuseOfficialModels loads official node test models the interpreter
// must refuse and checks the sentinel error and that the message names the
// offending operator or item.
func TestRefuseOfficialModels(t *testing.T) {
	var want map[string]string
	if err := json.Unmarshal(readFile(t, "testdata/refuse/expected.json"), &want); err != nil {
		t.Fatal(err)
	}
	byName := map[string]error{}
	for _, s := range sentinels {
		byName[sentinelName(s)] = s
	}
	mentions := map[string]string{
		"test_conv_with_strides_padding":   "opset 11",
		"test_lstm_defaults":               "LSTM (node #0 (unnamed)) at opset 14",
		"test_slice":                       "Slice (node #0 (unnamed)) at opset 13",
		"test_reshape_allowzero_reordered": "allowzero=1",
		"test_cast_FLOAT_to_DOUBLE":        "Cast to DOUBLE",
		"test_add_uint8":                   "UINT8",
		"test_identity_sequence":           "not a tensor",
	}
	for name, errName := range want {
		t.Run(name, func(t *testing.T) {
			_, err := onnx.Load(readFile(t, filepath.Join("testdata/refuse", name+".onnx")))
			if !errors.Is(err, byName[errName]) {
				t.Fatalf("Load: %v, want %s", err, errName)
			}
			if !strings.Contains(err.Error(), mentions[name]) {
				t.Errorf("Load: %q does not mention %q", err, mentions[name])
			}
		})
	}
}

func sentinelName(err error) string {
	for name, s := range map[string]error{
		"ErrMalformed": onnx.ErrMalformed, "ErrOpset": onnx.ErrOpset, "ErrUnsupportedOp": onnx.ErrUnsupportedOp,
		"ErrUnsupportedAttribute": onnx.ErrUnsupportedAttribute, "ErrExternalData": onnx.ErrExternalData,
		"ErrDataType": onnx.ErrDataType, "ErrInvalidNode": onnx.ErrInvalidNode, "ErrUndefined": onnx.ErrUndefined,
		"ErrSignature": onnx.ErrSignature, "ErrInput": onnx.ErrInput, "ErrEval": onnx.ErrEval,
	} {
		if s == err {
			return name
		}
	}
	return ""
}
