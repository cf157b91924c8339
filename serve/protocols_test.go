package serve_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/serve"
)

// v2Resp is an inference response, every field the protocol defines.
type v2Resp struct {
	ModelName    string  `json:"model_name"`
	ModelVersion string  `json:"model_version"`
	ID           *string `json:"id"`
	Outputs      []struct {
		Name     string          `json:"name"`
		Shape    []int           `json:"shape"`
		Datatype string          `json:"datatype"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

// decodeV2Resp decodes an inference response strictly and checks the
// protocol's fields: the model, the id echoed, one output of shape [n]
// with n values of datatype, named name. It returns the values.
func decodeV2Resp(t *testing.T, r response, id *string, name, datatype string, n int) []float64 {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("code %d, body %s", r.code, r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var v v2Resp
	dec := json.NewDecoder(strings.NewReader(r.raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("response %s: %v", r.raw, err)
	}
	wantKeys := []string{"model_name", "model_version", "outputs"}
	if id != nil {
		wantKeys = append(wantKeys, "id")
	}
	if keys := slices.Sorted(maps.Keys(r.body)); !slices.Equal(keys, slices.Sorted(slices.Values(wantKeys))) {
		t.Errorf("response keys %q, want %q", keys, wantKeys)
	}
	switch {
	case v.ModelName != "diabetes" && v.ModelName != "mlp" && v.ModelName != "houses":
		t.Errorf("model_name %q", v.ModelName)
	case v.ModelVersion != "1.2.3" && v.ModelVersion != "1.0.0":
		t.Errorf("model_version %q", v.ModelVersion)
	case (id == nil) != (v.ID == nil) || id != nil && *id != *v.ID:
		t.Errorf("id %v, want %v", v.ID, id)
	case len(v.Outputs) != 1:
		t.Fatalf("%d outputs, want 1", len(v.Outputs))
	}
	o := v.Outputs[0]
	if o.Name != name || o.Datatype != datatype || !slices.Equal(o.Shape, []int{n}) {
		t.Errorf("output %q %s %v, want %q %s [%d]", o.Name, o.Datatype, o.Shape, name, datatype, n)
	}
	var data []float64
	if err := json.Unmarshal(o.Data, &data); err != nil || len(data) != n {
		t.Fatalf("data %s (%v): want %d numbers", o.Data, err, n)
	}
	return data
}

func ptr(s string) *string { return &s }

func v2Input(name string, shape []int, datatype string, data any) map[string]any {
	return map[string]any{"name": name, "shape": shape, "datatype": datatype, "data": data}
}

func flatten(rows [][]float64) []float64 {
	var x []float64
	for _, r := range rows {
		x = append(x, r...)
	}
	return x
}

func column(rows [][]float64, j int) []float64 {
	var c []float64
	for _, r := range rows {
		c = append(c, r[j])
	}
	return c
}

// TestV2Health: the health and metadata routes, their status codes and
// bodies, in every state.
func TestV2Health(t *testing.T) {
	s, err := serve.Open("testdata", serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	url := serveHTTP(t, s)
	_, noModel := start(t, nil)
	for _, tc := range []struct {
		method, url string
		code        int
		body        string // exact, "" to skip
		allow       string
	}{
		{"GET", url + "/v2/health/live", 200, `{"live":true}` + "\n", ""},
		{"GET", url + "/v2/health/ready", 200, `{"ready":true}` + "\n", ""},
		{"HEAD", url + "/v2/health/ready", 200, "", ""},
		{"GET", noModel + "/v2/health/live", 200, `{"live":true}` + "\n", ""},
		{"GET", noModel + "/v2/health/ready", 503, `{"ready":false}` + "\n", ""},
		{"POST", url + "/v2/health/ready", 405, `{"error":"method POST not allowed"}` + "\n", "GET, HEAD"},
		{"GET", url + "/v2/models/diabetes/ready", 200, `{"name":"diabetes","ready":true}` + "\n", ""},
		{"GET", url + "/v2/models/diabetes/versions/1.2.3/ready", 200, `{"name":"diabetes","ready":true}` + "\n", ""},
		{"GET", url + "/v2/models/diabetes/versions/1.2.4/ready", 404, `{"error":"model \"diabetes\" has no version \"1.2.4\"; it is version \"1.2.3\""}` + "\n", ""},
		{"GET", url + "/v2/models/houses/ready", 404, `{"error":"no model \"houses\"; this server serves \"diabetes\""}` + "\n", ""},
		{"GET", noModel + "/v2/models/diabetes/ready", 503, `{"error":"model not loaded"}` + "\n", ""},
		{"GET", url + "/v1/models/diabetes", 200, `{"name":"diabetes","ready":true}` + "\n", ""},
		{"GET", url + "/v1/models/houses", 404, `{"error":"no model \"houses\"; this server serves \"diabetes\""}` + "\n", ""},
		{"GET", url + "/ping", 200, `{"status":"ok"}` + "\n", ""},
		{"GET", noModel + "/ping", 503, `{"error":"not ready"}` + "\n", ""},
		{"PUT", url + "/ping", 405, "", "GET, HEAD"},
		{"GET", url + "/v2/models/diabetes/infer", 405, `{"error":"method GET not allowed"}` + "\n", "POST"},
		{"GET", url + "/v1/models/diabetes:predict", 405, "", "POST"},
		{"GET", url + "/invocations", 405, "", "POST"},
		{"GET", url + "/v2/models/diabetes/versions/1.2.3/extra", 404, "", ""},
		{"GET", url + "/v2/models/", 404, `{"error":"no route for /v2/models/"}` + "\n", ""},
		{"GET", url + "/v3", 404, "", ""},
	} {
		r := do(t, tc.method, tc.url, "", nil)
		if r.code != tc.code || tc.body != "" && r.raw != tc.body || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d %q (Allow %q), want %d %q (Allow %q)", tc.method, tc.url, r.code, r.raw, r.header.Get("Allow"), tc.code, tc.body, tc.allow)
		}
	}

	var server struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}
	r := do(t, "GET", url+"/v2", "", nil)
	if err := json.Unmarshal([]byte(r.raw), &server); err != nil || r.code != 200 || server.Name != "modelci" || server.Version == "" ||
		server.Extensions == nil || len(server.Extensions) != 0 || len(r.body) != 3 {
		t.Errorf("GET /v2: %d %s (%v)", r.code, r.raw, err)
	}

	// Model metadata, by name and by version.
	want := `{"name":"diabetes","versions":["1.2.3"],"platform":"modelci-linear",` +
		`"inputs":[{"name":"input","datatype":"FP64","shape":[-1,10]}],"outputs":[{"name":"prediction","datatype":"FP64","shape":[-1]}],` +
		`"version":"1.2.3","digest":"` + listingDigest(t, "testdata") + `","features":[`
	for j, f := range testModel(t).Features {
		if j > 0 {
			want += ","
		}
		want += `{"name":"` + f + `","type":"number","datatype":"FP64","shape":[-1]}`
	}
	want += "]}\n"
	for _, path := range []string{"/v2/models/diabetes", "/v2/models/diabetes/versions/1.2.3"} {
		if r := do(t, "GET", url+path, "", nil); r.code != 200 || r.raw != want {
			t.Errorf("GET %s: %d\n%s\nwant\n%s", path, r.code, r.raw, want)
		}
	}
	for _, path := range []string{"/v2/models/houses", "/v2/models/diabetes/versions/2"} {
		if r := do(t, "GET", url+path, "", nil); r.code != 404 {
			t.Errorf("GET %s: %d %s, want 404", path, r.code, r.raw)
		}
	}
}

// listingDigest computes the model digest as docs/serving.md defines it,
// independently: sha256 of sha256sum's listing of the directory's files.
func listingDigest(t *testing.T, dir string) string {
	t.Helper()
	var listing []string
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || !info.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		sum := sha256.Sum256(b)
		listing = append(listing, hex.EncodeToString(sum[:])+"  "+filepath.ToSlash(rel)+"\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(listing, func(a, b string) int { return strings.Compare(a[66:], b[66:]) })
	sum := sha256.Sum256([]byte(strings.Join(listing, "")))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// TestModelDigest: the digest is the documented shell pipeline's, for a
// directory with a subdirectory, and changes with any file.
func TestModelDigest(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join("testdata", model.FileName))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{model.FileName: b, "notes/README": []byte("trained on diabetes.csv\n"), "a.txt": []byte("a")} {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	digest := func() string {
		s, err := serve.Open(dir, serve.WithRegistry(prometheus.NewRegistry()))
		if err != nil {
			t.Fatal(err)
		}
		r := do(t, "GET", serveHTTP(t, s)+"/v2/models/diabetes", "", nil)
		var md struct{ Digest string }
		if err := json.Unmarshal([]byte(r.raw), &md); err != nil {
			t.Fatal(err)
		}
		return md.Digest
	}
	first := digest()
	if want := listingDigest(t, dir); first != want {
		t.Errorf("digest %s, want %s", first, want)
	}
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("bash", "-c", `cd "$1" && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum`, "bash", dir)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := "sha256:" + strings.Fields(string(out))[0]; got != first {
			t.Errorf("the documented pipeline gives %s, the server %s", got, first)
		}
	}
	os.WriteFile(filepath.Join(dir, "notes/README"), []byte("changed\n"), 0o644)
	if digest() == first {
		t.Error("the digest did not change with a file")
	}
}

// TestV2Infer: the inference route, field by field, for each layout and
// datatype the server takes; FP64 answers are /predict's, exactly.
func TestV2Infer(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	infer := url + "/v2/models/diabetes/infer"
	want := predictions(m, rows)
	n := len(rows)
	perFeature := func(datatype string, conv func(float64) any) []any {
		var ins []any
		for j := len(m.Features) - 1; j >= 0; j-- { // any order
			var col []any
			for _, v := range column(rows, j) {
				col = append(col, conv(v))
			}
			ins = append(ins, v2Input(m.Features[j], []int{n}, datatype, col))
		}
		return ins
	}
	id := func(v float64) any { return v }
	for _, tc := range []struct {
		name string
		body any
		id   *string
	}{
		{"flat", map[string]any{"id": "r1", "inputs": []any{v2Input("input", []int{n, 10}, "FP64", flatten(rows))}}, ptr("r1")},
		{"nested", map[string]any{"inputs": []any{v2Input("input", []int{n, 10}, "FP64", rows)}}, nil},
		{"per feature", map[string]any{"id": "", "inputs": perFeature("FP64", id)}, ptr("")},
		{"per feature [n, 1]", map[string]any{"inputs": []any{
			v2Input("age", []int{n, 1}, "FP64", column(rows, 0)), v2Input("sex", []int{n, 1}, "FP64", column(rows, 1)),
			v2Input("bmi", []int{n}, "FP64", column(rows, 2)), v2Input("bp", []int{n}, "FP64", column(rows, 3)),
			v2Input("s1", []int{n}, "FP64", column(rows, 4)), v2Input("s2", []int{n}, "FP64", column(rows, 5)),
			v2Input("s3", []int{n}, "FP64", column(rows, 6)), v2Input("s4", []int{n}, "FP64", column(rows, 7)),
			v2Input("s5", []int{n}, "FP64", column(rows, 8)), v2Input("s6", []int{n}, "FP64", column(rows, 9)),
		}}, nil},
		{"BYTES cells", map[string]any{"id": "b", "inputs": perFeature("BYTES", func(v float64) any { return model.CategoryKey(v) })}, ptr("b")},
		{"parameters and outputs", map[string]any{"id": "p\"q", "parameters": map[string]any{"binary_data_output": false},
			"inputs":  []any{v2Input("input", []int{n, 10}, "FP64", rows)},
			"outputs": []any{map[string]any{"name": "prediction", "parameters": map[string]any{}}}}, ptr("p\"q")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decodeV2Resp(t, post(t, infer, mustJSON(t, tc.body)), tc.id, "prediction", "FP64", n)
			if !slices.Equal(got, want) {
				t.Errorf("data %v, want /predict's %v", got, want)
			}
		})
	}

	// The versioned route is the same route.
	body := mustJSON(t, map[string]any{"inputs": []any{v2Input("input", []int{n, 10}, "FP64", rows)}})
	if got := decodeV2Resp(t, post(t, url+"/v2/models/diabetes/versions/1.2.3/infer", body), nil, "prediction", "FP64", n); !slices.Equal(got, want) {
		t.Errorf("versioned: %v, want %v", got, want)
	}
	// FP32 tensors hold float32 values: the rows are rounded first.
	var rows32 [][]float64
	for _, r := range rows {
		var r32 []float64
		for _, v := range r {
			r32 = append(r32, float64(float32(v)))
		}
		rows32 = append(rows32, r32)
	}
	body = mustJSON(t, map[string]any{"inputs": []any{v2Input("input", []int{n, 10}, "FP32", rows)}})
	if got := decodeV2Resp(t, post(t, infer, body), nil, "prediction", "FP64", n); !slices.Equal(got, predictions(m, rows32)) {
		t.Errorf("FP32: %v, want %v", got, predictions(m, rows32))
	}
	// INT64 tensors hold integers.
	ints := [][]float64{{59, 2, 32, 101, 157, 93, 38, 4, 5, 87}, {-48, 1, 21, 87, 183, 103, 70, 3, 4, 69}}
	body = mustJSON(t, map[string]any{"inputs": []any{v2Input("input", []int{2, 10}, "INT64", ints)}})
	if got := decodeV2Resp(t, post(t, infer, body), nil, "prediction", "FP64", 2); !slices.Equal(got, predictions(m, ints)) {
		t.Errorf("INT64: %v, want %v", got, predictions(m, ints))
	}
	// The exact bytes of one answer.
	r := post(t, infer, `{"id":"42","inputs":[{"name":"input","shape":[1,10],"datatype":"FP64","data":[59,2,32.1,101,157,93.2,38,4,4.8598,87]}]}`)
	wantRaw := `{"model_name":"diabetes","model_version":"1.2.3","id":"42","outputs":[{"name":"prediction","shape":[1],"datatype":"FP64","data":[` +
		mustJSON(t, m.Predict(rows[0])) + `]}]}` + "\n"
	if r.raw != wantRaw {
		t.Errorf("body %s\nwant %s", r.raw, wantRaw)
	}
}

// TestV2InferErrors: what the inference route refuses, with its status
// and message.
func TestV2InferErrors(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	infer := url + "/v2/models/diabetes/infer"
	row := mustJSON(t, rows[0])
	in := func(fields string) string { return `{"inputs":[{` + fields + `}]}` }
	ok := `"name":"input","shape":[1,10],"datatype":"FP64","data":` + row
	col := func(name string, n int, data string) string {
		return `{"name":"` + name + `","shape":[` + fmt.Sprint(n) + `],"datatype":"FP64","data":` + data + `}`
	}
	var nineCols []string
	for _, f := range m.Features[1:] {
		nineCols = append(nineCols, col(f, 1, "[1]"))
	}
	for _, tc := range []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"other model", "/v2/models/houses/infer", in(ok), 404, `no model "houses"; this server serves "diabetes"`},
		{"other version", "/v2/models/diabetes/versions/2/infer", in(ok), 404, `model "diabetes" has no version "2"; it is version "1.2.3"`},
		{"unsupported datatype", "", in(`"name":"input","shape":[1,10],"datatype":"UINT8","data":` + row), 400, `input "input": datatype "UINT8" is not supported: want FP64, FP32, INT64 or BYTES`},
		{"FP16", "", in(`"name":"input","shape":[1,10],"datatype":"FP16","data":` + row), 400, `datatype "FP16" is not supported`},
		{"BYTES of numbers", "", in(`"name":"input","shape":[1,10],"datatype":"BYTES","data":` + row), 400, `BYTES element 59: want a string`},
		{"shape too narrow", "", in(`"name":"input","shape":[2,5],"datatype":"FP64","data":` + row), 400, `input "input": shape [2, 5], want [rows, 10]`},
		{"shape and data disagree", "", in(`"name":"input","shape":[2,10],"datatype":"FP64","data":` + row), 400, `input "input": shape [2, 10] holds 20 values, data has 10`},
		{"nested wrong", "", in(`"name":"input","shape":[2,10],"datatype":"FP64","data":[` + row + `,[1,2]]`), 400, `want 10 values at the innermost level, got 2`},
		{"nested too deep", "", in(`"name":"input","shape":[1,10],"datatype":"FP64","data":[[` + row + `]]`), 400, `data nested 3 deep: want it flat, or nested as shape [1, 10]`},
		{"no rows", "", in(`"name":"input","shape":[0,10],"datatype":"FP64","data":[]`), 400, `input "input": shape [0, 10]: no rows`},
		{"null element", "", in(`"name":"input","shape":[1,10],"datatype":"FP64","data":[1,2,3,4,5,6,7,8,9,null]`), 400, `element 9 (row-major): FP64 element null: want a number`},
		{"INT64 fraction", "", in(`"name":"input","shape":[1,10],"datatype":"INT64","data":[1,2,3,4,5,6,7,8,9,1.5]`), 400, `INT64 element 1.5: not a 64-bit integer`},
		{"FP32 out of range", "", in(`"name":"input","shape":[1,10],"datatype":"FP32","data":[1,2,3,4,5,6,7,8,9,1e39]`), 400, `FP32 element 1e39 out of range`},
		{"FP64 out of range", "", in(`"name":"input","shape":[1,10],"datatype":"FP64","data":[1,2,3,4,5,6,7,8,9,1e400]`), 400, `FP64 element 1e400 out of range`},
		{"no name", "", in(`"shape":[1,10],"datatype":"FP64","data":` + row), 400, `input 0: no "name"`},
		{"no shape", "", in(`"name":"input","datatype":"FP64","data":` + row), 400, `input "input": no "shape"`},
		{"no datatype", "", in(`"name":"input","shape":[1,10],"data":` + row), 400, `input "input": no "datatype"`},
		{"no data", "", in(`"name":"input","shape":[1,10],"datatype":"FP64"`), 400, `input "input": no "data"`},
		{"negative dim", "", in(`"name":"input","shape":[-1,10],"datatype":"FP64","data":` + row), 400, `dimensions must be 0 or more`},
		{"unknown input field", "", in(ok + `,"contents":{}`), 400, `unknown field "contents"`},
		{"unknown field", "", `{"input":[{` + ok + `}]}`, 400, `unknown field "input"`},
		{"no inputs", "", `{"inputs":[]}`, 400, `no inputs`},
		{"empty body", "", ``, 400, `bad JSON: empty body`},
		{"bad JSON", "", `{"inputs":[`, 400, `bad JSON`},
		{"trailing data", "", in(ok) + `{}`, 400, `data after the top-level object`},
		{"id a number", "", `{"id":1,"inputs":[{` + ok + `}]}`, 400, `bad JSON`},
		{"parameters an array", "", `{"parameters":[],"inputs":[{` + ok + `}]}`, 400, `parameters: want an object`},
		{"unknown output", "", `{"outputs":[{"name":"y"}],"inputs":[{` + ok + `}]}`, 400, `unknown output "y": the model's output is "prediction"`},
		{"unknown input", "", `{"inputs":[` + col("glucose", 1, "[1]") + `]}`, 400, `unknown input "glucose": the model takes "input" of shape [-1, 10], or one input of shape [-1] per feature ("age", "sex", "bmi"`},
		{"missing feature", "", `{"inputs":[` + strings.Join(nineCols, ",") + `]}`, 400, `missing input "age": give one input per feature, or "input" of shape [-1, 10]`},
		{"feature twice", "", `{"inputs":[` + col("age", 1, "[1]") + "," + col("age", 1, "[2]") + `]}`, 400, `input "age" given twice`},
		{"features of other lengths", "", `{"inputs":[` + col("age", 2, "[1,2]") + "," + strings.Join(nineCols, ",") + `]}`, 400, `input "sex" has 1 rows, input "age" 2`},
		{"feature of two columns", "", `{"inputs":[{"name":"age","shape":[1,2],"datatype":"FP64","data":[1,2]}]}`, 400, `input "age": shape [1, 2], want [rows] for one feature`},
		{"prediction overflows", "", in(`"name":"input","shape":[1,10],"datatype":"FP64","data":[1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308]`), 400, `instance 0: prediction is`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = "/v2/models/diabetes/infer"
			}
			r := post(t, url+path, tc.body)
			var msg string
			if r.code != tc.code || json.Unmarshal(r.body["error"], &msg) != nil || !strings.Contains(msg, tc.want) || len(r.body) != 1 {
				t.Errorf("%d %s, want %d with an error containing %q", r.code, r.raw, tc.code, tc.want)
			}
		})
	}
	if r := do(t, "POST", infer, "text/plain", strings.NewReader(in(ok))); r.code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d %s, want 415", r.code, r.raw)
	}
}

// someRows are n rows near the diabetes model's means, rounded as people
// write them, plus the test rows (very small and large values included).
func someRows(m *model.Linear, n int) [][]float64 {
	rng := rand.New(rand.NewPCG(7, 8))
	out := slices.Clone(rows)
	for range n {
		var r []float64
		for j := range m.Features {
			v := m.Mean[j] + m.Scale[j]*rng.NormFloat64()
			r = append(r, math.Round(v*10000)/10000)
		}
		out = append(out, r)
	}
	return out
}

// TestProtocolsAgree: /predict, KServe V1, V2 (FP64, every layout) and
// MLflow (every payload) answer the same numbers for the same rows, to
// the bit, and the same JSON numbers.
func TestProtocolsAgree(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	rs := someRows(m, 40)
	n := len(rs)
	var objs []map[string]float64
	cols := map[string][]float64{}
	for _, r := range rs {
		objs = append(objs, object(m, r))
	}
	for j, f := range m.Features {
		cols[f] = column(rs, j)
	}
	want := predictions(m, rs)
	raws := map[string]json.RawMessage{}
	check := func(name string, raw json.RawMessage) {
		t.Helper()
		var got []float64
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("%s: %s: %v", name, raw, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v\nwant %v", name, got, want)
		}
		raws[name] = raw
	}
	field := func(name, path, body, key string) {
		t.Helper()
		r := post(t, url+path, body)
		if r.code != 200 || len(r.body) != 1 {
			t.Fatalf("%s: %d %s", name, r.code, r.raw)
		}
		check(name, r.body[key])
	}
	field("/predict instances", "/predict", mustJSON(t, map[string]any{"instances": rs}), "predictions")
	field("/predict input", "/predict", mustJSON(t, map[string]any{"input": objs}), "prediction")
	field("V1 arrays", "/v1/models/diabetes:predict", mustJSON(t, map[string]any{"instances": rs}), "predictions")
	field("V1 objects", "/v1/models/diabetes:predict", mustJSON(t, map[string]any{"instances": objs}), "predictions")
	field("MLflow dataframe_split", "/invocations", mustJSON(t, map[string]any{"dataframe_split": map[string]any{"columns": m.Features, "data": rs}}), "predictions")
	field("MLflow dataframe_records", "/invocations", mustJSON(t, map[string]any{"dataframe_records": objs}), "predictions")
	field("MLflow instances", "/invocations", mustJSON(t, map[string]any{"instances": rs}), "predictions")
	field("MLflow inputs rows", "/invocations", mustJSON(t, map[string]any{"inputs": rs}), "predictions")
	field("MLflow inputs columns", "/invocations", mustJSON(t, map[string]any{"inputs": cols}), "predictions")
	for _, layout := range []struct {
		name string
		body any
	}{
		{"V2 FP64 flat", map[string]any{"inputs": []any{v2Input("input", []int{n, 10}, "FP64", flatten(rs))}}},
		{"V2 FP64 nested", map[string]any{"inputs": []any{v2Input("input", []int{n, 10}, "FP64", rs)}}},
		{"V2 FP64 per feature", map[string]any{"inputs": func() []any {
			var ins []any
			for j, f := range m.Features {
				ins = append(ins, v2Input(f, []int{n}, "FP64", column(rs, j)))
			}
			return ins
		}()}},
	} {
		r := post(t, url+"/v2/models/diabetes/infer", mustJSON(t, layout.body))
		decodeV2Resp(t, r, nil, "prediction", "FP64", n)
		var v v2Resp
		json.Unmarshal([]byte(r.raw), &v)
		check(layout.name, v.Outputs[0].Data)
	}
	for name, raw := range raws {
		if !bytes.Equal(raw, raws["/predict instances"]) {
			t.Errorf("%s writes %s, /predict %s", name, raw, raws["/predict instances"])
		}
	}
}

// TestMLflow: the scoring route's payloads, its answers and refusals.
func TestMLflow(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	want := mustJSON(t, map[string]any{"predictions": predictions(m, rows[:2])}) + "\n"
	reordered := []string{"s6", "s5", "s4", "s3", "s2", "s1", "bp", "bmi", "sex", "age"}
	var split [][]float64
	for _, r := range rows[:2] {
		var out []float64
		for _, f := range reordered {
			out = append(out, r[slices.Index(m.Features, f)])
		}
		split = append(split, out)
	}
	for _, tc := range []struct{ name, body string }{
		{"dataframe_split, columns in another order", mustJSON(t, map[string]any{"dataframe_split": map[string]any{"columns": reordered, "data": split, "index": []int{0, 1}}})},
		{"dataframe_split without columns", mustJSON(t, map[string]any{"dataframe_split": map[string]any{"data": rows[:2]}})},
		{"dataframe_records", mustJSON(t, map[string]any{"dataframe_records": []any{object(m, rows[0]), object(m, rows[1])}})},
		{"instances", mustJSON(t, map[string]any{"instances": rows[:2]})},
		{"instances of objects", mustJSON(t, map[string]any{"instances": []any{object(m, rows[0]), object(m, rows[1])}})},
		{"inputs", mustJSON(t, map[string]any{"inputs": rows[:2]})},
		{"inputs by column", mustJSON(t, map[string]any{"inputs": map[string]any{"age": column(rows[:2], 0), "sex": column(rows[:2], 1),
			"bmi": column(rows[:2], 2), "bp": column(rows[:2], 3), "s1": column(rows[:2], 4), "s2": column(rows[:2], 5), "s3": column(rows[:2], 6),
			"s4": column(rows[:2], 7), "s5": column(rows[:2], 8), "s6": column(rows[:2], 9)}})},
		{"empty params", `{"params":{},"instances":` + mustJSON(t, rows[:2]) + `}`},
		{"numbers as strings", mustJSON(t, map[string]any{"dataframe_records": []any{stringObject(m, rows[0]), stringObject(m, rows[1])}})},
	} {
		r := post(t, url+"/invocations", tc.body)
		if r.code != 200 || r.raw != want {
			t.Errorf("%s: %d %s, want %s", tc.name, r.code, r.raw, want)
		}
	}
	row := mustJSON(t, rows[0])
	for _, tc := range []struct{ name, body, want string }{
		{"no payload", `{}`, `want one of "dataframe_split", "dataframe_records", "instances" or "inputs"`},
		{"two payloads", `{"instances":[` + row + `],"inputs":[` + row + `]}`, `give one of ["inputs" "instances"], not several`},
		{"params", `{"params":{"temperature":1},"instances":[` + row + `]}`, `params: the model takes no parameters`},
		{"unknown key", `{"dataframe":[` + row + `]}`, `unknown field "dataframe"`},
		{"split row too short", `{"dataframe_split":{"columns":["age","sex"],"data":[[1,2,3]]}}`, `dataframe_split: row 0 has 3 values for 2 columns`},
		{"split missing column", `{"dataframe_split":{"columns":["age","sex"],"data":[[1,2]]}}`, `instance 0: missing feature "bmi"`},
		{"split unknown column", `{"dataframe_split":{"columns":["glucose"],"data":[[1]]}}`, `instance 0: unknown feature "glucose"`},
		{"split no data", `{"dataframe_split":{"columns":["age"],"data":[]}}`, `no instances`},
		{"records null", `{"dataframe_records":[` + mustJSON(t, object(m, rows[0])) + `,{"age":null}]}`, `instance 1: missing feature "sex"`},
		{"record missing value", `{"dataframe_records":[{"age":1,"sex":1,"bmi":1,"bp":1,"s1":1,"s2":1,"s3":1,"s4":1,"s5":1,"s6":null}]}`, `instance 0: feature "s6": missing value, and the model imputes none`},
		{"text", `{"instances":[[1,2,3,4,5,6,7,8,9,"ten"]]}`, `instance 0: feature "s6": "ten": not a number`},
		{"rows of two kinds", `{"instances":[` + row + `,` + mustJSON(t, object(m, rows[0])) + `]}`, `instances: instance 1: {"age":59,"bmi":32.1, but instance 0 is [59,2,32.1,101,157,9: give every row alike`},
		{"columns of other lengths", `{"inputs":{"age":[1,2],"sex":[1]}}`, `inputs: column "sex" has 1 values, others 2`},
		{"a scalar row", `{"instances":[1,2]}`, `instances: instance 0: want an array of the 10 features or an object keyed by feature name, got 1`},
	} {
		r := post(t, url+"/invocations", tc.body)
		var msg string
		if r.code != 400 || json.Unmarshal(r.body["error"], &msg) != nil || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.name, r.code, r.raw, tc.want)
		}
	}
	if r := do(t, "POST", url+"/invocations", "text/csv", strings.NewReader("1,2,3")); r.code != http.StatusUnsupportedMediaType {
		t.Errorf("text/csv: %d, want 415", r.code)
	}
}

