package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/modelci/modelci/model"
)

// An Open Inference Protocol (KServe V2) inference request carries the
// rows in one of two layouts (docs/serving.md):
//
//   - one input, named as the model's metadata names it ("input" for the
//     built-in model, the graph input's name for ONNX), of shape
//     [rows, features], the features in the model's order;
//   - one input per feature, named after it, each of shape [rows] (or
//     [rows, 1]).
//
// Data is row-major, flat or nested as the shape. FP64, FP32 and INT64
// tensors hold numbers (FP32 values are rounded to float32, INT64 values
// must be integers); BYTES tensors hold strings, each read as a CSV cell
// is (a number, "" for a missing value, else a category).
//
// decodeV2 has two paths, as decodeRequest does: a hand-written one that
// allocates nothing for the common bodies (numbers only, no escapes, no
// parameters) and encoding/json for everything else, which also words
// every error. Both end in v2Scratch.assemble, so they cannot disagree on
// what the tensors mean.

// Datatypes the server takes.
const (
	dtFP64  = "FP64"
	dtFP32  = "FP32"
	dtINT64 = "INT64"
	dtBYTES = "BYTES"
)

// v2Sig is what a model takes and answers in V2 terms.
type v2Sig struct {
	features []string
	input    string // the name of the [rows, features] input
	output   string
}

// v2Input is one decoded input tensor; its values are
// v2Scratch.data[start:start+n] (and cells[start:start+n] when cells is
// set), its shape dims[dim:dim+rank].
type v2Input struct {
	name     []byte
	dim      int
	rank     int
	start, n int
}

// v2Scratch holds a request's tensors; it lives in the pooled buffers.
type v2Scratch struct {
	inputs []v2Input
	dims   []int
	data   []float64
	cells  []string // BYTES cells' text, nil when no input is BYTES
	seen   []bool   // per feature, for the per-feature layout
	cur    int      // the slow path: where the tensor being read starts
}

func (sc *v2Scratch) reset() {
	sc.inputs, sc.dims, sc.data, sc.cells, sc.seen = sc.inputs[:0], sc.dims[:0], sc.data[:0], nil, sc.seen[:0]
}

func (sc *v2Scratch) large() bool {
	return cap(sc.data) > maxPooled/8 || cap(sc.inputs) > 4096 || cap(sc.dims) > 8192
}

func (sc *v2Scratch) shape(in v2Input) []int { return sc.dims[in.dim : in.dim+in.rank] }

// v2Decoded is a decoded inference request.
type v2Decoded struct {
	req request
	// id is the request's "id" as a JSON string literal, quotes
	// included, to echo; nil when the request has none.
	id []byte
}

// decodeV2 decodes an inference request body for sig into rows, appending
// to x and text.
func decodeV2(b []byte, sig *v2Sig, sc *v2Scratch, x []float64, text []string) (v2Decoded, error) {
	sc.reset()
	if id, ok := decodeV2Fast(b, sc); ok {
		d := v2Decoded{id: id}
		var err error
		d.req, err = sc.assemble(sig, x, text)
		return d, err
	}
	sc.reset()
	return decodeV2Slow(b, sig, sc, x, text)
}

func formatShape(s []int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(d))
	}
	b.WriteByte(']')
	return b.String()
}

