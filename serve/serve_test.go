package serve_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/serve"
)

// rows are raw diabetes feature rows; the first two are the dataset's first.
var rows = [][]float64{
	{59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87},
	{48, 1, 21.6, 87, 183, 103.2, 70, 3, 3.8918, 69},
	{-1.5e-7, 0, 1e3, 0.5, 2e2, 1e-300, 38, 4, 4.8598, 87},
}

func testModel(t testing.TB) *model.Linear {
	t.Helper()
	m, err := serve.LoadModel("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// start serves a new server over real HTTP and returns its registry and
// base URL.
func start(t testing.TB, m *model.Linear, opts ...serve.Option) (*prometheus.Registry, string) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := serve.New(m, append([]serve.Option{serve.WithRegistry(reg)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return reg, serveHTTP(t, s)
}

// serveHTTP runs s as modelci serve does (Serve: fasthttp, on a loopback
// port) until the test ends, and returns its base URL.
func serveHTTP(t testing.TB, s *serve.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

type response struct {
	code   int
	header http.Header
	body   map[string]json.RawMessage
	raw    string
}

func do(t testing.TB, method, url, contentType string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{code: resp.StatusCode, header: resp.Header, raw: string(b)}
	if method != http.MethodHead && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: response %q is not a JSON object: %v", method, url, b, err)
		}
	}
	return r
}

func post(t testing.TB, url, body string) response {
	t.Helper()
	return do(t, http.MethodPost, url, "application/json", strings.NewReader(body))
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func object(m *model.Linear, row []float64) map[string]float64 {
	o := make(map[string]float64, len(row))
	for j, f := range m.Features {
		o[f] = row[j]
	}
	return o
}

func predictions(m *model.Linear, rows [][]float64) []float64 {
	var ys []float64
	for _, r := range rows {
		ys = append(ys, m.Predict(r))
	}
	return ys
}

// field decodes a response field and compares it with want exactly.
func checkField(t *testing.T, r response, field string, want any) {
	t.Helper()
	raw, ok := r.body[field]
	if !ok {
		t.Fatalf("response %s has no field %q", r.raw, field)
	}
	got := newLike(want)
	if err := json.Unmarshal(raw, got); err != nil {
		t.Fatalf("field %q of %s: %v", field, r.raw, err)
	}
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("field %q = %s, want %s", field, g, w)
	}
}

func newLike(v any) any {
	switch v.(type) {
	case float64:
		return new(float64)
	case []float64:
		return new([]float64)
	case [][]float64:
		return new([][]float64)
	case map[string]float64:
		return new(map[string]float64)
	case []map[string]float64:
		return new([]map[string]float64)
	}
	panic(fmt.Sprintf("unexpected %T", v))
}

func TestPredict(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	pretty, _ := json.MarshalIndent(map[string]any{"instances": rows}, " ", "\t")
	tests := []struct {
		name, body, field string
		want              any
	}{
		{"instances", mustJSON(t, map[string]any{"instances": rows}), "predictions", predictions(m, rows)},
		{"instances one row", mustJSON(t, map[string]any{"instances": rows[:1]}), "predictions", predictions(m, rows[:1])},
		{"instances pretty", string(pretty) + "\n", "predictions", predictions(m, rows)},
		{"instances written by hand", `{"instances":[[59,2,32.1,101,157,93.2,38,4,4.8598,87],[-1.5E-7,0,1e+3,5e-1,2e2,1e-300,38.0,4,4.8598,87]]}`,
			"predictions", predictions(m, [][]float64{rows[0], rows[2]})},
		{"instances, keys in other case", mustJSON(t, map[string]any{"Instances": rows}), "predictions", predictions(m, rows)},
		{"input one row", mustJSON(t, map[string]any{"input": rows[0]}), "prediction", m.Predict(rows[0])},
		{"input rows", mustJSON(t, map[string]any{"input": rows}), "prediction", predictions(m, rows)},
		{"input object", mustJSON(t, map[string]any{"input": object(m, rows[1])}), "prediction", m.Predict(rows[1])},
		{"input objects", mustJSON(t, map[string]any{"input": []any{object(m, rows[0]), object(m, rows[2])}}),
			"prediction", predictions(m, [][]float64{rows[0], rows[2]})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url+"/predict", tt.body)
			if r.code != http.StatusOK {
				t.Fatalf("code %d, body %s", r.code, r.raw)
			}
			if len(r.body) != 1 {
				t.Errorf("response %s: want the single field %q", r.raw, tt.field)
			}
			checkField(t, r, tt.field, tt.want)
		})
	}
}

func TestProcessData(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	std := func(row []float64) []float64 { return m.Standardize(nil, row) }
	tests := []struct {
		name, body string
		want       any
	}{
		{"input one row", mustJSON(t, map[string]any{"input": rows[0]}), std(rows[0])},
		{"input rows", mustJSON(t, map[string]any{"input": rows[:2]}), [][]float64{std(rows[0]), std(rows[1])}},
		{"instances", mustJSON(t, map[string]any{"instances": rows[1:]}), [][]float64{std(rows[1]), std(rows[2])}},
		{"input object", mustJSON(t, map[string]any{"input": object(m, rows[2])}), object(m, std(rows[2]))},
		{"input objects", mustJSON(t, map[string]any{"input": []any{object(m, rows[0]), object(m, rows[1])}}),
			[]map[string]float64{object(m, std(rows[0])), object(m, std(rows[1]))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url+"/process_data", tt.body)
			if r.code != http.StatusOK {
				t.Fatalf("code %d, body %s", r.code, r.raw)
			}
			checkField(t, r, "processed_data", tt.want)
		})
	}
}