func stringObject(m *model.Linear, row []float64) map[string]string {
	o := map[string]string{}
	for j, f := range m.Features {
		o[f] = model.CategoryKey(row[j])
	}
	return o
}

// TestV1: KServe V1's predict and model routes.
func TestV1(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	want := mustJSON(t, map[string]any{"predictions": predictions(m, rows)}) + "\n"
	var objs []any
	for _, r := range rows {
		objs = append(objs, object(m, r))
	}
	for _, body := range []string{mustJSON(t, map[string]any{"instances": rows}), mustJSON(t, map[string]any{"instances": objs})} {
		if r := post(t, url+"/v1/models/diabetes:predict", body); r.code != 200 || r.raw != want {
			t.Errorf("%.60s: %d %s, want %s", body, r.code, r.raw, want)
		}
	}
	for _, tc := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/v1/models/houses:predict", mustJSON(t, map[string]any{"instances": rows}), 404, `no model "houses"; this server serves "diabetes"`},
		{"/v1/models/diabetes:predict", `{"input":[[1]]}`, 400, `unknown field "input"`},
		{"/v1/models/diabetes:predict", `{"instances":[]}`, 400, `no instances: instances is empty`},
		{"/v1/models/diabetes:predict", `{"instances":[[1,2]]}`, 400, `instance 0: got 2 features, want 10`},
		{"/v1/models/diabetes:predict", `{}`, 400, `want {"instances": [row, …]}`},
		{"/v1/models/diabetes:explain", `{}`, 404, `no route for /v1/models/diabetes:explain`},
	} {
		r := post(t, url+tc.path, tc.body)
		var msg string
		if r.code != tc.code || json.Unmarshal(r.body["error"], &msg) != nil || !strings.Contains(msg, tc.want) {
			t.Errorf("POST %s %s: %d %s, want %d with %q", tc.path, tc.body, r.code, r.raw, tc.code, tc.want)
		}
	}
}

