package serve_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/serve"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/train"
)

// housesServed trains the built-in model on houses.csv (a text column,
// a column of numbers and text, empty cells; test fraction 0.2, seed 42),
// writes it where an image would hold it, loads it as `modelci serve`
// does and serves it over HTTP. It returns the loaded model, the test
// split and the server's URL.
func housesServed(t *testing.T) (*model.Linear, *data.Dataset, string) {
	t.Helper()
	d, err := data.Load(context.Background(), filepath.Join("..", "stages", "data", "testdata", "houses.csv"), "price")
	if err != nil {
		t.Fatal(err)
	}
	trainSet, testSet, err := data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	res, err := train.Builtin(context.Background(), trainSet, train.DefaultParams(), 42)
	if err != nil {
		t.Fatal(err)
	}
	res.Model.Name, res.Model.Version = "houses", "1.0.0"
	dir := filepath.Join(t.TempDir(), "model")
	if err := train.WriteModel(dir, res.Model); err != nil {
		t.Fatal(err)
	}
	m, err := serve.LoadModel(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Schema != model.SchemaV2 {
		t.Fatalf("schema %q", m.Schema)
	}
	_, url := start(t, m)
	return m, testSet, url
}

// cells is row i of d as a request carries it: numbers as JSON numbers,
// text as strings, empty cells as null. With asText, every cell is a
// string, as a CSV would spell it ("" for empty).
func cells(d *data.Dataset, i int, asText bool) []any {
	var row []any
	for j := range d.Features {
		kind, v, text := d.Cell(i, j)
		switch {
		case kind == data.Number && asText:
			row = append(row, model.CategoryKey(v))
		case kind == data.Number:
			row = append(row, v)
		case kind == data.Text:
			row = append(row, text)
		case asText:
			row = append(row, "")
		default:
			row = append(row, nil)
		}
	}
	return row
}

func cellObject(d *data.Dataset, i int, asText bool) map[string]any {
	o := map[string]any{}
	for j, v := range cells(d, i, asText) {
		o[d.Features[j]] = v
	}
	return o
}

// TestCellsPredict: /predict over HTTP equals the in-process model, bit
// for bit, on every test row, in every request shape, with categories as
// strings, missing values as null or "", numbers as numbers or strings.
func TestCellsPredict(t *testing.T) {
	m, test, url := housesServed(t)
	var want []float64
	var text []string
	nullsOrEmpty := 0
	for i := range test.Rows() {
		text = test.RowText(text, i)
		y, err := m.PredictRow(test.Row(i), text)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, y)
		for j := range test.Features {
			if k, _, _ := test.Cell(i, j); k == data.Empty {
				nullsOrEmpty++
			}
		}
	}
	if nullsOrEmpty < 3 {
		t.Fatalf("only %d empty cells in the test rows", nullsOrEmpty)
	}
	for _, asText := range []bool{false, true} {
		var rows []any
		var objs []any
		for i := range test.Rows() {
			rows = append(rows, cells(test, i, asText))
			objs = append(objs, cellObject(test, i, asText))
		}
		for _, tc := range []struct {
			name, body, field string
		}{
			{"instances", mustJSON(t, map[string]any{"instances": rows}), "predictions"},
			{"input rows", mustJSON(t, map[string]any{"input": rows}), "prediction"},
			{"input objects", mustJSON(t, map[string]any{"input": objs}), "prediction"},
		} {
			r := post(t, url+"/predict", tc.body)
			if r.code != http.StatusOK {
				t.Fatalf("%s (text %v): code %d, body %s", tc.name, asText, r.code, r.raw)
			}
			checkField(t, r, tc.field, want)
		}
		for i := range test.Rows() {
			for _, body := range []string{
				mustJSON(t, map[string]any{"input": cells(test, i, asText)}),
				mustJSON(t, map[string]any{"input": cellObject(test, i, asText)}),
			} {
				r := post(t, url+"/predict", body)
				if r.code != http.StatusOK {
					t.Fatalf("%s: code %d, body %s", body, r.code, r.raw)
				}
				checkField(t, r, "prediction", want[i])
			}
		}
	}
}