func TestProcessDataKeepsFeatureOrder(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	r := post(t, url+"/process_data", mustJSON(t, map[string]any{"input": object(m, rows[0])}))
	// encoding/json sorts map keys; the server writes the model's order.
	want := `{"processed_data":{"age":`
	if !strings.HasPrefix(r.raw, want) || strings.Index(r.raw, `"sex"`) > strings.Index(r.raw, `"bmi"`) {
		t.Errorf("body %s: want keys in the model's feature order", r.raw)
	}
}

func TestBadRequests(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m)
	row := mustJSON(t, rows[0])
	huge := `[1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308,1e308]`
	obj := object(m, rows[0])
	delete(obj, "s6")
	missing := mustJSON(t, map[string]any{"input": obj})
	obj["s6"], obj["glucose"] = 1, 2
	unknown := mustJSON(t, map[string]any{"input": obj})
	tests := []struct {
		name, route, body, want string
	}{
		{"truncated", "/predict", `{"instances": [[1, 2`, "bad JSON"},
		{"empty body", "/predict", ``, "bad JSON: empty body"},
		{"not an object", "/predict", `[[1,2,3]]`, "bad JSON"},
		{"no rows key", "/predict", `{}`, `want an object with "instances"`},
		{"unknown key", "/predict", `{"instance": [` + row + `]}`, `unknown field "instance"`},
		{"both keys", "/predict", `{"instances": [` + row + `], "input": ` + row + `}`, "not both"},
		{"trailing data", "/predict", `{"instances": [` + row + `]} {}`, "data after the top-level object"},
		{"empty instances", "/predict", `{"instances": []}`, "no instances"},
		{"null instances", "/predict", `{"instances": null}`, `want an object with "instances"`},
		{"empty input", "/predict", `{"input": []}`, "no instances"},
		{"input a string", "/predict", `{"input": "59,2"}`, "input: want an array"},
		{"row too short", "/predict", `{"instances": [` + row + `, [1, 2, 3]]}`, "instance 1: got 3 features, want 10"},
		{"row too long", "/predict", `{"input": [` + row + `, [1,2,3,4,5,6,7,8,9,10,11]]}`, "instance 1: got 11 features, want 10"},
		{"one row too short", "/predict", `{"input": [1, 2]}`, "input: got 2 features, want 10"},
		{"null feature", "/predict", `{"instances": [[1,2,null,4,5,6,7,8,9,10]]}`, "instance 0: feature 2 (bmi) is null"},
		{"string feature", "/predict", `{"instances": [[1,2,"3",4,5,6,7,8,9,10]]}`, "cannot unmarshal string"},
		{"NaN literal", "/predict", `{"instances": [[1,2,NaN,4,5,6,7,8,9,10]]}`, "bad JSON"},
		{"hex number", "/predict", `{"instances": [[0x1,2,3,4,5,6,7,8,9,10]]}`, "bad JSON"},
		{"number out of range", "/predict", `{"instances": [[1e400,2,3,4,5,6,7,8,9,10]]}`, "1e400"},
		{"prediction overflows", "/predict", `{"instances": [` + row + `,` + huge + `]}`, "instance 1: prediction is"},
		{"standardisation overflows", "/process_data", `{"input": ` + huge + `}`, "input: feature sex standardises to +Inf"},
		{"missing feature", "/process_data", missing, `input: missing feature "s6"`},
		{"unknown feature", "/predict", unknown, `input: unknown feature "glucose"`},
		{"null row", "/process_data", `{"input": [null]}`, "input: got 1 features, want 10"},
		{"null object", "/process_data", `{"input": [` + mustJSON(t, object(m, rows[0])) + `, null]}`, "instance 1: null, want an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, url+tt.route, tt.body)
			if r.code != http.StatusBadRequest {
				t.Fatalf("code %d, want 400; body %s", r.code, r.raw)
			}
			var msg string
			if err := json.Unmarshal(r.body["error"], &msg); err != nil || !strings.Contains(msg, tt.want) {
				t.Errorf("error %s, want it to contain %q", r.body["error"], tt.want)
			}
		})
	}
}