// TestProtocolRoles: the predict routes of every protocol exist only when
// the role predicts; health and metadata routes in every role.
func TestProtocolRoles(t *testing.T) {
	m := testModel(t)
	row := mustJSON(t, rows[0])
	posts := map[string]string{
		"/v2/models/diabetes/infer":                `{"inputs":[{"name":"input","shape":[1,10],"datatype":"FP64","data":` + row + `}]}`,
		"/v1/models/diabetes:predict":              `{"instances":[` + row + `]}`,
		"/invocations":                             `{"instances":[` + row + `]}`,
		"/v2/models/diabetes/versions/1.2.3/infer": `{"inputs":[{"name":"input","shape":[1,10],"datatype":"FP64","data":` + row + `}]}`,
	}
	for _, role := range []serve.Role{serve.RoleAll, serve.RolePredict, serve.RolePreprocess} {
		_, url := start(t, m, serve.WithRole(role))
		want := 200
		if role == serve.RolePreprocess {
			want = 404
		}
		for path, body := range posts {
			if r := post(t, url+path, body); r.code != want {
				t.Errorf("role %s: POST %s: %d %s, want %d", role, path, r.code, r.raw, want)
			}
		}
		for _, path := range []string{"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/diabetes", "/v2/models/diabetes/ready", "/v1/models/diabetes", "/ping"} {
			if r := do(t, "GET", url+path, "", nil); r.code != 200 {
				t.Errorf("role %s: GET %s: %d", role, path, r.code)
			}
		}
	}
}

