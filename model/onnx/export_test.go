package onnx

// Test-only hooks for the external onnx_test package: the official node test
// cases have several inputs of several types, which the server-facing Load
// and Run do not accept.

// Tensor is a test view of the interpreter's tensor: FLOAT data in Float or
// INT64 data in Int (IsInt).
type Tensor struct {
	Shape []int
	Float []float32
	Int   []int64
	IsInt bool
}

func fromTensor(t *tensor) Tensor {
	return Tensor{Shape: t.shape, Float: t.f, Int: t.i, IsInt: t.isInt()}
}

func toTensor(t Tensor) *tensor {
	if t.IsInt {
		return &tensor{dt: typeInt64, shape: t.Shape, i: t.Int}
	}
	return &tensor{dt: typeFloat, shape: t.Shape, f: t.Float}
}

// DecodeTensor decodes a serialized TensorProto (an input_*.pb or
// output_*.pb file) with the package's own decoder.
func DecodeTensor(b []byte) (name string, t Tensor, err error) {
	name, tt, err := decodeTensor(b, "tensor")
	if err != nil {
		return "", Tensor{}, err
	}
	return name, fromTensor(tt), nil
}

// LoadGraph is Load without the server's signature check: any number of
// FLOAT or INT64 inputs and outputs.
func LoadGraph(b []byte) (*Model, error) { return load(b) }

// Eval runs the graph on one tensor per graph input, in order.
func (m *Model) Eval(in []Tensor) ([]Tensor, error) {
	ts := make([]*tensor, len(in))
	for k, t := range in {
		ts[k] = toTensor(t)
	}
	out, err := m.eval(ts)
	if err != nil {
		return nil, err
	}
	res := make([]Tensor, len(out))
	for k, t := range out {
		res[k] = fromTensor(t)
	}
	return res, nil
}