// TestCellsProcessData: /process_data answers the model's input rows after
// imputation, one-hot encoding and standardisation, as model.Process
// gives them; objects nest a category feature's inputs by category.
func TestCellsProcessData(t *testing.T) {
	m, test, url := housesServed(t)
	var rows, objs []any
	var want [][]float64
	var wantObjs []map[string]any
	var text []string
	for i := range test.Rows() {
		rows = append(rows, cells(test, i, false))
		objs = append(objs, cellObject(test, i, false))
		text = test.RowText(text, i)
		z, err := m.Process(nil, test.Row(i), text)
		if err != nil {
			t.Fatal(err)
		}
		if len(z) != m.NumInputs() {
			t.Fatalf("%d inputs", len(z))
		}
		want = append(want, z)
		o := map[string]any{}
		k := 0
		for j, f := range m.Features {
			if c := m.Columns[j]; c.Kind == model.KindCategory {
				byCat := map[string]float64{}
				for _, cat := range c.Categories {
					byCat[cat] = z[k]
					k++
				}
				o[f] = byCat
				continue
			}
			o[f] = z[k]
			k++
		}
		wantObjs = append(wantObjs, o)
	}
	r := post(t, url+"/process_data", mustJSON(t, map[string]any{"instances": rows}))
	if r.code != http.StatusOK {
		t.Fatalf("code %d, body %s", r.code, r.raw)
	}
	checkField(t, r, "processed_data", want)

	r = post(t, url+"/process_data", mustJSON(t, map[string]any{"input": objs}))
	if r.code != http.StatusOK {
		t.Fatalf("code %d, body %s", r.code, r.raw)
	}
	var got []map[string]any
	if err := json.Unmarshal(r.body["processed_data"], &got); err != nil {
		t.Fatal(err)
	}
	if g, w := mustJSON(t, got), mustJSON(t, wantObjs); g != w {
		t.Errorf("processed objects\n%s\nwant\n%s", g, w)
	}
	// Keys in the model's order: features, then categories.
	if !strings.HasPrefix(r.raw, `{"processed_data":[{"sqft":`) || !strings.Contains(r.raw, `"region":{"":`) ||
		strings.Index(r.raw, `"north, hills"`) > strings.Index(r.raw, `"south"`) {
		t.Errorf("body %.300s: want keys in the model's order", r.raw)
	}
	// /predict is /process_data and the weights.
	for i, z := range want {
		y := m.Bias
		for k := range z {
			y += m.Weights[k] * z[k]
		}
		r := post(t, url+"/predict", mustJSON(t, map[string]any{"input": rows[i]}))
		var got float64
		if err := json.Unmarshal(r.body["prediction"], &got); err != nil || got != y {
			t.Errorf("row %d: /predict %v (%v), bias + w·z %v", i, got, err, y)
		}
	}
	// A single row answers a single row.
	r = post(t, url+"/process_data", mustJSON(t, map[string]any{"input": rows[0]}))
	checkField(t, r, "processed_data", want[0])
}