// assemble lays the decoded tensors out as rows in the model's feature
// order, in x (and in text when a tensor was BYTES), whose storage it
// reuses (both are passed empty).
func (sc *v2Scratch) assemble(sig *v2Sig, x []float64, text []string) (request, error) {
	r := request{x: x, shape: shapeInstances}
	p := len(sig.features)
	if len(sc.inputs) == 0 {
		return r, errors.New("no inputs")
	}
	matrixHint := func() string { return fmt.Sprintf("%q of shape [-1, %d]", sig.input, p) }
	if in := sc.inputs[0]; len(sc.inputs) == 1 && string(in.name) == sig.input && (in.rank == 2 || featureIndex(sig.features, in.name) < 0) {
		shape := sc.shape(in)
		if in.rank != 2 || shape[1] != p {
			return r, fmt.Errorf("input %q: shape %s, want [rows, %d]", in.name, formatShape(shape), p)
		}
		if shape[0] == 0 {
			return r, fmt.Errorf("input %q: shape %s: no rows", in.name, formatShape(shape))
		}
		r.rows = shape[0]
		r.x = append(x[:0], sc.data[in.start:in.start+in.n]...)
		if sc.cells != nil {
			r.text = append(text[:0], sc.cells[in.start:in.start+in.n]...)
		}
		return r, nil
	}
	// One input per feature.
	if cap(sc.seen) < p {
		sc.seen = make([]bool, p)
	}
	seen := sc.seen[:p]
	clear(seen)
	rows := -1
	var first []byte
	for _, in := range sc.inputs {
		j := featureIndex(sig.features, in.name)
		if j < 0 {
			return r, fmt.Errorf("unknown input %q: the model takes %s, or one input of shape [-1] per feature (%s)", in.name, matrixHint(), model.QuoteList(sig.features))
		}
		if seen[j] {
			return r, fmt.Errorf("input %q given twice", in.name)
		}
		seen[j] = true
		shape := sc.shape(in)
		if in.rank != 1 && (in.rank != 2 || shape[1] != 1) {
			return r, fmt.Errorf("input %q: shape %s, want [rows] for one feature", in.name, formatShape(shape))
		}
		switch {
		case shape[0] == 0:
			return r, fmt.Errorf("input %q: shape %s: no rows", in.name, formatShape(shape))
		case rows < 0:
			rows, first = shape[0], in.name
		case shape[0] != rows:
			return r, fmt.Errorf("input %q has %d rows, input %q %d", in.name, shape[0], first, rows)
		}
	}
	for j, ok := range seen {
		if !ok {
			return r, fmt.Errorf("missing input %q: give one input per feature, or %s", sig.features[j], matrixHint())
		}
	}
	r.rows = rows
	r.x = growFloats(x, rows*p)
	if sc.cells != nil {
		if cap(text) < rows*p {
			text = make([]string, rows*p)
		}
		r.text = text[:rows*p]
	}
	for _, in := range sc.inputs {
		j := featureIndex(sig.features, in.name)
		for i, v := range sc.data[in.start : in.start+in.n] {
			r.x[i*p+j] = v
		}
		if sc.cells != nil {
			for i, t := range sc.cells[in.start : in.start+in.n] {
				r.text[i*p+j] = t
			}
		}
	}
	return r, nil
}

func featureIndex(features []string, name []byte) int {
	for j, f := range features {
		if f == string(name) {
			return j
		}
	}
	return -1
}

// str reads a string of printable ASCII without escapes (the '"' not yet
// read) and returns it with its quotes.
func (s *scanner) str() ([]byte, bool) {
	start := s.i
	if !s.eat('"') {
		return nil, false
	}
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start:s.i], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// decodeV2Fast parses the common inference requests into sc: top-level
// "id" and "inputs" only; inputs with "name", "shape" (one or two dims),
// "datatype" (FP64, FP32 or INT64) and "data" (numbers, flat or nested
// two deep), in any order, each once. It reports false for anything else,
// valid or not, and for tensors whose data does not fit their shape.
func decodeV2Fast(b []byte, sc *v2Scratch) (id []byte, ok bool) {
	s := scanner{b: b}
	s.ws()
	if !s.eat('{') {
		return nil, false
	}
	var haveID, haveInputs bool
	for {
		key, ok := s.member()
		if !ok {
			return nil, false
		}
		switch string(key) {
		case "id":
			if haveID {
				return nil, false
			}
			haveID = true
			if id, ok = s.str(); !ok {
				return nil, false
			}
		case "inputs":
			if haveInputs || !s.eat('[') {
				return nil, false
			}
			haveInputs = true
			for {
				s.ws()
				if !s.v2Input(sc) {
					return nil, false
				}
				s.ws()
				if s.eat(',') {
					continue
				}
				if !s.eat(']') {
					return nil, false
				}
				break
			}
		default:
			return nil, false
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			return nil, false
		}
		break
	}
	s.ws()
	return id, haveInputs && s.i == len(b)
}

