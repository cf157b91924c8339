// Package onnx is a small pure-Go interpreter for the ONNX models the model
// server serves: feed-forward networks exported by PyTorch 1.13
// (torch.onnx.export, opsets 13 to 17) that map a [batch, features] float32
// matrix to one float32 tensor.
//
// Load decodes the protobuf by hand (with protowire; no generated onnx.proto
// types) and validates everything up front: the opset, every operator and
// attribute, the data types, the order of the nodes and the graph's
// signature. A model that loads runs every node with an implemented kernel;
// what can still fail at run time are shapes that do not fit (ErrEval).
//
// Numerics: tensors are float32 or int64 (for shape arithmetic). Dot
// products (Gemm, MatMul) accumulate in float32, as onnxruntime and torch do
// on CPU, in a fixed order without fused multiply-adds, so results are the
// same on every platform and agree with torch to about 1e-6 relative for
// the small layers served here (the tests allow 1e-5). Sigmoid, Tanh and
// Softmax are computed in float64 and rounded to float32.
//
// Limits: no tensor may have more than MaxElements elements or a rank above
// 32, so that a hostile model cannot make Run allocate or loop without bound.
package onnx

import (
	"fmt"
	"slices"
	"strings"
)

// MinOpset and MaxOpset bound the default-domain opset versions Load
// accepts.
const (
	MinOpset = 13
	MaxOpset = 17
)

// Model is a loaded, validated ONNX model, made by Load. It is immutable
// (Run keeps all its state in per-call buffers), so Run may be called from
// many goroutines at once.
type Model struct {
	opset    int
	ops      []string
	init     []*tensor // initial value of every slot: initializers, nil otherwise
	steps    []step
	inputs   []port // graph inputs that are not initializers
	outputs  []port
	batch    int // fixed batch size of the served input, 0 when dynamic
	features int // fixed feature count of the served input, 0 when dynamic
}

// port is a graph input or output bound to a value slot.
type port struct {
	name     string
	slot     int
	elemType int64
	info     valueInfo
}

// step is one compiled node.
type step struct {
	desc string // node "name" (OpType), for errors
	in   []int  // slots of the inputs, -1 for omitted ones
	out  int
	run  kernel
}

// Load decodes and validates an ONNX model (the bytes of a model.onnx
// file). It checks, in this order: the protobuf encoding (ErrMalformed); the
// default-domain opset, MinOpset..MaxOpset (ErrOpset); that every node's
// operator is implemented at that opset (ErrUnsupportedOp) with attributes
// it understands (ErrUnsupportedAttribute, ErrDataType) and the right
// number of inputs and outputs (ErrInvalidNode); the initializers
// (ErrExternalData, ErrDataType, ErrMalformed); that every value is defined
// before it is used (ErrUndefined); and the signature the server needs,
// exactly one non-initializer input, a FLOAT tensor of rank 2 whose batch
// dim may be dynamic, and exactly one FLOAT output (ErrSignature). Load
// does not retain b.
func Load(b []byte) (*Model, error) {
	m, err := load(b)
	if err == nil {
		err = m.checkSignature()
	}
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	return m, nil
}

// Opset returns the model's default-domain opset version.
func (m *Model) Opset() int { return m.opset }

// Ops returns the distinct operator types of the model's nodes, sorted.
func (m *Model) Ops() []string { return slices.Clone(m.ops) }

// Input returns the name of the model's input and its feature count (the
// size of its second dim), or 0 features when that dim is dynamic.
func (m *Model) Input() (name string, features int) {
	return m.inputs[0].name, m.features
}

// Output returns the name of the model's output.
func (m *Model) Output() string { return m.outputs[0].name }