func TestCellsBadRequests(t *testing.T) {
	m, test, url := housesServed(t)
	row := func(edit func(o map[string]any)) string {
		o := cellObject(test, 0, false)
		edit(o)
		return mustJSON(t, map[string]any{"input": o})
	}
	rowArr := func(j int, v any) string {
		r := cells(test, 1, false)
		r[j] = v
		return mustJSON(t, map[string]any{"instances": []any{cells(test, 0, false), r}})
	}
	// rooms (input 8) at the largest float of its weight's sign: the
	// prediction overflows.
	if m.InputName(8) != "rooms" || math.Abs(m.Weights[8]/m.Scale[8]) < 1.5 {
		t.Fatalf("input 8 is %s with weight %v and scale %v", m.InputName(8), m.Weights[8], m.Scale[8])
	}
	huge := math.Copysign(math.MaxFloat64, m.Weights[8])
	if m.Columns[4].Categories[0] == "" {
		t.Fatal("zone has an empty category: the null case below needs one without")
	}
	for _, tc := range []struct {
		name, route, body, want string
	}{
		{"unseen category", "/predict", row(func(o map[string]any) { o["region"] = "mars" }),
			`input: feature "region": category "mars" not seen in training (the model's categories are "", "east", "north", "north, hills", "south", "west")`},
		{"unseen category, array", "/process_data", rowArr(1, "mars"), `instance 1: feature "region": category "mars" not seen in training`},
		{"unseen number category", "/predict", rowArr(4, 7), `instance 1: feature "zone": category "7" not seen in training`},
		{"missing category never seen missing", "/predict", rowArr(4, nil), `instance 1: feature "zone": category "" not seen in training`},
		{"text for a number", "/predict", row(func(o map[string]any) { o["sqft"] = "big" }), `input: feature "sqft": "big": not a number`},
		{"NaN as a string", "/predict", rowArr(0, "NaN"), `instance 1: feature 0 (sqft): "NaN": not a finite number`},
		{"a boolean", "/predict", rowArr(2, true), `instance 1: feature 2 (age): want a number, a string or null, got true`},
		{"an object", "/process_data", rowArr(3, map[string]any{}), `feature 3 (rooms): want a number, a string or null`},
		{"missing key", "/predict", row(func(o map[string]any) { delete(o, "age") }), `input: missing feature "age" (null for a missing value)`},
		{"unknown key", "/predict", row(func(o map[string]any) { o["garden"] = 1 }), `input: unknown feature "garden"`},
		{"short row", "/predict", `{"input": [1, "north"]}`, "input: got 2 features, want 5"},
		{"number out of range", "/predict", `{"instances": [[1e400, "north", 1, 1, 1]]}`, "number 1e400 out of range"},
		{"prediction overflows", "/predict", rowArr(3, huge), "instance 1: prediction is"},
		{"both keys", "/predict", `{"instances": [], "input": []}`, "not both"},
		{"no rows", "/predict", `{"instances": []}`, "no instances"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, url+tc.route, tc.body)
			if r.code != http.StatusBadRequest {
				t.Fatalf("code %d, want 400; body %s", r.code, r.raw)
			}
			var msg string
			if err := json.Unmarshal(r.body["error"], &msg); err != nil || !strings.Contains(msg, tc.want) {
				t.Errorf("error %s, want it to contain %q", r.body["error"], tc.want)
			}
		})
	}
	// Blank strings and null are the same missing value; spaces around a
	// value do not count, as in a CSV.
	a := post(t, url+"/predict", rowArr(0, nil))
	b := post(t, url+"/predict", rowArr(0, "  "))
	o := cellObject(test, 1, false)
	d := post(t, url+"/predict", mustJSON(t, map[string]any{"input": o}))
	o["region"] = " " + o["region"].(string) + "\t"
	c := post(t, url+"/predict", mustJSON(t, map[string]any{"input": o}))
	if a.code != 200 || a.raw != b.raw || c.code != 200 || c.raw != d.raw {
		t.Errorf("null %s, blank %s; padded %s, plain %s", a.raw, b.raw, c.raw, d.raw)
	}
}

