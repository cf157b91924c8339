package onnx

import (
	"fmt"
	"math"
	"slices"
)

// A kernel evaluates one compiled node. in has one entry per node input, nil
// for an omitted optional input. Kernels never modify their inputs; they
// return a new tensor or one that shares an input's data.
type kernel func(in []*tensor) (*tensor, error)

// An op is an operator the interpreter implements for the default domain:
// the opsets it is implemented for (inclusive), how many inputs it takes,
// and the function that checks a node's attributes and returns its kernel.
type op struct {
	since, until int
	minIn, maxIn int
	compile      func(n *nodeProto, opset int) (kernel, error)
}

// ops is the operator table. Every operator has exactly one output. The
// semantics are those of the operator's schema versions in force at opsets
// 13 to 17 (Add/Sub/Mul/Div/Relu/Reshape/Identity changed at 14 and Shape
// at 15 without changing what is computed here, except Shape's start/end
// and Reshape's allowzero, which are accepted only from the opset that
// introduced them).
var ops = map[string]op{
	"Add":       {13, 17, 2, 2, compileBinary("Add")},
	"Cast":      {13, 17, 1, 1, compileCast},
	"Concat":    {13, 17, 1, math.MaxInt, compileConcat},
	"Constant":  {13, 17, 0, 0, compileConstant},
	"Div":       {13, 17, 2, 2, compileBinary("Div")},
	"Flatten":   {13, 17, 1, 1, compileFlatten},
	"Gather":    {13, 17, 2, 2, compileGather},
	"Gemm":      {13, 17, 2, 3, compileGemm},
	"Identity":  {13, 17, 1, 1, compileIdentity},
	"MatMul":    {13, 17, 2, 2, compileMatMul},
	"Mul":       {13, 17, 2, 2, compileBinary("Mul")},
	"Relu":      {13, 17, 1, 1, compileUnary("Relu")},
	"Reshape":   {13, 17, 2, 2, compileReshape},
	"Shape":     {13, 17, 1, 1, compileShape},
	"Sigmoid":   {13, 17, 1, 1, compileUnary("Sigmoid")},
	"Softmax":   {13, 17, 1, 1, compileSoftmax},
	"Squeeze":   {13, 17, 1, 2, compileSqueeze},
	"Sub":       {13, 17, 2, 2, compileBinary("Sub")},
	"Tanh":      {13, 17, 1, 1, compileUnary("Tanh")},
	"Unsqueeze": {13, 17, 2, 2, compileUnsqueeze},
}

// Operators returns the operator types the interpreter implements (default
// domain only), each with the first and last opset it is implemented for.
func Operators() map[string][2]int {
	m := make(map[string][2]int, len(ops))
	for name, o := range ops {
		m[name] = [2]int{o.since, o.until}
	}
	return m
}

// evalErr makes an ErrEval.
func evalErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrEval}, args...)...)
}

func attrErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupportedAttribute}, args...)...)
}

// attrs indexes a node's attributes after checking that each is one of
// allowed, appears once and is not a reference to a function attribute.
type attrs map[string]*attribute

func nodeAttrs(n *nodeProto, allowed ...string) (attrs, error) {
	m := attrs{}
	for _, a := range n.attrs {
		switch {
		case !slices.Contains(allowed, a.name):
			return nil, attrErr("attribute %q is not supported by this operator", a.name)
		case m[a.name] != nil:
			return nil, attrErr("attribute %q appears twice", a.name)
		case a.refAttr != "":
			return nil, attrErr("attribute %q refers to function attribute %q", a.name, a.refAttr)
		}
		m[a.name] = a
	}
	return m, nil
}

// get returns attribute name if present, after checking its type.
func (m attrs) get(name string, typ int64) (*attribute, error) {
	a := m[name]
	if a == nil {
		return nil, nil
	}
	t := a.typ
	if t == 0 {
		t = a.first
	}
	if t != typ {
		return nil, attrErr("attribute %q has type %s, want %s", name, attrTypeName(t), attrTypeName(typ))
	}
	return a, nil
}

func (m attrs) int(name string, def int64) (int64, error) {
	a, err := m.get(name, attrInt)
	if a == nil {
		return def, err
	}
	return a.i, nil
}

