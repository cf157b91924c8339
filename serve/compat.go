package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/valyala/fasthttp"
)

// KServe V1 and MLflow scoring requests carry rows of cells: numbers,
// strings (read as CSV cells: a number when they read as one, "" missing,
// else a category) and null (missing), as /predict takes them for a
// linear/v2 model, whatever the model. Every route answers
// {"predictions": […]}, the numbers /predict answers for the same rows.

// handleV1Predict serves KServe V1's POST /v1/models/{name}:predict:
// {"instances": [row, …]}, a row being an array of cells in the model's
// feature order or an object of cells keyed by feature name.
func (s *Server) handleV1Predict(ctx *fasthttp.RequestCtx, t target) int {
	var code int
	if !s.checkModelRequest(ctx, &code) {
		return code
	}
	if code, ok := s.checkTarget(ctx, t); !ok {
		return code
	}
	return s.predictCells(ctx, decodeV1)
}

// handleInvocations serves MLflow's POST /invocations.
func (s *Server) handleInvocations(ctx *fasthttp.RequestCtx) int {
	var code int
	if !s.checkModelRequest(ctx, &code) {
		return code
	}
	return s.predictCells(ctx, decodeMLflow)
}

// cellsDecoder decodes a body into rows of cells for a model's features.
type cellsDecoder func(b []byte, features []string, x []float64, text []string) (request, error)

// predictCells decodes, predicts and answers {"predictions": […]}. A body
// of rows of numbers in the model's order, {"instances": [[…], …]}, takes
// /predict's allocation-free path.
func (s *Server) predictCells(ctx *fasthttp.RequestCtx, decode cellsDecoder) int {
	buf := bufPool.Get().(*buffers)
	defer putBuffers(buf)
	body := ctx.PostBody()
	features := s.v2.sig.features
	req, ok := decodeFast(body, len(features), buf.x[:0])
	if !ok || req.shape != shapeInstances {
		var err error
		req, err = decode(body, features, buf.x[:0], buf.text[:0])
		if cap(req.text) > cap(buf.text) {
			buf.text = req.text
		}
		if err != nil {
			return s.writeError(ctx, http.StatusBadRequest, err.Error())
		}
	}
	if cap(req.x) > cap(buf.x) {
		buf.x = req.x
	}
	if code, msg := s.predictRows(req, buf); code != http.StatusOK {
		return s.writeError(ctx, code, msg)
	}
	req.shape = shapeInstances
	buf.out = encodePredictions(buf.out[:0], req, buf.y)
	s.metrics.predicted(buf.y[:req.rows])
	return writeOK(ctx, buf.out)
}

// decodeV1 decodes {"instances": [row, …]}.
func decodeV1(b []byte, features []string, x []float64, text []string) (request, error) {
	r := request{x: x, text: text, shape: shapeInstances}
	var body struct {
		Instances json.RawMessage `json:"instances"`
	}
	if err := strictUnmarshal(b, &body); err != nil {
		return r, fmt.Errorf("bad JSON: %w", err)
	}
	if isNull(body.Instances) {
		return r, errors.New(`want {"instances": [row, …]}`)
	}
	return decodeRowList(r, body.Instances, "instances", features)
}

// decodeRowList decodes a JSON array of rows: arrays of cells in feature
// order, or objects keyed by feature name (or, for a model of one
// feature, bare cells), all rows alike.
func decodeRowList(r request, raw json.RawMessage, what string, features []string) (request, error) {
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return r, fmt.Errorf("bad JSON: %s: want an array of rows: %w", what, err)
	}
	if len(elems) == 0 {
		return r, errors.New("no instances: " + what + " is empty")
	}
	kind := bytes.TrimSpace(elems[0])[0]
	if kind != '[' && kind != '{' && len(features) != 1 {
		return r, fmt.Errorf("%s: instance 0: want an array of the %d features or an object keyed by feature name, got %.20s", what, len(features), elems[0])
	}
	var rows [][]json.RawMessage
	var objs []map[string]json.RawMessage
	for i, e := range elems {
		e = bytes.TrimSpace(e)
		if (e[0] == '[' || e[0] == '{' || kind == '[' || kind == '{') && e[0] != kind {
			return r, fmt.Errorf("%s: instance %d: %.20s, but instance 0 is %.20s: give every row alike", what, i, e, elems[0])
		}
		switch kind {
		case '[':
			var row []json.RawMessage
			if err := json.Unmarshal(e, &row); err != nil {
				return r, fmt.Errorf("bad JSON: %s: instance %d: %w", what, i, err)
			}
			rows = append(rows, row)
		case '{':
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(e, &obj); err != nil {
				return r, fmt.Errorf("bad JSON: %s: instance %d: %w", what, i, err)
			}
			objs = append(objs, obj)
		default:
			rows = append(rows, []json.RawMessage{e})
		}
	}
	if kind == '{' {
		return appendCellObjects(r, objs, features)
	}
	return appendCellArrays(r, rows, features)
}

