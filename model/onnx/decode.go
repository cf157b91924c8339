package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file decodes the parts of onnx.proto (checked against onnx 1.12's
// onnx/onnx.proto) that the interpreter uses, straight from the wire format.
// Fields it does not use are skipped; a used field with an unexpected wire
// type is an ErrMalformed. Tensor payloads are kept as bytes and decoded by
// decodeTensor only when needed, so that a model with an unsupported
// operator is reported as such even if it also has tensors we cannot read.

// modelProto is ModelProto.
type modelProto struct {
	irVersion int64      // 1
	opsets    []opsetID  // 8
	graph     graphProto // 7
	hasGraph  bool
}

// opsetID is OperatorSetIdProto.
type opsetID struct {
	domain  string // 1
	version int64  // 2
}

// graphProto is GraphProto.
type graphProto struct {
	nodes        []*nodeProto // 1
	name         string       // 2
	initializers [][]byte     // 5, TensorProto bytes
	sparseInits  int          // 15, counted to be refused
	inputs       []valueInfo  // 11
	outputs      []valueInfo  // 12
}

// nodeProto is NodeProto.
type nodeProto struct {
	inputs  []string     // 1
	outputs []string     // 2
	name    string       // 3
	opType  string       // 4
	attrs   []*attribute // 5
	domain  string       // 7
}

// attribute is AttributeProto.
type attribute struct {
	name    string    // 1
	f       float32   // 2
	i       int64     // 3
	s       []byte    // 4
	t       []byte    // 5, TensorProto bytes
	floats  []float32 // 7
	ints    []int64   // 8
	typ     int64     // 20
	refAttr string    // 21
	first   int64     // AttributeType implied by the first value field seen
}

// AttributeProto.AttributeType values.
const (
	attrFloat   = 1
	attrInt     = 2
	attrString  = 3
	attrTensor  = 4
	attrGraph   = 5
	attrFloats  = 6
	attrInts    = 7
	attrStrings = 8
)

// valueInfo is ValueInfoProto with TypeProto.Tensor flattened into it.
type valueInfo struct {
	name     string // 1
	isTensor bool   // type (2) has tensor_type (1)
	elemType int64  // tensor_type.elem_type (1)
	hasShape bool   // tensor_type.shape (2)
	dims     []dim  // shape.dim (1)
}

// dim is TensorShapeProto.Dimension: a fixed size or a named (dynamic) one.
type dim struct {
	value    int64  // 1
	param    string // 2
	hasValue bool
}

// field is one decoded protobuf field.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64 // varint, fixed32 and fixed64 values
	b   []byte // bytes value
}

// wireName names a wire type in errors.
func wireName(t protowire.Type) string {
	switch t {
	case protowire.VarintType:
		return "varint"
	case protowire.Fixed32Type:
		return "fixed32"
	case protowire.Fixed64Type:
		return "fixed64"
	case protowire.BytesType:
		return "bytes"
	case protowire.StartGroupType, protowire.EndGroupType:
		return "group"
	}
	return fmt.Sprintf("wire type %d", t)
}

// eachField calls fn for every field of the message b; what names the
// message in errors.
func eachField(b []byte, what string, fn func(f field) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %s: %v", ErrMalformed, what, protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.Fixed64Type:
			f.v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %s: field %d: %v", ErrMalformed, what, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// want checks the wire type of a field the decoder uses.
func (f field) want(what string, t protowire.Type) error {
	if f.typ != t {
		return fmt.Errorf("%w: %s: field %d has wire type %s, want %s", ErrMalformed, what, f.num, wireName(f.typ), wireName(t))
	}
	return nil
}

func (f field) str(what string, dst *string) error {
	if err := f.want(what, protowire.BytesType); err != nil {
		return err
	}
	*dst = string(f.b)
	return nil
}

func (f field) int(what string, dst *int64) error {
	if err := f.want(what, protowire.VarintType); err != nil {
		return err
	}
	*dst = int64(f.v)
	return nil
}

func (f field) bytes(what string, dst *[]byte) error {
	if err := f.want(what, protowire.BytesType); err != nil {
		return err
	}
	*dst = f.b
	return nil
}

// varints appends a repeated varint field, packed or not, to dst.
func (f field) varints(what string, dst *[]int64) error {
	switch f.typ {
	case protowire.VarintType:
		*dst = append(*dst, int64(f.v))
		return nil
	case protowire.BytesType:
		for b := f.b; len(b) > 0; {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: %s: packed field %d: %v", ErrMalformed, what, f.num, protowire.ParseError(n))
			}
			*dst = append(*dst, int64(v))
			b = b[n:]
		}
		return nil
	}
	return fmt.Errorf("%w: %s: field %d has wire type %s, want varint or bytes", ErrMalformed, what, f.num, wireName(f.typ))
}