func (m attrs) float(name string, def float32) (float32, error) {
	a, err := m.get(name, attrFloat)
	if a == nil {
		return def, err
	}
	return a.f, nil
}

// flag reads a 0/1 int attribute.
func (m attrs) flag(name string) (bool, error) {
	v, err := m.int(name, 0)
	if err == nil && v != 0 && v != 1 {
		err = attrErr("%s=%d, want 0 or 1", name, v)
	}
	return v == 1, err
}

// attrTypeName names an AttributeProto.AttributeType value.
func attrTypeName(t int64) string {
	names := map[int64]string{
		attrFloat: "FLOAT", attrInt: "INT", attrString: "STRING", attrTensor: "TENSOR",
		attrGraph: "GRAPH", attrFloats: "FLOATS", attrInts: "INTS", attrStrings: "STRINGS",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}

// opt returns input k, or nil when it is omitted.
func opt(in []*tensor, k int) *tensor {
	if k < len(in) {
		return in[k]
	}
	return nil
}

func wantFloat(ts ...*tensor) error {
	for _, t := range ts {
		if t.isInt() {
			return evalErr("input %s, want FLOAT", t)
		}
	}
	return nil
}

func wantInt(what string, t *tensor) error {
	if !t.isInt() {
		return evalErr("%s is %s, want INT64", what, t)
	}
	return nil
}

// matmul sets out[i*n+j] = Σ_p a[i*as0+p*as1]·b[p*bs0+j*bs1] for an m×k by
// k×n product. Like onnxruntime's float kernels (and torch on CPU) it
// accumulates in float32; here strictly in order of p with each product
// rounded to float32 first (the conversion forbids fused multiply-adds),
// so results are the same on every platform.
func matmul(m, n, k int, a []float32, as0, as1 int, b []float32, bs0, bs1 int, out []float32) {
	if as1 == 1 && bs0 == 1 { // B transposed, as torch.nn.Linear exports it: dot products
		for i := range m {
			ar := a[i*as0 : i*as0+k]
			for j := range n {
				br := b[j*bs1 : j*bs1+k]
				var s float32
				for p, x := range ar {
					s += float32(x * br[p])
				}
				out[i*n+j] = s
			}
		}
		return
	}
	for i := range m {
		row := out[i*n : i*n+n]
		clear(row)
		for p := range k {
			x := a[i*as0+p*as1]
			for j := range row {
				row[j] += float32(x * b[p*bs0+j*bs1])
			}
		}
	}
}

// compileGemm: Y = alpha·A'·B' + beta·C, A' and B' optionally transposed, C
// unidirectionally broadcast to [M, N].
func compileGemm(n *nodeProto, opset int) (kernel, error) {
	at, err := nodeAttrs(n, "alpha", "beta", "transA", "transB")
	if err != nil {
		return nil, err
	}
	alpha, err1 := at.float("alpha", 1)
	beta, err2 := at.float("beta", 1)
	transA, err3 := at.flag("transA")
	transB, err4 := at.flag("transB")
	if err := firstErr(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		a, b, c := in[0], in[1], opt(in, 2)
		if err := wantFloat(a, b); err != nil {
			return nil, err
		}
		if len(a.shape) != 2 || len(b.shape) != 2 {
			return nil, evalErr("A %s and B %s must have rank 2", a, b)
		}
		m, k, as0, as1 := a.shape[0], a.shape[1], a.shape[1], 1
		if transA {
			m, k, as0, as1 = k, m, 1, a.shape[1]
		}
		k2, nn, bs0, bs1 := b.shape[0], b.shape[1], b.shape[1], 1
		if transB {
			k2, nn, bs0, bs1 = nn, k2, 1, b.shape[1]
		}
		if k != k2 {
			return nil, evalErr("A %s (transA=%v) and B %s (transB=%v) do not multiply", a, transA, b, transB)
		}
		y, err := newTensor(typeFloat, []int{m, nn})
		if err != nil {
			return nil, evalErr("%v", err)
		}
		matmul(m, nn, k, a.f, as0, as1, b.f, bs0, bs1, y.f)
		if alpha != 1 {
			for j := range y.f {
				y.f[j] *= alpha
			}
		}
		if c == nil {
			return y, nil
		}
		if err := wantFloat(c); err != nil {
			return nil, err
		}
		if s, err := broadcastShapes(c.shape, y.shape); err != nil || len(c.shape) > 2 || !slices.Equal(s, y.shape) {
			return nil, evalErr("C %s does not broadcast to [%d,%d]", c, m, nn)
		}
		sc := broadcastStrides(c.shape, y.shape)
		for i := range m {
			row, ci := y.f[i*nn:(i+1)*nn], i*sc[0]
			for j := range row {
				row[j] += beta * c.f[ci+j*sc[1]]
			}
		}
		return y, nil
	}, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// compileMatMul: numpy.matmul, batch dims broadcast, rank-1 operands
// promoted and the promoted dim removed from the result.
func compileMatMul(n *nodeProto, opset int) (kernel, error) {
	if _, err := nodeAttrs(n); err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		a, b := in[0], in[1]
		if err := wantFloat(a, b); err != nil {
			return nil, err
		}
		as, bs := a.shape, b.shape
		if len(as) == 0 || len(bs) == 0 {
			return nil, evalErr("MatMul of a scalar: %s, %s", a, b)
		}
		if len(as) == 1 {
			as = []int{1, as[0]}
		}
		if len(bs) == 1 {
			bs = []int{bs[0], 1}
		}
		m, k := as[len(as)-2], as[len(as)-1]
		k2, nn := bs[len(bs)-2], bs[len(bs)-1]
		if k != k2 {
			return nil, evalErr("shapes %s and %s do not multiply", a, b)
		}
		ba, bb := as[:len(as)-2], bs[:len(bs)-2]
		batch, err := broadcastShapes(ba, bb)
		if err != nil {
			return nil, evalErr("%v", err)
		}
		full := append(slices.Clone(batch), m, nn)
		if _, err := numel(full); err != nil {
			return nil, evalErr("%v", err)
		}
		shape := slices.Clone(batch)
		if len(a.shape) > 1 {
			shape = append(shape, m)
		}
		if len(b.shape) > 1 {
			shape = append(shape, nn)
		}
		y, err := newTensor(typeFloat, shape)
		if err != nil {
			return nil, evalErr("%v", err)
		}
		if m*nn == 0 {
			return y, nil
		}
		sa, sb := broadcastStrides(ba, batch), broadcastStrides(bb, batch)
		forBroadcast(batch, sa, sb, func(o, ia, ib int) {
			matmul(m, nn, k, a.f[ia*m*k:], k, 1, b.f[ib*k*nn:], nn, 1, y.f[o*m*nn:])
		})
		return y, nil
	}, nil
}

// compileBinary: Add, Sub, Mul and Div with numpy broadcasting, on two
// FLOAT or two INT64 tensors. Integer division truncates toward zero (as
// onnxruntime does); dividing an integer by zero is an ErrEval.
func compileBinary(name string) func(*nodeProto, int) (kernel, error) {
	var ff func(x, y float32) float32
	var fi func(x, y int64) int64
	switch name {
	case "Add":
		ff, fi = func(x, y float32) float32 { return x + y }, func(x, y int64) int64 { return x + y }
	case "Sub":
		ff, fi = func(x, y float32) float32 { return x - y }, func(x, y int64) int64 { return x - y }
	case "Mul":
		ff, fi = func(x, y float32) float32 { return x * y }, func(x, y int64) int64 { return x * y }
	case "Div":
		ff, fi = func(x, y float32) float32 { return x / y }, func(x, y int64) int64 { return x / y }
	}
	return func(n *nodeProto, opset int) (kernel, error) {
		if _, err := nodeAttrs(n); err != nil {
			return nil, err
		}
		return func(in []*tensor) (*tensor, error) {
			a, b := in[0], in[1]
			if a.dt != b.dt {
				return nil, evalErr("operands %s and %s have different types", a, b)
			}
			shape, err := broadcastShapes(a.shape, b.shape)
			if err != nil {
				return nil, evalErr("%v", err)
			}
			y, err := newTensor(a.dt, shape)
			if err != nil {
				return nil, evalErr("%v", err)
			}
			if a.isInt() {
				if name == "Div" && slices.Contains(b.i, 0) {
					return nil, evalErr("integer division by zero")
				}
				elementwise(a.i, b.i, a.shape, b.shape, y.i, shape, fi)
			} else {
				elementwise(a.f, b.f, a.shape, b.shape, y.f, shape, ff)
			}
			return y, nil
		}, nil
	}
}

func elementwise[T float32 | int64](a, b []T, as, bs []int, y []T, shape []int, fn func(x, y T) T) {
	switch {
	case slices.Equal(as, bs):
		for k := range y {
			y[k] = fn(a[k], b[k])
		}
	case len(b) == 1 && len(a) == len(y):
		for k := range y {
			y[k] = fn(a[k], b[0])
		}
	default:
		forBroadcast(shape, broadcastStrides(as, shape), broadcastStrides(bs, shape), func(o, ia, ib int) {
			y[o] = fn(a[ia], b[ib])
		})
	}
}

// compileUnary: Relu (FLOAT or INT64), Sigmoid and Tanh (FLOAT). Sigmoid
// and Tanh are evaluated in float64 and rounded to float32, within an ulp of
// what torch computes.
func compileUnary(name string) func(*nodeProto, int) (kernel, error) {
	return func(n *nodeProto, opset int) (kernel, error) {
		if _, err := nodeAttrs(n); err != nil {
			return nil, err
		}
		return func(in []*tensor) (*tensor, error) {
			x := in[0]
			if name == "Relu" && x.isInt() {
				y, _ := newTensor(typeInt64, x.shape)
				for k, v := range x.i {
					y.i[k] = max(v, 0)
				}
				return y, nil
			}
			if err := wantFloat(x); err != nil {
				return nil, err
			}
			y, _ := newTensor(typeFloat, x.shape)
			switch name {
			case "Relu":
				for k, v := range x.f {
					if v < 0 {
						v = 0
					}
					y.f[k] = v
				}
			case "Sigmoid":
				for k, v := range x.f {
					y.f[k] = float32(1 / (1 + math.Exp(-float64(v))))
				}
			case "Tanh":
				for k, v := range x.f {
					y.f[k] = float32(math.Tanh(float64(v)))
				}
			}
			return y, nil
		}, nil
	}
}

// compileSoftmax: softmax along one axis (default -1, the opset 13
// semantics), computed in float64 after subtracting the maximum and rounded
// to float32.
func compileSoftmax(n *nodeProto, opset int) (kernel, error) {
	at, err := nodeAttrs(n, "axis")
	if err != nil {
		return nil, err
	}
	axis, err := at.int("axis", -1)
	if err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		x := in[0]
		if err := wantFloat(x); err != nil {
			return nil, err
		}
		ax, err := normAxis(axis, len(x.shape), false)
		if err != nil {
			return nil, evalErr("%v", err)
		}
		y, _ := newTensor(typeFloat, x.shape)
		outer, d, inner := prod(x.shape[:ax]), x.shape[ax], prod(x.shape[ax+1:])
		if d == 0 || inner == 0 {
			return y, nil
		}
		for o := range outer {
			for i := range inner {
				base := o*d*inner + i
				mx := math.Inf(-1)
				for j := range d {
					mx = max(mx, float64(x.f[base+j*inner]))
				}
				var sum float64
				for j := range d {
					sum += math.Exp(float64(x.f[base+j*inner]) - mx)
				}
				for j := range d {
					y.f[base+j*inner] = float32(math.Exp(float64(x.f[base+j*inner])-mx) / sum)
				}
			}
		}
		return y, nil
	}, nil
}