// decodeMLflow decodes MLflow's scoring payloads (MLflow 2):
//
//	{"dataframe_split": {"columns": [names], "data": [[cells], …]}}  ("index" ignored; without "columns", cells in feature order)
//	{"dataframe_records": [{name: cell, …}, …]}
//	{"instances": [row, …]}
//	{"inputs": [row, …]} or {"inputs": {name: [cells], …}}
//
// with an optional "params", which must be empty: the model takes none.
func decodeMLflow(b []byte, features []string, x []float64, text []string) (request, error) {
	r := request{x: x, text: text, shape: shapeInstances}
	var body struct {
		Split     json.RawMessage `json:"dataframe_split"`
		Records   json.RawMessage `json:"dataframe_records"`
		Instances json.RawMessage `json:"instances"`
		Inputs    json.RawMessage `json:"inputs"`
		Params    json.RawMessage `json:"params"`
	}
	if err := strictUnmarshal(b, &body); err != nil {
		return r, fmt.Errorf("bad JSON: %w", err)
	}
	if p := bytes.TrimSpace(body.Params); !isNull(p) && string(p) != "{}" {
		return r, errors.New("params: the model takes no parameters")
	}
	var given []string
	for name, raw := range map[string]json.RawMessage{"dataframe_split": body.Split, "dataframe_records": body.Records, "instances": body.Instances, "inputs": body.Inputs} {
		if !isNull(raw) {
			given = append(given, name)
		}
	}
	slices.Sort(given)
	switch {
	case len(given) == 0:
		return r, errors.New(`want one of "dataframe_split", "dataframe_records", "instances" or "inputs"`)
	case len(given) > 1:
		return r, fmt.Errorf("give one of %q, not several", given)
	}
	switch given[0] {
	case "dataframe_split":
		return decodeSplit(r, body.Split, features)
	case "dataframe_records":
		return decodeRowList(r, body.Records, "dataframe_records", features)
	case "instances":
		return decodeRowList(r, body.Instances, "instances", features)
	}
	if raw := bytes.TrimSpace(body.Inputs); raw[0] == '{' {
		return decodeColumns(r, raw, features)
	}
	return decodeRowList(r, body.Inputs, "inputs", features)
}

// decodeSplit decodes pandas' "split" orientation: columns and rows.
func decodeSplit(r request, raw json.RawMessage, features []string) (request, error) {
	var split struct {
		Columns []string            `json:"columns"`
		Data    [][]json.RawMessage `json:"data"`
		Index   json.RawMessage     `json:"index"`
	}
	if err := strictUnmarshal(raw, &split); err != nil {
		return r, fmt.Errorf("bad JSON: dataframe_split: %w", err)
	}
	if len(split.Data) == 0 {
		return r, errors.New("no instances: dataframe_split has no data")
	}
	if split.Columns == nil {
		return appendCellArrays(r, split.Data, features)
	}
	objs := make([]map[string]json.RawMessage, len(split.Data))
	for i, row := range split.Data {
		if len(row) != len(split.Columns) {
			return r, fmt.Errorf("dataframe_split: row %d has %d values for %d columns", i, len(row), len(split.Columns))
		}
		objs[i] = make(map[string]json.RawMessage, len(row))
		for k, c := range split.Columns {
			if _, dup := objs[i][c]; dup {
				return r, fmt.Errorf("dataframe_split: column %q given twice", c)
			}
			objs[i][c] = row[k]
		}
	}
	return appendCellObjects(r, objs, features)
}

// decodeColumns decodes TensorFlow Serving's columnar "inputs": a column
// of cells per feature, all of one length.
func decodeColumns(r request, raw json.RawMessage, features []string) (request, error) {
	var cols map[string][]json.RawMessage
	if err := json.Unmarshal(raw, &cols); err != nil {
		return r, fmt.Errorf("bad JSON: inputs: want an object of columns: %w", err)
	}
	n := -1
	for _, f := range features {
		col, ok := cols[f]
		switch {
		case !ok:
			break
		case n < 0:
			n = len(col)
		case len(col) != n:
			return r, fmt.Errorf("inputs: column %q has %d values, others %d", f, len(col), n)
		}
	}
	if n == 0 {
		return r, errors.New("no instances: inputs' columns are empty")
	}
	objs := make([]map[string]json.RawMessage, max(n, 1))
	for i := range objs {
		objs[i] = make(map[string]json.RawMessage, len(cols))
		for name, col := range cols {
			if i < len(col) {
				objs[i][name] = col[i]
			} else {
				objs[i][name] = nil
			}
		}
	}
	return appendCellObjects(r, objs, features)
}
