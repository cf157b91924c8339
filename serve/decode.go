package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"

	"github.com/modelci/modelci/model"
)

// shape is the form a request's rows came in; the answer mirrors it.
type shape uint8

const (
	shapeInstances shape = iota // {"instances": [[x1, …], …]}
	shapeRow                    // {"input": [x1, …]}: the seed's one row
	shapeRows                   // {"input": [[x1, …], …]}
	shapeObject                 // {"input": {"age": x1, …}}
	shapeObjects                // {"input": [{"age": x1, …}, …]}
)

// request is a decoded body: rows of raw features in the model's order,
// row-major in x. For a linear/v2 model a feature may also be a string or
// null: x is then NaN and text holds the string ("" for null or a blank
// string, a missing value); text is nil when every feature is a number.
type request struct {
	x     []float64
	text  []string
	rows  int
	shape shape
}

func (r request) single() bool { return r.shape == shapeRow || r.shape == shapeObject }

func instanceName(r request, i int) string {
	if r.single() {
		return "input"
	}
	return "instance " + strconv.Itoa(i)
}

// decodeRequest parses a body into rows for a model with the given features,
// appending to dst. Bodies of the common shapes take a hand-written path
// that allocates nothing; anything unusual, invalid included, goes through
// encoding/json, which also words every error.
func decodeRequest(b []byte, features []string, dst []float64) (request, error) {
	if r, ok := decodeFast(b, len(features), dst); ok {
		return r, nil
	}
	r, err := decodeSlow(b, features, dst[:0])
	if err != nil {
		// Keep the (possibly grown) buffer for the pool.
		r.x = dst[:0]
	}
	return r, err
}

// scanner walks a JSON body for decodeFast.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// key reads a string without escapes.
func (s *scanner) key() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// member reads an object member's key and its colon, with the white space
// around them: what follows is the value.
func (s *scanner) member() ([]byte, bool) {
	s.ws()
	key, ok := s.key()
	if !ok {
		return nil, false
	}
	s.ws()
	if !s.eat(':') {
		return nil, false
	}
	s.ws()
	return key, true
}

// number reads a number (parseNumber).
func (s *scanner) number() (float64, bool) {
	v, end, _, ok := parseNumber(s.b, s.i)
	if ok {
		s.i = end
	}
	return v, ok
}

// numbers reads numbers separated by commas, up to and including ']' (the
// '[' already read), appending them to x, and returns how many it read. It
// reports false unless the array is one of numbers. allInt, when not nil,
// is cleared unless every number is an integer literal of at most 18
// characters. The common numbers, [-]digits[.digits] of at most 19 digits
// whose digits fit in 53 bits, are read here in one pass: the digits are
// exact in a float64 and so is 10^frac (frac ≤ 18), so one correctly
// rounded division gives strconv.ParseFloat's value (Clinger's fast path,
// parseNumber's too, without its bookkeeping for exponents and long
// literals). Leading zeros, exponents and longer literals go to
// parseNumber.
func (s *scanner) numbers(x []float64, allInt *bool) ([]float64, int, bool) {
	b, i, n := s.b, s.i, 0
	for {
		for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
			i++
		}
		start := i
		neg := i < len(b) && b[i] == '-'
		if neg {
			i++
		}
		j := i
		var mant uint64
		for ; i < len(b); i++ {
			c := b[i] - '0'
			if c > 9 {
				break
			}
			mant = mant*10 + uint64(c)
		}
		nint, frac := i-j, 0
		if i < len(b) && b[i] == '.' {
			i++
			k := i
			for ; i < len(b); i++ {
				c := b[i] - '0'
				if c > 9 {
					break
				}
				mant = mant*10 + uint64(c)
			}
			frac = i - k
			if frac == 0 {
				s.i = i
				return x, n, false
			}
		}
		var v float64
		if nint == 0 || nint > 1 && b[j] == '0' || i < len(b) && (b[i] == 'e' || b[i] == 'E') || nint+frac > 19 || mant >= 1<<53 || frac > 22 {
			var integer, ok bool
			v, i, integer, ok = parseNumber(b, start)
			if !ok {
				s.i = i
				return x, n, false
			}
			if allInt != nil && (!integer || i-start > 18) {
				*allInt = false
			}
		} else {
			v = float64(mant)
			if neg {
				v = -v
			}
			if frac > 0 {
				v /= pow10[frac]
			}
			if allInt != nil && (frac > 0 || i-start > 18) {
				*allInt = false
			}
		}
		x = append(x, v)
		n++
		for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
			i++
		}
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == ']' {
			i++
			s.i = i
			return x, n, true
		}
		s.i = i
		return x, n, false
	}
}