// Run evaluates the model on x, a row-major [rows, features] matrix, and
// returns the output's data and shape (for example [rows, 1], or [rows] for
// a model that squeezes its output). It does not modify or keep x. Errors
// are ErrInput when the arguments do not fit the model's input and ErrEval
// when a node cannot be evaluated. Every call allocates its own buffers.
func (m *Model) Run(x []float32, rows, features int) (y []float32, shape []int, err error) {
	switch {
	case rows < 1 || features < 1:
		return nil, nil, fmt.Errorf("onnx: %w: %d rows of %d features", ErrInput, rows, features)
	case m.features != 0 && features != m.features:
		return nil, nil, fmt.Errorf("onnx: %w: the model takes %d features, got %d", ErrInput, m.features, features)
	case m.batch != 0 && rows != m.batch:
		return nil, nil, fmt.Errorf("onnx: %w: the model takes batches of exactly %d rows, got %d", ErrInput, m.batch, rows)
	case rows > MaxElements/features:
		return nil, nil, fmt.Errorf("onnx: %w: %d rows of %d features is more than %d values", ErrInput, rows, features, MaxElements)
	case len(x) != rows*features:
		return nil, nil, fmt.Errorf("onnx: %w: %d values for %d rows of %d features", ErrInput, len(x), rows, features)
	}
	in := &tensor{dt: typeFloat, shape: []int{rows, features}, f: x}
	out, err := m.eval([]*tensor{in})
	if err != nil {
		return nil, nil, err
	}
	t := out[0]
	if t.isInt() {
		return nil, nil, fmt.Errorf("onnx: %w: output %q is %s, want FLOAT", ErrEval, m.outputs[0].name, t)
	}
	// Copy: the output may share data with x or with an initializer.
	return slices.Clone(t.f), slices.Clone(t.shape), nil
}

// eval runs the graph on one tensor per graph input (in order) and returns
// the graph outputs, which may share data with the inputs or the model.
func (m *Model) eval(inputs []*tensor) ([]*tensor, error) {
	if len(inputs) != len(m.inputs) {
		return nil, fmt.Errorf("onnx: %w: %d inputs, the graph has %d", ErrInput, len(inputs), len(m.inputs))
	}
	v := slices.Clone(m.init)
	for k, p := range m.inputs {
		if inputs[k].dt != p.elemType {
			return nil, fmt.Errorf("onnx: %w: input %q is %s, want %s", ErrInput, p.name, inputs[k], typeName(p.elemType))
		}
		v[p.slot] = inputs[k]
	}
	args := make([]*tensor, 0, 8)
	for _, s := range m.steps {
		args = args[:0]
		for _, slot := range s.in {
			var t *tensor
			if slot >= 0 {
				t = v[slot]
			}
			args = append(args, t)
		}
		t, err := s.run(args)
		if err != nil {
			return nil, fmt.Errorf("onnx: %s: %w", s.desc, err)
		}
		v[s.out] = t
	}
	out := make([]*tensor, len(m.outputs))
	for k, p := range m.outputs {
		out[k] = v[p.slot]
	}
	return out, nil
}

// nodeDesc names a node in errors: by its name, or by its index when it has
// none.
func nodeDesc(n *nodeProto, k int) string {
	return fmt.Sprintf("%s (%s)", nodeRef(n, k), n.opType)
}

// nodeRef names a node: node "name", or node #k (unnamed).
func nodeRef(n *nodeProto, k int) string {
	if n.name != "" {
		return fmt.Sprintf("node %q", n.name)
	}
	return fmt.Sprintf("node #%d (unnamed)", k)
}