// TestProtocolMetrics: requests are counted by route template, whatever
// the names and versions in their paths.
func TestProtocolMetrics(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	row := mustJSON(t, rows[0])
	v2 := `{"inputs":[{"name":"input","shape":[1,10],"datatype":"FP64","data":` + row + `}]}`
	for _, s := range []struct{ method, path, body string }{
		{"POST", "/v2/models/diabetes/infer", v2},
		{"POST", "/v2/models/diabetes/infer", v2},
		{"POST", "/v2/models/a/infer", v2},
		{"POST", "/v2/models/b/infer", v2},
		{"POST", "/v2/models/diabetes/versions/1.2.3/infer", v2},
		{"POST", "/v2/models/diabetes/versions/9/infer", v2},
		{"GET", "/v2/models/diabetes", ""},
		{"GET", "/v2/models/x1", ""},
		{"GET", "/v2/models/x2/versions/3", ""},
		{"GET", "/v2/models/diabetes/ready", ""},
		{"GET", "/v2", ""},
		{"GET", "/v2/health/live", ""},
		{"GET", "/v2/health/ready", ""},
		{"POST", "/v1/models/diabetes:predict", `{"instances":[` + row + `]}`},
		{"GET", "/v1/models/c", ""},
		{"POST", "/invocations", `{"instances":[` + row + `]}`},
		{"POST", "/invocations", `{}`},
		{"GET", "/ping", ""},
		{"GET", "/v2/models/y/versions/1/extra/infer", ""},
	} {
		do(t, s.method, url+s.path, "application/json", strings.NewReader(s.body))
	}
	got := requestCounts(t, scrape(t, url))
	want := map[string]float64{
		"/v2/models/{name}/infer 200":                    2,
		"/v2/models/{name}/infer 404":                    2,
		"/v2/models/{name}/versions/{version}/infer 200": 1,
		"/v2/models/{name}/versions/{version}/infer 404": 1,
		"/v2/models/{name} 200":                          1,
		"/v2/models/{name} 404":                          1,
		"/v2/models/{name}/versions/{version} 404":       1,
		"/v2/models/{name}/ready 200":                    1,
		"/v2 200":                                        1,
		"/v2/health/live 200":                            1,
		"/v2/health/ready 200":                           1,
		"/v1/models/{name}:predict 200":                  1,
		"/v1/models/{name} 404":                          1,
		"/invocations 200":                               1,
		"/invocations 400":                               1,
		"/ping 200":                                      1,
		"other 404":                                      1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("request counters:\n got %v\nwant %v", got, want)
	}
	mfs := scrape(t, url)
	if got := mfs[serve.MetricPredictions].GetMetric()[0].GetCounter().GetValue(); got != 5 {
		t.Errorf("%s = %v, want 5 rows", serve.MetricPredictions, got)
	}
}