func TestStatusCodes(t *testing.T) {
	m := testModel(t)
	_, url := start(t, m, serve.WithMaxBodyBytes(100))
	body := mustJSON(t, map[string]any{"instances": rows[:1]})
	big := mustJSON(t, map[string]any{"instances": rows})
	if len(body) > 100 || len(big) <= 100 {
		t.Fatalf("fixture sizes %d and %d do not straddle the limit", len(body), len(big))
	}
	tests := []struct {
		name, method, path, contentType string
		body                            io.Reader
		code                            int
		allow                           string
	}{
		{"within limit", "POST", "/predict", "application/json", strings.NewReader(body), 200, ""},
		{"json with charset", "POST", "/predict", "application/json; charset=utf-8", strings.NewReader(body), 200, ""},
		{"no content type", "POST", "/predict", "", strings.NewReader(body), 200, ""},
		{"oversize, length known", "POST", "/predict", "application/json", strings.NewReader(big), 413, ""},
		// A reader of unknown length makes the client send a chunked body.
		{"oversize, chunked", "POST", "/predict", "application/json", io.MultiReader(strings.NewReader(big)), 413, ""},
		{"oversize preprocess", "POST", "/process_data", "application/json", strings.NewReader(big), 413, ""},
		{"form body", "POST", "/predict", "application/x-www-form-urlencoded", strings.NewReader(body), 415, ""},
		{"get predict", "GET", "/predict", "", nil, 405, "POST"},
		{"put process_data", "PUT", "/process_data", "application/json", strings.NewReader(body), 405, "POST"},
		{"post healthz", "POST", "/healthz", "", nil, 405, "GET, HEAD"},
		{"delete readyz", "DELETE", "/readyz", "", nil, 405, "GET, HEAD"},
		{"post metrics", "POST", "/metrics", "", nil, 405, "GET, HEAD"},
		{"unknown path", "GET", "/v1/models", "", nil, 404, ""},
		{"healthz", "GET", "/healthz", "", nil, 200, ""},
		{"head readyz", "HEAD", "/readyz", "", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, url+tt.path, tt.contentType, tt.body)
			if r.code != tt.code {
				t.Fatalf("code %d, want %d; body %s", r.code, tt.code, r.raw)
			}
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			if tt.code != 200 {
				if _, ok := r.body["error"]; !ok {
					t.Errorf("body %s has no error", r.raw)
				}
			}
		})
	}
}

func TestRoles(t *testing.T) {
	m := testModel(t)
	body := mustJSON(t, map[string]any{"input": rows[0]})
	tests := []struct {
		role                 serve.Role
		predict, processData int
	}{
		{serve.RoleAll, 200, 200},
		{serve.RolePredict, 200, 404},
		{serve.RolePreprocess, 404, 200},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			_, url := start(t, m, serve.WithRole(tt.role))
			if r := post(t, url+"/predict", body); r.code != tt.predict {
				t.Errorf("/predict: code %d, want %d", r.code, tt.predict)
			}
			if r := post(t, url+"/process_data", body); r.code != tt.processData {
				t.Errorf("/process_data: code %d, want %d", r.code, tt.processData)
			}
			for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
				if r := do(t, "GET", url+p, "", nil); r.code != 200 {
					t.Errorf("%s: code %d, want 200", p, r.code)
				}
			}
		})
	}
}

func TestNoModel(t *testing.T) {
	_, url := start(t, nil)
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/readyz", 503},
		{"POST", "/predict", 503},
		{"POST", "/process_data", 503},
	} {
		if r := do(t, tt.method, url+tt.path, "application/json", strings.NewReader(`{"input":[1]}`)); r.code != tt.code {
			t.Errorf("%s %s: code %d, want %d", tt.method, tt.path, r.code, tt.code)
		}
	}
}