// load decodes and validates everything but the server's signature.
func load(b []byte) (*Model, error) {
	mp, err := decodeModel(b)
	if err != nil {
		return nil, err
	}
	m := &Model{}
	if m.opset, err = defaultOpset(mp.opsets); err != nil {
		return nil, err
	}
	g := &mp.graph

	// Operators first: an unsupported one is the most useful thing to report.
	for k, n := range g.nodes {
		o, ok := ops[n.opType]
		if n.domain != "" && n.domain != "ai.onnx" {
			return nil, fmt.Errorf("%w: %s of domain %q (%s); only the default ONNX domain is supported", ErrUnsupportedOp, n.opType, n.domain, nodeRef(n, k))
		}
		if !ok || m.opset < o.since || m.opset > o.until {
			return nil, fmt.Errorf("%w: %s (%s) at opset %d; supported operators: %s", ErrUnsupportedOp, n.opType, nodeRef(n, k), m.opset, supportedList(m.opset))
		}
		if !slices.Contains(m.ops, n.opType) {
			m.ops = append(m.ops, n.opType)
		}
	}
	slices.Sort(m.ops)

	// Compile the nodes.
	kernels := make([]kernel, len(g.nodes))
	for k, n := range g.nodes {
		o := ops[n.opType]
		desc := nodeDesc(n, k)
		if len(n.inputs) < o.minIn || len(n.inputs) > o.maxIn {
			return nil, fmt.Errorf("%w: %s has %d inputs, want %s", ErrInvalidNode, desc, len(n.inputs), arity(o.minIn, o.maxIn))
		}
		for j, name := range n.inputs[:o.minIn] {
			if name == "" {
				return nil, fmt.Errorf("%w: %s omits required input %d", ErrInvalidNode, desc, j)
			}
		}
		if len(n.outputs) != 1 || n.outputs[0] == "" {
			return nil, fmt.Errorf("%w: %s has %d outputs %q, want 1", ErrInvalidNode, desc, len(n.outputs), n.outputs)
		}
		if kernels[k], err = o.compile(n, m.opset); err != nil {
			return nil, fmt.Errorf("%s at opset %d: %w", desc, m.opset, err)
		}
	}

	// Values: initializers, graph inputs, then node outputs in order.
	if g.sparseInits > 0 {
		return nil, fmt.Errorf("%w: the graph has sparse initializers", ErrDataType)
	}
	slot := map[string]int{}
	for k, tb := range g.initializers {
		name, t, err := decodeTensor(tb, fmt.Sprintf("initializer #%d", k))
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, fmt.Errorf("%w: initializer #%d has no name", ErrMalformed, k)
		}
		if _, dup := slot[name]; dup {
			return nil, fmt.Errorf("%w: initializer %q is defined twice", ErrMalformed, name)
		}
		slot[name] = len(m.init)
		m.init = append(m.init, t)
	}
	for _, vi := range g.inputs {
		if _, isInit := slot[vi.name]; isInit {
			continue // IR < 4 lists initializers as inputs too
		}
		if vi.name == "" {
			return nil, fmt.Errorf("%w: a graph input has no name", ErrMalformed)
		}
		for _, p := range m.inputs {
			if p.name == vi.name {
				return nil, fmt.Errorf("%w: graph input %q is listed twice", ErrMalformed, vi.name)
			}
		}
		if !vi.isTensor || vi.elemType != typeFloat && vi.elemType != typeInt64 {
			return nil, fmt.Errorf("%w: graph input %q is %s, want a FLOAT or INT64 tensor", ErrDataType, vi.name, valueType(vi))
		}
		slot[vi.name] = len(m.init)
		m.inputs = append(m.inputs, port{name: vi.name, slot: len(m.init), elemType: vi.elemType, info: vi})
		m.init = append(m.init, nil)
	}
	for k, n := range g.nodes {
		s := step{desc: nodeDesc(n, k), out: len(m.init), run: kernels[k]}
		for _, name := range n.inputs {
			if name == "" {
				s.in = append(s.in, -1)
				continue
			}
			j, ok := slot[name]
			if !ok {
				return nil, fmt.Errorf("%w: %s uses %q, which no graph input, initializer or earlier node defines", ErrUndefined, s.desc, name)
			}
			s.in = append(s.in, j)
		}
		if _, dup := slot[n.outputs[0]]; dup {
			return nil, fmt.Errorf("%w: %s defines %q, which is already defined", ErrInvalidNode, s.desc, n.outputs[0])
		}
		slot[n.outputs[0]] = len(m.init)
		m.init = append(m.init, nil)
		m.steps = append(m.steps, s)
	}
	for _, vi := range g.outputs {
		j, ok := slot[vi.name]
		if !ok {
			return nil, fmt.Errorf("%w: graph output %q is not defined by any node, initializer or input", ErrUndefined, vi.name)
		}
		if vi.isTensor && vi.elemType != typeFloat && vi.elemType != typeInt64 {
			return nil, fmt.Errorf("%w: graph output %q is %s, want a FLOAT or INT64 tensor", ErrDataType, vi.name, valueType(vi))
		}
		m.outputs = append(m.outputs, port{name: vi.name, slot: j, elemType: vi.elemType, info: vi})
	}
	if len(m.outputs) == 0 {
		return nil, fmt.Errorf("%w: the graph has no output", ErrSignature)
	}
	return m, nil
}