// shapeInput reads a 1-D INT64 tensor (a shape or a list of axes).
func shapeInput(what string, t *tensor) ([]int64, error) {
	if err := wantInt(what, t); err != nil {
		return nil, err
	}
	if len(t.shape) != 1 {
		return nil, evalErr("%s is %s, want rank 1", what, t)
	}
	return t.i, nil
}

// compileReshape: reshape with 0 meaning "copy the input's dim" and one -1
// inferred. allowzero (opset 14+) must be 0.
func compileReshape(n *nodeProto, opset int) (kernel, error) {
	allowed := []string{}
	if opset >= 14 {
		allowed = append(allowed, "allowzero")
	}
	at, err := nodeAttrs(n, allowed...)
	if err != nil {
		return nil, err
	}
	if z, err := at.int("allowzero", 0); err != nil {
		return nil, err
	} else if z != 0 {
		return nil, attrErr("allowzero=%d is not supported (only 0)", z)
	}
	return func(in []*tensor) (*tensor, error) {
		x := in[0]
		spec, err := shapeInput("shape", in[1])
		if err != nil {
			return nil, err
		}
		shape := make([]int, len(spec))
		infer := -1
		for k, d := range spec {
			switch {
			case d == 0:
				if k >= len(x.shape) {
					return nil, evalErr("shape %v copies dim %d of input %s", spec, k, x)
				}
				shape[k] = x.shape[k]
			case d == -1:
				if infer >= 0 {
					return nil, evalErr("shape %v has more than one -1", spec)
				}
				infer, shape[k] = k, 1
			case d < 0 || d > MaxElements:
				return nil, evalErr("shape %v has dim %d", spec, d)
			default:
				shape[k] = int(d)
			}
		}
		size := x.size()
		if infer >= 0 {
			p, err := numel(shape)
			if err != nil {
				return nil, evalErr("%v", err)
			}
			if p == 0 || size%p != 0 {
				return nil, evalErr("cannot reshape %s to %v", x, spec)
			}
			shape[infer] = size / p
		}
		if n, err := numel(shape); err != nil || n != size {
			return nil, evalErr("cannot reshape %s to %v", x, spec)
		}
		return x.withShape(shape), nil
	}, nil
}

