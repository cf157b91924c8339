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
