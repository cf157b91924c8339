package serve_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/model/onnx"
	"github.com/modelci/modelci/serve"
)

// torchFixtures are model/onnx's torch exports and torch's own outputs.
type torchFixtures struct {
	Input  [][]float64 `json:"input"`
	Models map[string]struct {
		Output []float64 `json:"output"`
	} `json:"models"`
}

// onnxDir is a model directory as modelci builds one for a torch export:
// model.onnx and modelci.json naming its ten features.
func onnxDir(t *testing.T, file string, features int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "model", "onnx", "testdata", "torch", file))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, model.ONNXFileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	info := &model.ONNXInfo{Name: "mlp", Version: "1.0.0", Target: "y"}
	for i := range features {
		info.Features = append(info.Features, fmt.Sprintf("f%d", i))
	}
	ib, err := info.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, model.ONNXInfoFileName), ib, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestServeONNX: /predict of an ONNX model answers what torch computed,
// row by row, in the array and object forms; /process_data does not exist.
func TestServeONNX(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "model", "onnx", "testdata", "torch", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx torchFixtures
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"linear", "mlp"} {
		t.Run(name, func(t *testing.T) {
			s, err := serve.Open(onnxDir(t, name+"_opset17.onnx", 10))
			if err != nil {
				t.Fatal(err)
			}
			srv := struct{ URL string }{serveHTTP(t, s)}
			want := fx.Models[name].Output
			body, _ := json.Marshal(map[string]any{"instances": fx.Input})
			got := postPredictions(t, srv.URL+"/predict", body, http.StatusOK)
			if len(got) != len(want) {
				t.Fatalf("%d predictions, want %d", len(got), len(want))
			}
			for i := range want {
				if d := math.Abs(got[i]-want[i]) / math.Max(math.Abs(want[i]), 1); d > 1e-5 {
					t.Errorf("row %d: served %v, torch %v", i, got[i], want[i])
				}
			}
			obj := map[string]float64{}
			for j, v := range fx.Input[0] {
				obj[fmt.Sprintf("f%d", j)] = v
			}
			body, _ = json.Marshal(map[string]any{"input": obj})
			if one := postPredictions(t, srv.URL+"/predict", body, http.StatusOK); len(one) != 1 || math.Abs(one[0]-got[0]) > 1e-6 {
				t.Errorf("object form: %v, want %v", one, got[0])
			}
			resp, err := http.Post(srv.URL+"/process_data", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("/process_data of an ONNX model: %s, want 404", resp.Status)
			}
			body, _ = json.Marshal(map[string]any{"instances": [][]float64{{1, 2, 3}}})
			postPredictions(t, srv.URL+"/predict", body, http.StatusBadRequest)
		})
	}
}