// row reads numbers up to and including ']' (the '[' already read) and
// reports whether there were exactly p of them.
func (s *scanner) row(x []float64, p int) ([]float64, bool) {
	x, n, ok := s.numbers(x, nil)
	return x, ok && n == p
}

// rows reads rows up to and including the outer ']' (the '[' already read).
func (s *scanner) rows(x []float64, p int) ([]float64, int, bool) {
	n := 0
	for {
		s.ws()
		if !s.eat('[') {
			return x, n, false
		}
		var ok bool
		if x, ok = s.row(x, p); !ok {
			return x, n, false
		}
		n++
		s.ws()
		if s.eat(',') {
			continue
		}
		return x, n, s.eat(']')
	}
}

// decodeFast handles {"instances": [[numbers]…]}, {"input": [numbers]} and
// {"input": [[numbers]…]} with the right number of features in every row.
// It reports false for anything else, whether valid or not.
func decodeFast(b []byte, p int, x []float64) (request, bool) {
	s := scanner{b: b}
	r := request{x: x}
	s.ws()
	if !s.eat('{') {
		return r, false
	}
	key, ok := s.member()
	if !ok {
		return r, false
	}
	if !s.eat('[') {
		return r, false
	}
	s.ws()
	switch string(key) {
	case "instances":
		r.shape = shapeInstances
		r.x, r.rows, ok = s.rows(r.x, p)
	case "input":
		if s.peek() == '[' {
			r.shape = shapeRows
			r.x, r.rows, ok = s.rows(r.x, p)
		} else {
			r.shape, r.rows = shapeRow, 1
			r.x, ok = s.row(r.x, p)
		}
	default:
		return r, false
	}
	if !ok {
		return r, false
	}
	s.ws()
	if !s.eat('}') {
		return r, false
	}
	s.ws()
	return r, s.i == len(b)
}

// envelope is a body's top level: {"instances": …} or {"input": …}.
type envelope struct {
	Instances json.RawMessage `json:"instances"`
	Input     json.RawMessage `json:"input"`
}

// decodeEnvelope decodes the top level strictly and says which key it has.
func decodeEnvelope(b []byte) (env envelope, hasInstances, hasInput bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		if errors.Is(err, io.EOF) {
			return env, false, false, errors.New("bad JSON: empty body")
		}
		return env, false, false, fmt.Errorf("bad JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return env, false, false, errors.New("bad JSON: data after the top-level object")
	}
	hasInstances, hasInput = !isNull(env.Instances), !isNull(env.Input)
	switch {
	case hasInstances && hasInput:
		return env, true, true, errors.New(`give either "instances" or "input", not both`)
	case !hasInstances && !hasInput:
		return env, false, false, errors.New(`want an object with "instances" (an array of rows) or "input"`)
	}
	return env, hasInstances, hasInput, nil
}