// TestCellsProtocols: a linear/v2 model's rows of strings and nulls go
// through MLflow's records and split payloads, KServe V1 instances
// (arrays and objects) and V2 BYTES tensors, and answer what /predict
// answers, bit for bit; an unseen category is a 400 naming the feature
// and the value on each.
func TestCellsProtocols(t *testing.T) {
	m, test, url := housesServed(t)
	var want []float64
	var text []string
	for i := range test.Rows() {
		text = test.RowText(text, i)
		y, err := m.PredictRow(test.Row(i), text)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, y)
	}
	n := test.Rows()
	var rows, rowsText, objs []any
	for i := range n {
		rows = append(rows, cells(test, i, false))
		rowsText = append(rowsText, cells(test, i, true))
		objs = append(objs, cellObject(test, i, false))
	}
	if !strings.Contains(mustJSON(t, rows), "null") {
		t.Fatal("no null among the rows")
	}
	predictionsOf := func(name, path, body string) {
		t.Helper()
		r := post(t, url+path, body)
		if r.code != http.StatusOK {
			t.Fatalf("%s: code %d, body %s", name, r.code, r.raw)
		}
		checkField(t, r, "predictions", want)
	}
	predictionsOf("/predict", "/predict", mustJSON(t, map[string]any{"instances": rows}))
	predictionsOf("MLflow records", "/invocations", mustJSON(t, map[string]any{"dataframe_records": objs}))
	predictionsOf("MLflow split", "/invocations", mustJSON(t, map[string]any{"dataframe_split": map[string]any{"columns": test.Features, "data": rows}}))
	predictionsOf("MLflow split of text", "/invocations", mustJSON(t, map[string]any{"dataframe_split": map[string]any{"columns": test.Features, "data": rowsText}}))
	predictionsOf("MLflow instances", "/invocations", mustJSON(t, map[string]any{"instances": rows}))
	predictionsOf("V1 arrays", "/v1/models/houses:predict", mustJSON(t, map[string]any{"instances": rows}))
	predictionsOf("V1 arrays of text", "/v1/models/houses:predict", mustJSON(t, map[string]any{"instances": rowsText}))
	predictionsOf("V1 objects", "/v1/models/houses:predict", mustJSON(t, map[string]any{"instances": objs}))

	// V2: one BYTES tensor [n, features] of CSV cells; and one tensor per
	// feature, numbers as FP64 where the column has no missing value.
	var flat []string
	for _, r := range rowsText {
		for _, c := range r.([]any) {
			flat = append(flat, c.(string))
		}
	}
	v2 := func(body any) []float64 {
		t.Helper()
		r := post(t, url+"/v2/models/houses/infer", mustJSON(t, body))
		var v v2Resp
		if err := json.Unmarshal([]byte(r.raw), &v); err != nil || r.code != 200 || len(v.Outputs) != 1 || v.Outputs[0].Datatype != "FP64" {
			t.Fatalf("%d %s", r.code, r.raw)
		}
		var got []float64
		json.Unmarshal(v.Outputs[0].Data, &got)
		return got
	}
	if got := v2(map[string]any{"inputs": []any{map[string]any{"name": "input", "shape": []int{n, len(test.Features)}, "datatype": "BYTES", "data": flat}}}); !slices.Equal(got, want) {
		t.Errorf("V2 BYTES: %v, want %v", got, want)
	}
	var perFeature []any
	for j, f := range test.Features {
		var col []string
		for _, r := range rowsText {
			col = append(col, r.([]any)[j].(string))
		}
		perFeature = append(perFeature, map[string]any{"name": f, "shape": []int{n}, "datatype": "BYTES", "data": col})
	}
	if got := v2(map[string]any{"inputs": perFeature}); !slices.Equal(got, want) {
		t.Errorf("V2 per feature: %v, want %v", got, want)
	}

	// The metadata says which features are categories, and their categories.
	r := do(t, "GET", url+"/v2/models/houses", "", nil)
	var md struct {
		Inputs   []struct{ Name, Datatype string }
		Features []struct {
			Name, Type, Datatype string
			Categories           []string
		}
	}
	if err := json.Unmarshal([]byte(r.raw), &md); err != nil || len(md.Features) != len(m.Features) || md.Inputs[0].Datatype != "BYTES" {
		t.Fatalf("metadata %s (%v)", r.raw, err)
	}
	for j, f := range md.Features {
		c := m.Columns[j]
		wantType, wantDT := "number", "FP64"
		if c.Kind == model.KindCategory {
			wantType, wantDT = "category", "BYTES"
		}
		if f.Name != m.Features[j] || f.Type != wantType || f.Datatype != wantDT || !slices.Equal(f.Categories, c.Categories) {
			t.Errorf("feature %d: %+v, want %s %s %s %q", j, f, m.Features[j], wantType, wantDT, c.Categories)
		}
	}

	unseen := cellObject(test, 0, false)
	unseen["region"] = "mars"
	unseenRow := cells(test, 0, false)
	unseenRow[1] = "mars"
	for _, tc := range []struct{ path, body string }{
		{"/invocations", mustJSON(t, map[string]any{"dataframe_records": []any{objs[1], unseen}})},
		{"/invocations", mustJSON(t, map[string]any{"dataframe_split": map[string]any{"columns": test.Features, "data": []any{rows[1], unseenRow}}})},
		{"/v1/models/houses:predict", mustJSON(t, map[string]any{"instances": []any{rows[1], unseenRow}})},
	} {
		r := post(t, url+tc.path, tc.body)
		var msg string
		if r.code != 400 || json.Unmarshal(r.body["error"], &msg) != nil ||
			!strings.Contains(msg, `instance 1: feature "region": category "mars" not seen in training`) {
			t.Errorf("%s: %d %s", tc.path, r.code, r.raw)
		}
	}
}