// v2Input reads one input object for decodeV2Fast.
func (s *scanner) v2Input(sc *v2Scratch) bool {
	if !s.eat('{') {
		return false
	}
	in := v2Input{dim: len(sc.dims), start: len(sc.data)}
	var haveName, haveShape, haveType, haveData bool
	var dtype string
	var depth, outer, inner int
	allInt := true
	for {
		key, ok := s.member()
		if !ok {
			return false
		}
		switch string(key) {
		case "name":
			v, ok := s.str()
			if haveName || !ok || len(v) == 2 {
				return false
			}
			haveName, in.name = true, v[1:len(v)-1]
		case "shape":
			if haveShape || !s.eat('[') {
				return false
			}
			haveShape = true
			for {
				s.ws()
				v, end, integer, ok := parseNumber(s.b, s.i)
				if !ok || !integer || v < 0 || v > 1<<40 || in.rank == 2 {
					return false
				}
				s.i = end
				sc.dims = append(sc.dims, int(v))
				in.rank++
				s.ws()
				if s.eat(',') {
					continue
				}
				if !s.eat(']') {
					return false
				}
				break
			}
		case "datatype":
			v, ok := s.str()
			if haveType || !ok {
				return false
			}
			haveType = true
			switch string(v[1 : len(v)-1]) {
			case dtFP64:
				dtype = dtFP64
			case dtFP32:
				dtype = dtFP32
			case dtINT64:
				dtype = dtINT64
			default:
				return false
			}
		case "data":
			if haveData || !s.eat('[') {
				return false
			}
			haveData = true
			s.ws()
			depth = 1
			if s.peek() == '[' {
				depth = 2
			}
			if depth == 1 {
				var ok bool
				if sc.data, outer, ok = s.numbers(sc.data, &allInt); !ok {
					return false
				}
				break
			}
			for {
				s.ws()
				if !s.eat('[') {
					return false
				}
				var n int
				var ok bool
				if sc.data, n, ok = s.numbers(sc.data, &allInt); !ok || outer > 0 && n != inner {
					return false
				}
				inner = n
				outer++
				s.ws()
				if s.eat(',') {
					continue
				}
				if !s.eat(']') {
					return false
				}
				break
			}
		default:
			return false
		}
		s.ws()
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			return false
		}
		break
	}
	if !haveName || !haveShape || !haveType || !haveData {
		return false
	}
	in.n = len(sc.data) - in.start
	shape := sc.shape(in)
	if depth == 2 {
		if in.rank != 2 || shape[0] != outer || shape[1] != inner {
			return false
		}
	} else if n := shapeSize(shape); n != in.n {
		return false
	}
	vals := sc.data[in.start:]
	switch dtype {
	case dtFP32:
		for i, v := range vals {
			f := float32(v)
			if math.IsInf(float64(f), 0) {
				return false
			}
			vals[i] = float64(f)
		}
	case dtINT64:
		if !allInt {
			return false
		}
		for i, v := range vals {
			if v == 0 {
				vals[i] = 0 // ParseInt's zero has no sign
			}
		}
	}
	sc.inputs = append(sc.inputs, in)
	return true
}

// shapeSize is the number of elements of shape, -1 when it overflows.
func shapeSize(shape []int) int {
	n := 1
	for _, d := range shape {
		if d != 0 && n > math.MaxInt32/d {
			return -1
		}
		n *= d
	}
	return n
}