// decodeSlow decodes any accepted body with encoding/json and words the
// error for everything else.
func decodeSlow(b []byte, features []string, x []float64) (request, error) {
	r := request{x: x}
	env, hasInstances, hasInput, err := decodeEnvelope(b)
	switch {
	case err != nil:
		return r, err
	case hasInstances:
		r.shape = shapeInstances
		var rows [][]*float64
		if err := json.Unmarshal(env.Instances, &rows); err != nil {
			return r, fmt.Errorf("bad JSON: instances: want an array of arrays of numbers: %w", err)
		}
		return appendArrays(r, rows, features)
	case hasInput:
		return decodeInput(r, env.Input, features)
	}
	panic("unreachable")
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

// decodeInput decodes the seed's "input": one row or many, as arrays of
// numbers in the model's feature order or as objects keyed by feature name.
func decodeInput(r request, raw json.RawMessage, features []string) (request, error) {
	raw = bytes.TrimSpace(raw)
	switch raw[0] {
	case '{':
		r.shape = shapeObject
		var obj map[string]*float64
		if err := json.Unmarshal(raw, &obj); err != nil {
			return r, fmt.Errorf("bad JSON: input: want an object of numbers keyed by feature name: %w", err)
		}
		return appendObjects(r, []map[string]*float64{obj}, features)
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return r, fmt.Errorf("bad JSON: input: %w", err)
		}
		if len(elems) == 0 {
			return r, errors.New("no instances: input is empty")
		}
		switch bytes.TrimSpace(elems[0])[0] {
		case '[':
			r.shape = shapeRows
			var rows [][]*float64
			if err := json.Unmarshal(raw, &rows); err != nil {
				return r, fmt.Errorf("bad JSON: input: want an array of arrays of numbers: %w", err)
			}
			return appendArrays(r, rows, features)
		case '{':
			r.shape = shapeObjects
			var objs []map[string]*float64
			if err := json.Unmarshal(raw, &objs); err != nil {
				return r, fmt.Errorf("bad JSON: input: want an array of objects of numbers: %w", err)
			}
			return appendObjects(r, objs, features)
		default:
			r.shape = shapeRow
			var row []*float64
			if err := json.Unmarshal(raw, &row); err != nil {
				return r, fmt.Errorf("bad JSON: input: want an array of numbers: %w", err)
			}
			return appendArrays(r, [][]*float64{row}, features)
		}
	}
	return r, errors.New("input: want an array of numbers, an array of rows, or an object keyed by feature name")
}

// appendArrays checks rows of numbers in feature order; pointers tell a
// JSON null (an error) from zero.
func appendArrays(r request, rows [][]*float64, features []string) (request, error) {
	if len(rows) == 0 {
		return r, errors.New("no instances")
	}
	p := len(features)
	for i, row := range rows {
		if len(row) != p {
			return r, fmt.Errorf("%s: got %d features, want %d", instanceName(r, i), len(row), p)
		}
		for j, v := range row {
			if v == nil {
				return r, fmt.Errorf("%s: feature %d (%s) is null", instanceName(r, i), j, features[j])
			}
			r.x = append(r.x, *v)
		}
		r.rows++
	}
	return r, nil
}

// unknownFeature names the first key of obj, in sorted order, that is not
// one of the model's features.
func unknownFeature[V any](r request, i int, obj map[string]V, features []string) error {
	var unknown []string
	for k := range obj {
		if !slices.Contains(features, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("%s: unknown feature %q; the model's features are %q", instanceName(r, i), unknown[0], features)
}

// appendObjects checks rows keyed by feature name: every feature present,
// no other key.
func appendObjects(r request, objs []map[string]*float64, features []string) (request, error) {
	for i, obj := range objs {
		if obj == nil {
			return r, fmt.Errorf("%s: null, want an object keyed by feature name", instanceName(r, i))
		}
		if err := unknownFeature(r, i, obj, features); err != nil {
			return r, err
		}
		for _, f := range features {
			v, ok := obj[f]
			switch {
			case !ok:
				return r, fmt.Errorf("%s: missing feature %q", instanceName(r, i), f)
			case v == nil:
				return r, fmt.Errorf("%s: feature %q is null", instanceName(r, i), f)
			}
			r.x = append(r.x, *v)
		}
		r.rows++
	}
	return r, nil
}

// decodeCellsRequest parses a body for a linear/v2 model, whose features
// may be strings and nulls as well as numbers, appending to x and text.
// Bodies of numbers only take decodeFast; anything else goes through
// encoding/json.
func decodeCellsRequest(b []byte, features []string, x []float64, text []string) (request, error) {
	if r, ok := decodeFast(b, len(features), x); ok {
		return r, nil
	}
	r, err := decodeCells(b, features, x[:0], text[:0])
	if err != nil {
		r.x, r.text = x[:0], text[:0]
	}
	return r, err
}

// decodeCells is decodeSlow for a v2 model: every feature is a JSON value
// read by cellValue.
func decodeCells(b []byte, features []string, x []float64, text []string) (request, error) {
	r := request{x: x, text: text}
	env, hasInstances, _, err := decodeEnvelope(b)
	if err != nil {
		return r, err
	}
	if hasInstances {
		r.shape = shapeInstances
		var rows [][]json.RawMessage
		if err := json.Unmarshal(env.Instances, &rows); err != nil {
			return r, fmt.Errorf("bad JSON: instances: want an array of rows: %w", err)
		}
		return appendCellArrays(r, rows, features)
	}
	raw := bytes.TrimSpace(env.Input)
	switch raw[0] {
	case '{':
		r.shape = shapeObject
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return r, fmt.Errorf("bad JSON: input: want an object keyed by feature name: %w", err)
		}
		return appendCellObjects(r, []map[string]json.RawMessage{obj}, features)
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return r, fmt.Errorf("bad JSON: input: %w", err)
		}
		if len(elems) == 0 {
			return r, errors.New("no instances: input is empty")
		}
		switch bytes.TrimSpace(elems[0])[0] {
		case '[':
			r.shape = shapeRows
			var rows [][]json.RawMessage
			if err := json.Unmarshal(raw, &rows); err != nil {
				return r, fmt.Errorf("bad JSON: input: want an array of rows: %w", err)
			}
			return appendCellArrays(r, rows, features)
		case '{':
			r.shape = shapeObjects
			var objs []map[string]json.RawMessage
			if err := json.Unmarshal(raw, &objs); err != nil {
				return r, fmt.Errorf("bad JSON: input: want an array of objects keyed by feature name: %w", err)
			}
			return appendCellObjects(r, objs, features)
		default:
			r.shape = shapeRow
			return appendCellArrays(r, [][]json.RawMessage{elems}, features)
		}
	}
	return r, errors.New("input: want an array of values, an array of rows, or an object keyed by feature name")
}

