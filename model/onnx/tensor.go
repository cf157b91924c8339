package onnx

import (
	"fmt"
	"strconv"
	"strings"
)

// ONNX TensorProto.DataType values this package names. Only FLOAT and INT64
// are computed with; the others appear in error messages.
const (
	typeFloat  = 1
	typeInt32  = 6
	typeInt64  = 7
	typeBool   = 9
	typeDouble = 11
)

// typeName returns the onnx.proto name of a TensorProto.DataType value.
func typeName(t int64) string {
	names := map[int64]string{
		0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16",
		6: "INT32", 7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE",
		12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return "type " + strconv.FormatInt(t, 10)
}

// MaxElements bounds the number of elements of any tensor the interpreter
// creates or accepts, and the product of the non-zero dims of any shape, so
// that a hostile model cannot make Run allocate or loop without bound.
const MaxElements = 1 << 26

// maxRank bounds the rank of every tensor, for the same reason.
const maxRank = 32

// tensor is a dense row-major tensor of float32 (f) or int64 (i). Exactly
// one of f and i is used, as dt says. Tensors are never modified once
// created: kernels allocate their outputs, and ops that only change the
// shape (Reshape, Squeeze, Identity, ...) share the input's data. That is
// what makes a loaded Model safe for concurrent use.
type tensor struct {
	dt    int64 // typeFloat or typeInt64
	shape []int
	f     []float32
	i     []int64
}

func (t *tensor) isInt() bool { return t.dt == typeInt64 }

// size is the number of elements.
func (t *tensor) size() int {
	if t.dt == typeInt64 {
		return len(t.i)
	}
	return len(t.f)
}

// withShape returns a tensor sharing t's data with another shape of the same
// size.
func (t *tensor) withShape(shape []int) *tensor {
	return &tensor{dt: t.dt, shape: shape, f: t.f, i: t.i}
}

func (t *tensor) String() string {
	return typeName(t.dt) + shapeString(t.shape)
}

func shapeString(s []int) string {
	var b strings.Builder
	b.WriteByte('[')
	for k, d := range s {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(d))
	}
	b.WriteByte(']')
	return b.String()
}

// numel checks a shape (rank at most maxRank, no negative dim, the product
// of the non-zero dims at most MaxElements) and returns its number of
// elements.
func numel(shape []int) (int, error) {
	if len(shape) > maxRank {
		return 0, fmt.Errorf("rank %d is more than %d", len(shape), maxRank)
	}
	n, zero := 1, false
	for _, d := range shape {
		switch {
		case d < 0:
			return 0, fmt.Errorf("negative dim in shape %s", shapeString(shape))
		case d == 0:
			zero = true
		case n > MaxElements/d:
			return 0, fmt.Errorf("shape %s has more than %d elements", shapeString(shape), MaxElements)
		default:
			n *= d
		}
	}
	if zero {
		return 0, nil
	}
	return n, nil
}

// newTensor allocates a zeroed tensor of type dt and the given shape.
func newTensor(dt int64, shape []int) (*tensor, error) {
	n, err := numel(shape)
	if err != nil {
		return nil, err
	}
	t := &tensor{dt: dt, shape: shape}
	if dt == typeInt64 {
		t.i = make([]int64, n)
	} else {
		t.f = make([]float32, n)
	}
	return t, nil
}

// prod is the product of dims (callers pass parts of a checked shape).
func prod(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// normAxis maps axis in [-rank, rank) (or [-rank, rank] when inclusive) to
// a non-negative axis.
func normAxis(axis int64, rank int, inclusive bool) (int, error) {
	hi := int64(rank)
	if inclusive {
		hi++
	}
	if axis < -int64(rank) || axis >= hi {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// broadcastShapes returns the numpy (multidirectional) broadcast of a and b.
func broadcastShapes(a, b []int) ([]int, error) {
	r := max(len(a), len(b))
	out := make([]int, r)
	for k := range r {
		da, db := 1, 1
		if j := k - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := k - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db || db == 1:
			out[k] = da
		case da == 1:
			out[k] = db
		default:
			return nil, fmt.Errorf("shapes %s and %s do not broadcast", shapeString(a), shapeString(b))
		}
	}
	return out, nil
}

// broadcastStrides returns the element strides of a row-major tensor of
// shape s read as a tensor of shape out (len(out) >= len(s), s broadcasts to
// out): 0 along broadcast dims.
func broadcastStrides(s, out []int) []int {
	st := make([]int, len(out))
	step := 1
	for k := len(out) - 1; k >= 0; k-- {
		j := k - (len(out) - len(s))
		if j < 0 {
			break
		}
		if s[j] != 1 {
			st[k] = step
		}
		step *= s[j]
	}
	return st
}

// forBroadcast calls fn(o, ia, ib) for every element o of the output shape
// out with the offsets of the elements of a and b (strides sa and sb) it is
// computed from.
func forBroadcast(out, sa, sb []int, fn func(o, ia, ib int)) {
	n := prod(out)
	if n == 0 {
		return
	}
	r := len(out)
	idx := make([]int, r)
	ia, ib := 0, 0
	for o := range n {
		fn(o, ia, ib)
		for k := r - 1; k >= 0; k-- {
			idx[k]++
			ia += sa[k]
			ib += sb[k]
			if idx[k] < out[k] {
				break
			}
			ia -= sa[k] * out[k]
			ib -= sb[k] * out[k]
			idx[k] = 0
		}
	}
}