// The slow path's JSON documents.
type (
	v2Body struct {
		ID         *string           `json:"id"`
		Parameters json.RawMessage   `json:"parameters"`
		Inputs     []json.RawMessage `json:"inputs"`
		Outputs    []v2Requested     `json:"outputs"`
	}
	v2InputBody struct {
		Name       *string         `json:"name"`
		Shape      []int64         `json:"shape"`
		Datatype   *string         `json:"datatype"`
		Parameters json.RawMessage `json:"parameters"`
		Data       json.RawMessage `json:"data"`
	}
	v2Requested struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	}
)

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the top-level object")
	}
	return nil
}

func isObjectOrNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || raw[0] == '{' || string(raw) == "null"
}

// decodeV2Slow decodes any inference request with encoding/json and words
// the error for everything it refuses.
func decodeV2Slow(b []byte, sig *v2Sig, sc *v2Scratch, x []float64, text []string) (v2Decoded, error) {
	d := v2Decoded{req: request{x: x, shape: shapeInstances}}
	var body v2Body
	if err := strictUnmarshal(b, &body); err != nil {
		return d, fmt.Errorf("bad JSON: %w", err)
	}
	if body.ID != nil {
		d.id, _ = json.Marshal(*body.ID)
	}
	if !isObjectOrNull(body.Parameters) {
		return d, errors.New("parameters: want an object")
	}
	for _, o := range body.Outputs {
		if o.Name != sig.output {
			return d, fmt.Errorf("unknown output %q: the model's output is %q", o.Name, sig.output)
		}
		if !isObjectOrNull(o.Parameters) {
			return d, fmt.Errorf("output %q: parameters: want an object", o.Name)
		}
	}
	if len(body.Inputs) == 0 {
		return d, errors.New(`no inputs: want "inputs", an array of tensors`)
	}
	for k, raw := range body.Inputs {
		var ib v2InputBody
		if err := strictUnmarshal(raw, &ib); err != nil {
			return d, fmt.Errorf("bad JSON: input %d: %w", k, err)
		}
		switch {
		case ib.Name == nil || *ib.Name == "":
			return d, fmt.Errorf(`input %d: no "name"`, k)
		case ib.Shape == nil:
			return d, fmt.Errorf(`input %q: no "shape"`, *ib.Name)
		case ib.Datatype == nil:
			return d, fmt.Errorf(`input %q: no "datatype"`, *ib.Name)
		case len(bytes.TrimSpace(ib.Data)) == 0:
			return d, fmt.Errorf(`input %q: no "data"`, *ib.Name)
		case !isObjectOrNull(ib.Parameters):
			return d, fmt.Errorf("input %q: parameters: want an object", *ib.Name)
		}
		name := *ib.Name
		switch *ib.Datatype {
		case dtFP64, dtFP32, dtINT64:
		case dtBYTES:
			if sc.cells == nil {
				sc.cells = make([]string, len(sc.data), max(len(sc.data), 16))
			}
		default:
			return d, fmt.Errorf("input %q: datatype %q is not supported: want FP64, FP32, INT64 or BYTES", name, *ib.Datatype)
		}
		in := v2Input{name: []byte(name), dim: len(sc.dims), rank: len(ib.Shape), start: len(sc.data)}
		for _, dim := range ib.Shape {
			if dim < 0 || dim > 1<<40 {
				return d, fmt.Errorf("input %q: shape %v: dimensions must be 0 or more", name, ib.Shape)
			}
			sc.dims = append(sc.dims, int(dim))
		}
		sc.cur = in.start
		if err := sc.flatten(ib.Data, sc.shape(in), *ib.Datatype); err != nil {
			return d, fmt.Errorf("input %q: %w", name, err)
		}
		in.n = len(sc.data) - in.start
		sc.inputs = append(sc.inputs, in)
	}
	var err error
	d.req, err = sc.assemble(sig, x, text)
	return d, err
}