// postPredictions sends body and returns the predictions, checking the status.
func postPredictions(t *testing.T, url string, body []byte, status int) []float64 {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Predictions []float64 `json:"predictions"`
		Prediction  *float64  `json:"prediction"`
		Error       string    `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("POST %s: %s (%s), want %d", url, resp.Status, out.Error, status)
	}
	if out.Prediction != nil {
		return []float64{*out.Prediction}
	}
	return out.Predictions
}

// TestOpenONNXRefusals: what cannot be served is refused when the server
// loads, with its name.
func TestOpenONNXRefusals(t *testing.T) {
	dir := onnxDir(t, "mlp_opset17.onnx", 9)
	if _, err := serve.Open(dir); !errors.Is(err, onnx.ErrSignature) || !strings.Contains(err.Error(), "10 features") {
		t.Errorf("an input wider than the recorded features: %v, want ErrSignature", err)
	}
	dir = onnxDir(t, "mlp_opset17.onnx", 10)
	os.Remove(filepath.Join(dir, model.ONNXInfoFileName))
	if _, err := serve.Open(dir); err == nil || !strings.Contains(err.Error(), model.ONNXInfoFileName) {
		t.Errorf("no modelci.json: %v", err)
	}
	dir = onnxDir(t, "mlp_opset17.onnx", 10)
	if _, err := serve.Open(dir, serve.WithRole(serve.RolePreprocess)); !errors.Is(err, serve.ErrRole) {
		t.Errorf("--role preprocess for an ONNX model: %v, want ErrRole", err)
	}
	bad := onnxDir(t, "mlp_opset17.onnx", 10)
	os.WriteFile(filepath.Join(bad, model.ONNXFileName), []byte("not a model"), 0o644)
	if _, err := serve.Open(bad); !errors.Is(err, onnx.ErrMalformed) {
		t.Errorf("a malformed model.onnx: %v, want ErrMalformed", err)
	}
}

// TestONNXProtocols: an ONNX model's V2 metadata names its graph's input
// and output, FP32; V2 inference takes FP32 (and FP64) tensors in either
// layout and answers an FP32 output, each value /predict's (which is a
// float32 too); KServe V1 and MLflow answer /predict's numbers.
func TestONNXProtocols(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "model", "onnx", "testdata", "torch", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx torchFixtures
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	dir := onnxDir(t, "mlp_opset17.onnx", 10)
	b, _ := os.ReadFile(filepath.Join(dir, model.ONNXFileName))
	om, err := onnx.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	inName, _ := om.Input()
	s, err := serve.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	url := serveHTTP(t, s)
	n := len(fx.Input)
	body, _ := json.Marshal(map[string]any{"instances": fx.Input})
	want := postPredictions(t, url+"/predict", body, http.StatusOK)
	for i, v := range want {
		if float64(float32(v)) != v {
			t.Fatalf("/predict's %d: %v is not a float32", i, v)
		}
		if d := math.Abs(v-fx.Models["mlp"].Output[i]) / math.Max(math.Abs(v), 1); d > 1e-5 {
			t.Errorf("row %d: %v, torch %v", i, v, fx.Models["mlp"].Output[i])
		}
	}

	r := do(t, "GET", url+"/v2/models/mlp", "", nil)
	var md struct {
		Name     string
		Platform string
		Inputs   []struct {
			Name, Datatype string
			Shape          []int
		}
		Outputs []struct {
			Name, Datatype string
			Shape          []int
		}
		Digest string
	}
	if err := json.Unmarshal([]byte(r.raw), &md); err != nil || md.Name != "mlp" || md.Platform != "onnx" || len(md.Inputs) != 1 || len(md.Outputs) != 1 ||
		md.Inputs[0].Name != inName || md.Inputs[0].Datatype != "FP32" || !slices.Equal(md.Inputs[0].Shape, []int{-1, 10}) ||
		md.Outputs[0].Name != om.Output() || md.Outputs[0].Datatype != "FP32" || !slices.Equal(md.Outputs[0].Shape, []int{-1}) ||
		!strings.HasPrefix(md.Digest, "sha256:") {
		t.Fatalf("metadata %s (%v); the graph's input is %q, its output %q", r.raw, err, inName, om.Output())
	}

	var cols []any
	for j := range 10 {
		var c []float32
		for _, row := range fx.Input {
			c = append(c, float32(row[j]))
		}
		cols = append(cols, map[string]any{"name": fmt.Sprintf("f%d", j), "shape": []int{n}, "datatype": "FP32", "data": c})
	}
	for _, tc := range []struct {
		name string
		body any
	}{
		{"FP32 nested", map[string]any{"id": "x", "inputs": []any{map[string]any{"name": inName, "shape": []int{n, 10}, "datatype": "FP32", "data": fx.Input}}}},
		{"FP64 flat", map[string]any{"id": "x", "inputs": []any{map[string]any{"name": inName, "shape": []int{n, 10}, "datatype": "FP64", "data": flatten(fx.Input)}}}},
		{"FP32 per feature", map[string]any{"id": "x", "inputs": cols}},
	} {
		r := post(t, url+"/v2/models/mlp/infer", mustJSON(t, tc.body))
		got := decodeV2Resp(t, r, ptr("x"), om.Output(), "FP32", n)
		// Each value is written as the shortest text that reads back to
		// its float32, which is /predict's.
		var v v2Resp
		json.Unmarshal([]byte(r.raw), &v)
		for i, num := range strings.Split(strings.Trim(string(v.Outputs[0].Data), "[]"), ",") {
			f, err := strconv.ParseFloat(num, 32)
			if err != nil || float32(f) != float32(want[i]) || float32(got[i]) != float32(want[i]) ||
				num != strconv.FormatFloat(float64(float32(want[i])), 'f', -1, 32) {
				t.Errorf("%s: value %d written %s, /predict's is %v", tc.name, i, num, want[i])
			}
		}
	}
	for _, tc := range []struct{ path, body string }{
		{"/v1/models/mlp:predict", string(body)},
		{"/invocations", string(body)},
		{"/invocations", mustJSON(t, map[string]any{"dataframe_split": map[string]any{"columns": []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9"}, "data": fx.Input}})},
	} {
		if got := postPredictions(t, url+tc.path, []byte(tc.body), http.StatusOK); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", tc.path, got, want)
		}
	}
	r = post(t, url+"/invocations", `{"instances":[[1,2,3,4,5,6,7,8,9,"ten"]]}`)
	if r.code != 400 || !strings.Contains(r.raw, `instance 0: feature \"f9\": \"ten\": not a number`) {
		t.Errorf("text for an ONNX model: %d %s", r.code, r.raw)
	}
}