// checkSignature checks that the graph has what the server feeds and reads,
// and records the input's fixed dims.
func (m *Model) checkSignature() error {
	if len(m.inputs) != 1 {
		names := make([]string, len(m.inputs))
		for k, p := range m.inputs {
			names[k] = p.name
		}
		return fmt.Errorf("%w: the graph has %d inputs %q besides its initializers; the server feeds exactly one [batch, features] FLOAT tensor", ErrSignature, len(m.inputs), names)
	}
	in := m.inputs[0].info
	if in.elemType != typeFloat || !in.hasShape || len(in.dims) != 2 {
		return fmt.Errorf("%w: graph input %q is %s, want FLOAT[batch,features]", ErrSignature, in.name, valueType(in))
	}
	for k, d := range in.dims {
		if !d.hasValue {
			continue
		}
		if d.value < 1 || d.value > MaxElements {
			return fmt.Errorf("%w: graph input %q is %s, want FLOAT[batch,features]", ErrSignature, in.name, valueType(in))
		}
		if k == 0 {
			m.batch = int(d.value)
		} else {
			m.features = int(d.value)
		}
	}
	if len(m.outputs) != 1 {
		return fmt.Errorf("%w: the graph has %d outputs; the server reads exactly one FLOAT tensor", ErrSignature, len(m.outputs))
	}
	if out := m.outputs[0].info; !out.isTensor || out.elemType != typeFloat {
		return fmt.Errorf("%w: graph output %q is %s, want FLOAT", ErrSignature, out.name, valueType(out))
	}
	return nil
}

// defaultOpset finds the default-domain opset import and checks it.
func defaultOpset(imports []opsetID) (int, error) {
	v := int64(-1)
	for _, o := range imports {
		if o.domain != "" && o.domain != "ai.onnx" {
			continue
		}
		if v >= 0 && o.version != v {
			return 0, fmt.Errorf("%w: the model imports the default domain at opsets %d and %d", ErrOpset, v, o.version)
		}
		v = o.version
	}
	if v < 0 {
		return 0, fmt.Errorf("%w: the model imports no default-domain opset", ErrOpset)
	}
	if v < MinOpset || v > MaxOpset {
		return 0, fmt.Errorf("%w: opset %d of the default domain; supported are %d to %d", ErrOpset, v, MinOpset, MaxOpset)
	}
	return int(v), nil
}

// supportedList lists the operators implemented at an opset.
func supportedList(opset int) string {
	var names []string
	for name, o := range ops {
		if opset >= o.since && opset <= o.until {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func arity(lo, hi int) string {
	switch {
	case lo == hi:
		return fmt.Sprint(lo)
	case hi > 1000:
		return fmt.Sprintf("at least %d", lo)
	}
	return fmt.Sprintf("%d to %d", lo, hi)
}

// valueType describes a graph input's or output's declared type.
func valueType(vi valueInfo) string {
	if !vi.isTensor {
		return "not a tensor"
	}
	if !vi.hasShape {
		return typeName(vi.elemType) + " of unknown rank"
	}
	var b strings.Builder
	b.WriteString(typeName(vi.elemType))
	b.WriteByte('[')
	for k, d := range vi.dims {
		if k > 0 {
			b.WriteByte(',')
		}
		switch {
		case d.hasValue:
			fmt.Fprint(&b, d.value)
		case d.param != "":
			b.WriteString(d.param)
		default:
			b.WriteByte('?')
		}
	}
	b.WriteByte(']')
	return b.String()
}