// compileFlatten: [d0..dn) → [d0·…·d(axis-1), d(axis)·…·d(n-1)].
func compileFlatten(n *nodeProto, opset int) (kernel, error) {
	at, err := nodeAttrs(n, "axis")
	if err != nil {
		return nil, err
	}
	axis, err := at.int("axis", 1)
	if err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		x := in[0]
		ax, err := normAxis(axis, len(x.shape), true)
		if err != nil {
			return nil, evalErr("%v", err)
		}
		return x.withShape([]int{prod(x.shape[:ax]), prod(x.shape[ax:])}), nil
	}, nil
}

// compileConcat: concatenation along axis of tensors of one type.
func compileConcat(n *nodeProto, opset int) (kernel, error) {
	at, err := nodeAttrs(n, "axis")
	if err != nil {
		return nil, err
	}
	if at["axis"] == nil {
		return nil, attrErr("required attribute \"axis\" is missing")
	}
	if slices.Contains(n.inputs, "") {
		return nil, fmt.Errorf("%w: Concat inputs cannot be omitted", ErrInvalidNode)
	}
	axis, err := at.int("axis", 0)
	if err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		x0 := in[0]
		if x0 == nil {
			return nil, evalErr("input 0 is omitted")
		}
		ax, err := normAxis(axis, len(x0.shape), false)
		if err != nil {
			return nil, evalErr("%v", err)
		}
		shape := slices.Clone(x0.shape)
		shape[ax] = 0
		for _, x := range in {
			if x == nil || x.dt != x0.dt || len(x.shape) != len(shape) {
				return nil, evalErr("inputs %s and %v do not concatenate", x0, x)
			}
			for k, d := range x.shape {
				if k != ax && d != shape[k] {
					return nil, evalErr("inputs %s and %s do not concatenate along axis %d", x0, x, ax)
				}
			}
			if shape[ax] > MaxElements-x.shape[ax] {
				return nil, evalErr("concatenation too large")
			}
			shape[ax] += x.shape[ax]
		}
		y, err := newTensor(x0.dt, shape)
		if err != nil {
			return nil, evalErr("%v", err)
		}
		outer, inner := prod(shape[:ax]), prod(shape[ax+1:])
		if y.isInt() {
			concat(y.i, in, outer, inner, ax, func(t *tensor) []int64 { return t.i })
		} else {
			concat(y.f, in, outer, inner, ax, func(t *tensor) []float32 { return t.f })
		}
		return y, nil
	}, nil
}