// floats appends a repeated float field, packed or not, to dst.
func (f field) floats(what string, dst *[]float32) error {
	switch f.typ {
	case protowire.Fixed32Type:
		*dst = append(*dst, math.Float32frombits(uint32(f.v)))
		return nil
	case protowire.BytesType:
		if len(f.b)%4 != 0 {
			return fmt.Errorf("%w: %s: packed float field %d has %d bytes", ErrMalformed, what, f.num, len(f.b))
		}
		for b := f.b; len(b) > 0; b = b[4:] {
			*dst = append(*dst, math.Float32frombits(binary.LittleEndian.Uint32(b)))
		}
		return nil
	}
	return fmt.Errorf("%w: %s: field %d has wire type %s, want fixed32 or bytes", ErrMalformed, what, f.num, wireName(f.typ))
}

// decodeModel decodes a ModelProto.
func decodeModel(b []byte) (*modelProto, error) {
	m := &modelProto{}
	err := eachField(b, "model", func(f field) error {
		switch f.num {
		case 1:
			return f.int("model.ir_version", &m.irVersion)
		case 7:
			if m.hasGraph {
				return fmt.Errorf("%w: model has more than one graph field", ErrMalformed)
			}
			if err := f.want("model.graph", protowire.BytesType); err != nil {
				return err
			}
			m.hasGraph = true
			return decodeGraph(f.b, &m.graph)
		case 8:
			var o opsetID
			if err := f.want("model.opset_import", protowire.BytesType); err != nil {
				return err
			}
			err := eachField(f.b, "model.opset_import", func(f field) error {
				switch f.num {
				case 1:
					return f.str("opset_import.domain", &o.domain)
				case 2:
					return f.int("opset_import.version", &o.version)
				}
				return nil
			})
			m.opsets = append(m.opsets, o)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !m.hasGraph {
		return nil, fmt.Errorf("%w: model has no graph", ErrMalformed)
	}
	return m, nil
}

func decodeGraph(b []byte, g *graphProto) error {
	return eachField(b, "graph", func(f field) error {
		switch f.num {
		case 1:
			if err := f.want("graph.node", protowire.BytesType); err != nil {
				return err
			}
			n, err := decodeNode(f.b, len(g.nodes))
			g.nodes = append(g.nodes, n)
			return err
		case 2:
			return f.str("graph.name", &g.name)
		case 5:
			var t []byte
			err := f.bytes("graph.initializer", &t)
			g.initializers = append(g.initializers, t)
			return err
		case 11, 12:
			what := "graph.input"
			if f.num == 12 {
				what = "graph.output"
			}
			if err := f.want(what, protowire.BytesType); err != nil {
				return err
			}
			v, err := decodeValueInfo(f.b, what)
			if f.num == 11 {
				g.inputs = append(g.inputs, v)
			} else {
				g.outputs = append(g.outputs, v)
			}
			return err
		case 15:
			g.sparseInits++
		}
		return nil
	})
}

func decodeNode(b []byte, index int) (*nodeProto, error) {
	n := &nodeProto{}
	what := fmt.Sprintf("graph.node[%d]", index)
	err := eachField(b, what, func(f field) error {
		switch f.num {
		case 1, 2:
			var s string
			if err := f.str(what+".input/output", &s); err != nil {
				return err
			}
			if f.num == 1 {
				n.inputs = append(n.inputs, s)
			} else {
				n.outputs = append(n.outputs, s)
			}
		case 3:
			return f.str(what+".name", &n.name)
		case 4:
			return f.str(what+".op_type", &n.opType)
		case 5:
			if err := f.want(what+".attribute", protowire.BytesType); err != nil {
				return err
			}
			a, err := decodeAttribute(f.b, what+".attribute")
			n.attrs = append(n.attrs, a)
			return err
		case 7:
			return f.str(what+".domain", &n.domain)
		}
		return nil
	})
	return n, err
}

func decodeAttribute(b []byte, what string) (*attribute, error) {
	a := &attribute{}
	seen := func(t int64) {
		if a.first == 0 {
			a.first = t
		}
	}
	err := eachField(b, what, func(f field) error {
		switch f.num {
		case 1:
			return f.str(what+".name", &a.name)
		case 2:
			seen(attrFloat)
			if err := f.want(what+".f", protowire.Fixed32Type); err != nil {
				return err
			}
			a.f = math.Float32frombits(uint32(f.v))
		case 3:
			seen(attrInt)
			return f.int(what+".i", &a.i)
		case 4:
			seen(attrString)
			return f.bytes(what+".s", &a.s)
		case 5:
			seen(attrTensor)
			return f.bytes(what+".t", &a.t)
		case 6:
			seen(attrGraph)
		case 7:
			seen(attrFloats)
			return f.floats(what+".floats", &a.floats)
		case 8:
			seen(attrInts)
			return f.varints(what+".ints", &a.ints)
		case 9:
			seen(attrStrings)
		case 10, 11, 14, 15, 22, 23:
			seen(-1) // tensors, graphs, type protos, sparse tensors: never understood
		case 20:
			return f.int(what+".type", &a.typ)
		case 21:
			return f.str(what+".ref_attr_name", &a.refAttr)
		}
		return nil
	})
	return a, err
}

func decodeValueInfo(b []byte, what string) (valueInfo, error) {
	var v valueInfo
	err := eachField(b, what, func(f field) error {
		switch f.num {
		case 1:
			return f.str(what+".name", &v.name)
		case 2:
			if err := f.want(what+".type", protowire.BytesType); err != nil {
				return err
			}
			return eachField(f.b, what+".type", func(f field) error {
				if f.num != 1 {
					return nil
				}
				if err := f.want(what+".type.tensor_type", protowire.BytesType); err != nil {
					return err
				}
				v.isTensor = true
				return eachField(f.b, what+".type.tensor_type", func(f field) error {
					switch f.num {
					case 1:
						return f.int(what+".elem_type", &v.elemType)
					case 2:
						if err := f.want(what+".shape", protowire.BytesType); err != nil {
							return err
						}
						v.hasShape = true
						v.dims = v.dims[:0]
						return eachField(f.b, what+".shape", func(f field) error {
							if f.num != 1 {
								return nil
							}
							if err := f.want(what+".shape.dim", protowire.BytesType); err != nil {
								return err
							}
							var d dim
							err := eachField(f.b, what+".shape.dim", func(f field) error {
								switch f.num {
								case 1:
									d.hasValue, d.param = true, ""
									return f.int(what+".dim_value", &d.value)
								case 2:
									d.hasValue = false
									return f.str(what+".dim_param", &d.param)
								}
								return nil
							})
							v.dims = append(v.dims, d)
							return err
						})
					}
					return nil
				})
			})
		}
		return nil
	})
	return v, err
}

// decodeTensor decodes a TensorProto into its name and a FLOAT or INT64
// tensor. what names the tensor's place in errors.
func decodeTensor(b []byte, what string) (string, *tensor, error) {
	var (
		name               string
		dims, i32, i64     []int64
		dataType, location int64
		fdata              []float32
		raw                []byte
		hasRaw, external   bool
		otherData          bool
	)
	err := eachField(b, what, func(f field) error {
		switch f.num {
		case 1:
			return f.varints(what+".dims", &dims)
		case 2:
			return f.int(what+".data_type", &dataType)
		case 3:
			return fmt.Errorf("%w: %s: segmented tensors are not supported", ErrMalformed, what)
		case 4:
			return f.floats(what+".float_data", &fdata)
		case 5:
			return f.varints(what+".int32_data", &i32)
		case 6, 10, 11:
			otherData = true
		case 7:
			return f.varints(what+".int64_data", &i64)
		case 8:
			return f.str(what+".name", &name)
		case 9:
			hasRaw = true
			return f.bytes(what+".raw_data", &raw)
		case 13:
			external = true
		case 14:
			return f.int(what+".data_location", &location)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	if name != "" {
		what = fmt.Sprintf("%s %q", what, name)
	}
	if external || location == 1 {
		return "", nil, fmt.Errorf("%w: %s keeps its data in an external file; export the model with its weights inside (save_as_external_data=False)", ErrExternalData, what)
	}
	if dataType != typeFloat && dataType != typeInt64 {
		return "", nil, fmt.Errorf("%w: %s has data type %s; only FLOAT and INT64 are supported", ErrDataType, what, typeName(dataType))
	}
	if len(dims) > maxRank {
		return "", nil, fmt.Errorf("%w: %s has rank %d, more than %d", ErrMalformed, what, len(dims), maxRank)
	}
	shape := make([]int, len(dims))
	for k, d := range dims {
		if d < 0 || d > MaxElements {
			return "", nil, fmt.Errorf("%w: %s has dim %d", ErrMalformed, what, d)
		}
		shape[k] = int(d)
	}
	n, err := numel(shape)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	t := &tensor{dt: dataType, shape: shape}
	typed := len(fdata) + len(i32) + len(i64)
	if otherData || typed > 0 && hasRaw || dataType == typeFloat && len(i32)+len(i64) > 0 || dataType == typeInt64 && len(fdata)+len(i32) > 0 {
		return "", nil, fmt.Errorf("%w: %s of type %s stores data in fields of another type", ErrMalformed, what, typeName(dataType))
	}
	count := typed
	width := 4
	if dataType == typeInt64 {
		width = 8
	}
	if hasRaw {
		if len(raw)%width != 0 {
			return "", nil, fmt.Errorf("%w: %s has %d bytes of raw data, not a multiple of %d", ErrMalformed, what, len(raw), width)
		}
		count = len(raw) / width
	}
	if count != n {
		return "", nil, fmt.Errorf("%w: %s has shape %s (%d elements) but %d values", ErrMalformed, what, shapeString(shape), n, count)
	}
	switch {
	case dataType == typeFloat && hasRaw:
		t.f = make([]float32, n)
		for k := range t.f {
			t.f[k] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:]))
		}
	case dataType == typeFloat:
		t.f = fdata
		if t.f == nil {
			t.f = []float32{}
		}
	case hasRaw:
		t.i = make([]int64, n)
		for k := range t.i {
			t.i[k] = int64(binary.LittleEndian.Uint64(raw[8*k:]))
		}
	default:
		t.i = i64
		if t.i == nil {
			t.i = []int64{}
		}
	}
	return name, t, nil
}