// python finds a python3 with requests and numpy: $PYTHON, python3 on
// PATH, /usr/bin/python3 (Debian's, where apt installs python3-requests
// and python3-numpy when a pyenv python3 comes first on PATH).
func python(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, p := range []string{os.Getenv("PYTHON"), "python3", "/usr/bin/python3"} {
		if p == "" || slices.Contains(tried, p) {
			continue
		}
		tried = append(tried, p)
		if exec.Command(p, "-c", "import requests, numpy").Run() == nil {
			return p
		}
	}
	t.Skipf("`python3 -c 'import requests, numpy'` fails for %q: apt-get install -y python3-requests python3-numpy", tried)
	return ""
}

// TestV2PythonClient runs testdata/v2client.py, a V2 client written from
// the protocol's specification with requests and numpy, against the
// built-in model (FP64) and an ONNX model (FP32): it checks the health,
// metadata and inference responses as the specification defines them,
// and its predictions must be /predict's, exactly.
func TestV2PythonClient(t *testing.T) {
	py := python(t)
	m := testModel(t)
	rs := someRows(m, 20)
	s, err := serve.Open("testdata", serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	onnxServer, err := serve.Open(onnxDir(t, "mlp_opset17.onnx", 10), serve.WithRegistry(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url, datatype string
	}{
		{"diabetes", serveHTTP(t, s), "FP64"},
		{"mlp", serveHTTP(t, onnxServer), "FP32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rowsFile := filepath.Join(t.TempDir(), "rows.json")
			if err := os.WriteFile(rowsFile, []byte(mustJSON(t, rs)), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(py, filepath.Join("testdata", "v2client.py"), tc.url, tc.name, rowsFile)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("v2client.py: %v\n%s", err, stderr.String())
			}
			var got struct {
				Predictions []float64
				Datatype    string
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("v2client.py printed %s: %v", out, err)
			}
			want := postPredictions(t, tc.url+"/predict", []byte(mustJSON(t, map[string]any{"instances": rs})), http.StatusOK)
			if got.Datatype != tc.datatype || len(got.Predictions) != len(want) {
				t.Fatalf("client got %s %v, want %s %v", got.Datatype, got.Predictions, tc.datatype, want)
			}
			for i := range want {
				if g, w := got.Predictions[i], want[i]; tc.datatype == "FP64" && g != w || tc.datatype == "FP32" && float32(g) != float32(w) {
					t.Errorf("row %d: client got %v, /predict %v", i, g, w)
				}
			}
		})
	}
}