func concat[T any](y []T, in []*tensor, outer, inner, ax int, data func(*tensor) []T) {
	if len(y) == 0 {
		return
	}
	off := 0
	for o := range outer {
		for _, x := range in {
			c := x.shape[ax] * inner
			off += copy(y[off:], data(x)[o*c:(o+1)*c])
		}
	}
}

// compileIdentity: the input itself.
func compileIdentity(n *nodeProto, opset int) (kernel, error) {
	if _, err := nodeAttrs(n); err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) { return in[0], nil }, nil
}

// compileConstant: exactly one of value (a FLOAT or INT64 tensor),
// value_float(s) and value_int(s).
func compileConstant(n *nodeProto, opset int) (kernel, error) {
	at, err := nodeAttrs(n, "value", "value_float", "value_floats", "value_int", "value_ints", "sparse_value", "value_string", "value_strings")
	if err != nil {
		return nil, err
	}
	if len(at) != 1 {
		return nil, attrErr("Constant needs exactly one value attribute, has %d", len(at))
	}
	var t *tensor
	for name := range at {
		switch name {
		case "value":
			a, err := at.get(name, attrTensor)
			if err != nil {
				return nil, err
			}
			if _, t, err = decodeTensor(a.t, "attribute value"); err != nil {
				return nil, err
			}
		case "value_float":
			a, err := at.get(name, attrFloat)
			if err != nil {
				return nil, err
			}
			t = &tensor{dt: typeFloat, shape: []int{}, f: []float32{a.f}}
		case "value_floats":
			a, err := at.get(name, attrFloats)
			if err != nil {
				return nil, err
			}
			t = &tensor{dt: typeFloat, shape: []int{len(a.floats)}, f: append([]float32{}, a.floats...)}
		case "value_int":
			a, err := at.get(name, attrInt)
			if err != nil {
				return nil, err
			}
			t = &tensor{dt: typeInt64, shape: []int{}, i: []int64{a.i}}
		case "value_ints":
			a, err := at.get(name, attrInts)
			if err != nil {
				return nil, err
			}
			t = &tensor{dt: typeInt64, shape: []int{len(a.ints)}, i: append([]int64{}, a.ints...)}
		default:
			return nil, attrErr("attribute %q is not supported (only FLOAT and INT64 constants)", name)
		}
	}
	if _, err := numel(t.shape); err != nil {
		return nil, attrErr("constant: %v", err)
	}
	return func([]*tensor) (*tensor, error) { return t, nil }, nil
}

