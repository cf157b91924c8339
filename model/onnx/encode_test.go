package onnx_test

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// A tiny test-only ONNX encoder: enough of onnx.proto to hand-build the
// models the refusal tests need. Field numbers as in onnx.proto.

func msg(num protowire.Number, body []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), body)
}

func str(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func varint(num protowire.Number, v int64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), uint64(v))
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// model is a ModelProto: ir_version 8, one default-domain opset import.
func model(opset int64, graph []byte) []byte {
	return cat(varint(1, 8), msg(8, cat(str(1, ""), varint(2, opset))), msg(7, graph))
}

// graph is a GraphProto; parts are node(), initializer(), input(), output().
func graph(parts ...[]byte) []byte { return cat(append([][]byte{str(2, "g")}, parts...)...) }

func node(op, name string, ins, outs []string, attrs ...[]byte) []byte {
	b := cat(str(3, name), str(4, op))
	for _, s := range ins {
		b = append(b, str(1, s)...)
	}
	for _, s := range outs {
		b = append(b, str(2, s)...)
	}
	for _, a := range attrs {
		b = append(b, msg(5, a)...)
	}
	return msg(1, b)
}

func attrInt(name string, v int64) []byte { return cat(str(1, name), varint(20, 2), varint(3, v)) }

// floatTensor is a FLOAT TensorProto with float_data, packed.
func floatTensor(name string, dims []int64, data []float32) []byte {
	b := cat(str(8, name), varint(2, 1))
	for _, d := range dims {
		b = append(b, varint(1, d)...)
	}
	var packed []byte
	for _, v := range data {
		packed = protowire.AppendFixed32(packed, math.Float32bits(v))
	}
	return append(b, msg(4, packed)...)
}

func int64Tensor(name string, dims []int64, data []int64) []byte {
	b := cat(str(8, name), varint(2, 7))
	for _, d := range dims {
		b = append(b, varint(1, d)...)
	}
	for _, v := range data {
		b = append(b, varint(7, v)...)
	}
	return b
}

func initializer(t []byte) []byte { return msg(5, t) }

// valueInfo is a ValueInfoProto of a tensor; dims are int (dim_value) or
// string (dim_param).
func valueInfo(name string, elem int64, dims ...any) []byte {
	var shape []byte
	for _, d := range dims {
		switch d := d.(type) {
		case int:
			shape = append(shape, msg(1, varint(1, int64(d)))...)
		case string:
			shape = append(shape, msg(1, str(2, d))...)
		}
	}
	return cat(str(1, name), msg(2, msg(1, cat(varint(1, elem), msg(2, shape)))))
}

func input(name string, elem int64, dims ...any) []byte {
	return msg(11, valueInfo(name, elem, dims...))
}
func output(name string, elem int64, dims ...any) []byte {
	return msg(12, valueInfo(name, elem, dims...))
}

// linear is a valid model: y = x·Wᵀ + b with x [batch, 3], W [1, 3].
func linear(opset int64, extra ...[]byte) []byte {
	return model(opset, graph(append([][]byte{
		node("Gemm", "fc", []string{"x", "W", "b"}, []string{"y"}, attrInt("transB", 1)),
		initializer(floatTensor("W", []int64{1, 3}, []float32{1, 2, 3})),
		initializer(floatTensor("b", []int64{1}, []float32{0.5})),
		input("x", 1, "batch", 3),
		output("y", 1, "batch", 1),
	}, extra...)...))
}
