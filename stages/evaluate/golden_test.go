package evaluate_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/evaluate"
)

// TestBuiltinGoldenDiabetes: the built-in evaluator gives, bit for bit, the
// per-example losses the code at commit 2e4f2ec gave for the example's model
// on its test split (golden files written by that commit's code).
func TestBuiltinGoldenDiabetes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "train", "testdata", "diabetes-model.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	d, err := data.Load(context.Background(), filepath.Join("..", "data", "testdata", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	_, test, err := data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	got, err := evaluate.Builtin(m, test)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := os.ReadFile(filepath.Join("testdata", "diabetes-eval.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		PerExampleLoss []float64 `json:"per_example_loss"`
	}
	if err := json.Unmarshal(gb, &golden); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(golden.PerExampleLoss) {
		t.Fatalf("%d losses, golden %d", len(got), len(golden.PerExampleLoss))
	}
	for i := range got {
		if math.Float64bits(got[i]) != math.Float64bits(golden.PerExampleLoss[i]) {
			t.Errorf("loss[%d] = %v, golden %v", i, got[i], golden.PerExampleLoss[i])
		}
	}
}