// compileShape: the input's shape as INT64, sliced by start and end (opset
// 15+; negative values count from the end, out-of-range values are clamped).
func compileShape(n *nodeProto, opset int) (kernel, error) {
	allowed := []string{}
	if opset >= 15 {
		allowed = append(allowed, "start", "end")
	}
	at, err := nodeAttrs(n, allowed...)
	if err != nil {
		return nil, err
	}
	start, err1 := at.int("start", 0)
	end, err2 := at.int("end", math.MaxInt64)
	if err := firstErr(err1, err2); err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		r := int64(len(in[0].shape))
		clamp := func(v int64) int {
			if v < 0 {
				v += r
			}
			return int(min(max(v, 0), r))
		}
		s, e := clamp(start), clamp(end)
		e = max(e, s)
		y := &tensor{dt: typeInt64, shape: []int{e - s}, i: make([]int64, e-s)}
		for k := range y.i {
			y.i[k] = int64(in[0].shape[s+k])
		}
		return y, nil
	}, nil
}

// compileGather: numpy.take(data, indices, axis); INT64 indices, negative
// ones counting from the end.
func compileGather(n *nodeProto, opset int) (kernel, error) {
	at, err := nodeAttrs(n, "axis")
	if err != nil {
		return nil, err
	}
	axis, err := at.int("axis", 0)
	if err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		x, idx := in[0], in[1]
		if err := wantInt("indices", idx); err != nil {
			return nil, err
		}
		ax, err := normAxis(axis, len(x.shape), false)
		if err != nil {
			return nil, evalErr("%v", err)
		}
		d := x.shape[ax]
		for _, v := range idx.i {
			if v < -int64(d) || v >= int64(d) {
				return nil, evalErr("index %d out of range for axis %d of %s", v, ax, x)
			}
		}
		shape := slices.Concat(x.shape[:ax], idx.shape, x.shape[ax+1:])
		y, err := newTensor(x.dt, shape)
		if err != nil {
			return nil, evalErr("%v", err)
		}
		outer, inner := prod(x.shape[:ax]), prod(x.shape[ax+1:])
		if x.isInt() {
			gather(y.i, x.i, idx.i, outer, d, inner)
		} else {
			gather(y.f, x.f, idx.i, outer, d, inner)
		}
		return y, nil
	}, nil
}