// cellValue reads one feature of a v2 request: a JSON number; a string,
// read as a CSV cell is (model.ParseCell: a number when it reads as one,
// empty when blank, else text); or null, a missing value. v is NaN unless
// the value is a number.
func cellValue(raw json.RawMessage) (v float64, text string, err error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0:
		return 0, "", errors.New("no value")
	case string(raw) == "null":
		return math.NaN(), "", nil
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, "", err
		}
		return model.ParseCell(s)
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return 0, "", fmt.Errorf("number %s out of range", raw)
		}
		return v, "", nil
	}
	return 0, "", fmt.Errorf("want a number, a string or null, got %.20s", raw)
}

func (r request) appendCell(raw json.RawMessage) (request, error) {
	v, t, err := cellValue(raw)
	if err != nil {
		return r, err
	}
	r.x = append(r.x, v)
	r.text = append(r.text, t)
	return r, nil
}

// appendCellArrays checks rows of values in feature order.
func appendCellArrays(r request, rows [][]json.RawMessage, features []string) (request, error) {
	if len(rows) == 0 {
		return r, errors.New("no instances")
	}
	p := len(features)
	for i, row := range rows {
		if len(row) != p {
			return r, fmt.Errorf("%s: got %d features, want %d", instanceName(r, i), len(row), p)
		}
		for j, raw := range row {
			var err error
			if r, err = r.appendCell(raw); err != nil {
				return r, fmt.Errorf("%s: feature %d (%s): %w", instanceName(r, i), j, features[j], err)
			}
		}
		r.rows++
	}
	return r, nil
}

// appendCellObjects checks rows keyed by feature name: every feature
// present (null for a missing value), no other key.
func appendCellObjects(r request, objs []map[string]json.RawMessage, features []string) (request, error) {
	for i, obj := range objs {
		if obj == nil {
			return r, fmt.Errorf("%s: null, want an object keyed by feature name", instanceName(r, i))
		}
		if err := unknownFeature(r, i, obj, features); err != nil {
			return r, err
		}
		for _, f := range features {
			raw, ok := obj[f]
			if !ok {
				return r, fmt.Errorf("%s: missing feature %q (null for a missing value)", instanceName(r, i), f)
			}
			var err error
			if r, err = r.appendCell(raw); err != nil {
				return r, fmt.Errorf("%s: feature %q: %w", instanceName(r, i), f, err)
			}
		}
		r.rows++
	}
	return r, nil
}