// flatten appends a tensor's data, flat or nested as its shape, row-major.
func (sc *v2Scratch) flatten(raw json.RawMessage, shape []int, dtype string) error {
	raw = bytes.TrimSpace(raw)
	if raw[0] != '[' {
		return fmt.Errorf("data: want an array, got %.20s", raw)
	}
	depth := 0
	for r := raw; len(r) > 0 && r[0] == '['; depth++ {
		var elems []json.RawMessage
		if err := json.Unmarshal(r, &elems); err != nil {
			return fmt.Errorf("bad JSON: data: %w", err)
		}
		if len(elems) == 0 {
			depth++
			break
		}
		r = bytes.TrimSpace(elems[0])
	}
	size := shapeSize(shape)
	var leaves int
	var err error
	switch {
	case depth == 1:
		leaves, err = sc.leaves(raw, dtype, -1)
		if err == nil && leaves != size {
			err = fmt.Errorf("shape %s holds %d values, data has %d", formatShape(shape), size, leaves)
		}
	case depth == len(shape):
		err = sc.nested(raw, shape, dtype)
	default:
		err = fmt.Errorf("data nested %d deep: want it flat, or nested as shape %s", depth, formatShape(shape))
	}
	return err
}

// nested appends data nested exactly as shape.
func (sc *v2Scratch) nested(raw json.RawMessage, shape []int, dtype string) error {
	if len(shape) == 1 {
		_, err := sc.leaves(raw, dtype, shape[0])
		return err
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil || len(elems) != shape[0] {
		return fmt.Errorf("data: want %d arrays of shape %s at this level, got %.40s", shape[0], formatShape(shape[1:]), raw)
	}
	for _, e := range elems {
		if e = bytes.TrimSpace(e); len(e) == 0 || e[0] != '[' {
			return fmt.Errorf("data: want an array of shape %s, got %.20s", formatShape(shape[1:]), e)
		}
		if err := sc.nested(e, shape[1:], dtype); err != nil {
			return err
		}
	}
	return nil
}

// leaves appends an array of values (want of them unless want is -1).
func (sc *v2Scratch) leaves(raw json.RawMessage, dtype string, want int) (int, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return 0, fmt.Errorf("bad JSON: data: %w", err)
	}
	if want >= 0 && len(elems) != want {
		return 0, fmt.Errorf("data: want %d values at the innermost level, got %d", want, len(elems))
	}
	for _, e := range elems {
		v, text, err := leafValue(bytes.TrimSpace(e), dtype)
		if err != nil {
			return 0, fmt.Errorf("element %d (row-major): %w", len(sc.data)-sc.cur, err)
		}
		sc.data = append(sc.data, v)
		if sc.cells != nil {
			sc.cells = append(sc.cells, text)
		}
	}
	return len(elems), nil
}

// leafValue reads one element of a tensor of dtype.
func leafValue(e []byte, dtype string) (float64, string, error) {
	if dtype == dtBYTES {
		if len(e) == 0 || e[0] != '"' {
			return 0, "", fmt.Errorf("BYTES element %.20s: want a string", e)
		}
		var s string
		if err := json.Unmarshal(e, &s); err != nil {
			return 0, "", err
		}
		return model.ParseCell(s)
	}
	if len(e) == 0 || e[0] != '-' && (e[0] < '0' || e[0] > '9') {
		return 0, "", fmt.Errorf("%s element %.20s: want a number", dtype, e)
	}
	switch dtype {
	case dtINT64:
		n, err := strconv.ParseInt(string(e), 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("INT64 element %s: not a 64-bit integer", e)
		}
		return float64(n), "", nil
	case dtFP32:
		v, err := strconv.ParseFloat(string(e), 64)
		if f := float32(v); err != nil || math.IsInf(float64(f), 0) {
			return 0, "", fmt.Errorf("FP32 element %s out of range", e)
		}
		return float64(float32(v)), "", nil
	}
	v, err := strconv.ParseFloat(string(e), 64)
	if err != nil {
		return 0, "", fmt.Errorf("FP64 element %s out of range", e)
	}
	return v, "", nil
}