func TestNewErrors(t *testing.T) {
	m := testModel(t)
	bad := *m
	bad.Scale = append([]float64{0}, m.Scale[1:]...)
	reg := prometheus.NewRegistry()
	if _, err := serve.New(m, serve.WithRegistry(reg)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		model  *model.Linear
		opts   []serve.Option
		wantIs error
		want   string
	}{
		{"unknown role", m, []serve.Option{serve.WithRole("both")}, serve.ErrRole, `"both"`},
		{"no body limit", m, []serve.Option{serve.WithMaxBodyBytes(0)}, nil, "body limit 0"},
		{"invalid model", &bad, nil, model.ErrInvalid, "scale[0] (age) is zero"},
		{"metrics registered twice", m, []serve.Option{serve.WithRegistry(reg)}, nil, "register server metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := serve.New(tt.model, tt.opts...)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"all", "predict", "preprocess"} {
		if r, err := serve.ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Predict", "process_data"} {
		if _, err := serve.ParseRole(s); !errors.Is(err, serve.ErrRole) {
			t.Errorf("ParseRole(%q): error %v, want ErrRole", s, err)
		}
	}
}

func TestLoadModel(t *testing.T) {
	dir := t.TempDir()
	invalid := filepath.Join(dir, "invalid")
	garbage := filepath.Join(dir, "garbage")
	for d, content := range map[string]string{
		invalid: `{"schema": "modelci.dev/model/linear/v1", "features": []}`,
		garbage: `{"schema": `,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, model.FileName), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		dir    string
		wantIs error
	}{
		{filepath.Join(dir, "absent"), fs.ErrNotExist},
		{invalid, model.ErrInvalid},
		{garbage, model.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			_, err := serve.LoadModel(tt.dir)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("error %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.dir) {
				t.Errorf("error %q does not name the directory", err)
			}
		})
	}
	m := testModel(t)
	if m.Name != "diabetes" || m.NumFeatures() != 10 {
		t.Errorf("loaded %q with %d features", m.Name, m.NumFeatures())
	}
}

// TestServeHTTP: the server as an http.Handler (in a net/http server)
// answers what the fasthttp server answers, byte for byte: status, body,
// Content-Type and Allow.
func TestServeHTTP(t *testing.T) {
	m := testModel(t)
	s, err := serve.New(m, serve.WithRegistry(prometheus.NewRegistry()), serve.WithMaxBodyBytes(600))
	if err != nil {
		t.Fatal(err)
	}
	fast := serveHTTP(t, s)
	std := httptest.NewServer(s)
	defer std.Close()
	row := mustJSON(t, rows[0])
	for _, tc := range []struct{ method, path, contentType, body string }{
		{"POST", "/predict", "application/json", `{"instances":[` + row + `]}`},
		{"POST", "/predict", "", `{"input":` + row + `}`},
		{"POST", "/process_data", "application/json", `{"input":[` + row + `,` + row + `]}`},
		{"POST", "/predict", "application/json", `{"instances":[[1,2]]}`},
		{"POST", "/predict", "text/csv", `1,2`},
		{"POST", "/predict", "application/json", `{"instances":[` + strings.Repeat(row+",", 9) + row + `]}`},
		{"GET", "/predict", "", ""},
		{"GET", "/healthz", "", ""},
		{"HEAD", "/readyz", "", ""},
		{"GET", "/nowhere", "", ""},
		{"POST", "/v2/models/diabetes/infer", "application/json", `{"id":"7","inputs":[{"name":"input","shape":[1,10],"datatype":"FP64","data":` + row + `}]}`},
		{"GET", "/v2/models/diabetes", "", ""},
		{"GET", "/v2/models/other/ready", "", ""},
		{"POST", "/v1/models/diabetes:predict", "application/json", `{"instances":[` + row + `]}`},
		{"POST", "/invocations", "application/json", `{"dataframe_records":[` + mustJSON(t, object(m, rows[1])) + `]}`},
		{"GET", "/ping", "", ""},
		{"DELETE", "/v2", "", ""},
	} {
		var got [2]response
		for k, url := range []string{fast, std.URL} {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			got[k] = do(t, tc.method, url+tc.path, tc.contentType, body)
		}
		f, h := got[0], got[1]
		if f.code != h.code || f.raw != h.raw || f.header.Get("Content-Type") != h.header.Get("Content-Type") || f.header.Get("Allow") != h.header.Get("Allow") {
			t.Errorf("%s %s: fasthttp %d %q %q %q, net/http %d %q %q %q", tc.method, tc.path,
				f.code, f.header.Get("Content-Type"), f.header.Get("Allow"), f.raw, h.code, h.header.Get("Content-Type"), h.header.Get("Allow"), h.raw)
		}
	}
}