func gather[T any](y, x []T, idx []int64, outer, d, inner int) {
	if len(y) == 0 {
		return
	}
	off := 0
	for o := range outer {
		for _, v := range idx {
			if v < 0 {
				v += int64(d)
			}
			src := (o*d + int(v)) * inner
			off += copy(y[off:], x[src:src+inner])
		}
	}
}

// axesInput normalises a list of axes against rank r and checks that none
// repeats.
func axesInput(axes []int64, r int) ([]int, error) {
	out := make([]int, len(axes))
	for k, a := range axes {
		ax, err := normAxis(a, r, false)
		if err != nil {
			return nil, evalErr("axes %v: %v", axes, err)
		}
		if slices.Contains(out[:k], ax) {
			return nil, evalErr("axes %v repeat an axis", axes)
		}
		out[k] = ax
	}
	return out, nil
}

// compileUnsqueeze: insert dims of size 1 at the axes given by the second
// input (opset 13+).
func compileUnsqueeze(n *nodeProto, opset int) (kernel, error) {
	if _, err := nodeAttrs(n); err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		x := in[0]
		a, err := shapeInput("axes", in[1])
		if err != nil {
			return nil, err
		}
		r := len(x.shape) + len(a)
		if r > maxRank {
			return nil, evalErr("unsqueezing %s by %d axes: rank more than %d", x, len(a), maxRank)
		}
		axes, err := axesInput(a, r)
		if err != nil {
			return nil, err
		}
		shape := make([]int, 0, r)
		rest := x.shape
		for k := range r {
			if slices.Contains(axes, k) {
				shape = append(shape, 1)
			} else {
				shape, rest = append(shape, rest[0]), rest[1:]
			}
		}
		return x.withShape(shape), nil
	}, nil
}

// compileSqueeze: remove the dims of size 1 at the axes given by the
// optional second input (opset 13+), or all of them.
func compileSqueeze(n *nodeProto, opset int) (kernel, error) {
	if _, err := nodeAttrs(n); err != nil {
		return nil, err
	}
	return func(in []*tensor) (*tensor, error) {
		x := in[0]
		var axes []int
		if t := opt(in, 1); t != nil {
			a, err := shapeInput("axes", t)
			if err != nil {
				return nil, err
			}
			if axes, err = axesInput(a, len(x.shape)); err != nil {
				return nil, err
			}
			for _, ax := range axes {
				if x.shape[ax] != 1 {
					return nil, evalErr("cannot squeeze axis %d of %s", ax, x)
				}
			}
		}
		shape := []int{}
		for k, d := range x.shape {
			if axes == nil && d == 1 || slices.Contains(axes, k) {
				continue
			}
			shape = append(shape, d)
		}
		return x.withShape(shape), nil
	}, nil
}

// compileCast: convert to FLOAT or INT64 (float to int truncates toward
// zero, as C and onnxruntime do).
func compileCast(n *nodeProto, opset int) (kernel, error) {
	at, err := nodeAttrs(n, "to")
	if err != nil {
		return nil, err
	}
	if at["to"] == nil {
		return nil, attrErr("required attribute \"to\" is missing")
	}
	to, err := at.int("to", 0)
	if err != nil {
		return nil, err
	}
	if to != typeFloat && to != typeInt64 {
		return nil, fmt.Errorf("%w: Cast to %s (only FLOAT and INT64)", ErrDataType, typeName(to))
	}
	return func(in []*tensor) (*tensor, error) {
		x := in[0]
		if x.dt == to {
			return x, nil
		}
		y, _ := newTensor(to, x.shape)
		if to == typeInt64 {
			for k, v := range x.f {
				y.i[k] = int64(v)
			}
		} else {
			for k, v := range x.i {
				y.f[k] = float32(v)
			}
		}
		return y, nil
	}, nil
}
