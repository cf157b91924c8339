package train_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelci/modelci/stages/train"
)

// TestBuiltinGoldenDiabetes pins the built-in trainer's output on the
// bundled example to what the code at commit 2e4f2ec (before categorical
// columns and imputation) wrote: the same model.json bytes, so images built
// from a numeric data set keep their digests, and the same per-epoch losses.
// The golden files were written by that commit's code, not by this one; do
// not regenerate them.
func TestBuiltinGoldenDiabetes(t *testing.T) {
	trainSet, _ := diabetesSplit(t)
	for _, tc := range []struct {
		model, loss string
		batch       int
		seed        int64
	}{
		{"diabetes-model.golden.json", "diabetes-loss.golden.json", 0, 42},
		{"diabetes-model-batch32.golden.json", "diabetes-loss-batch32.golden.json", 32, 7},
	} {
		t.Run(tc.model, func(t *testing.T) {
			p := train.DefaultParams()
			p.BatchSize = tc.batch
			res, err := train.Builtin(context.Background(), trainSet, p, tc.seed)
			if err != nil {
				t.Fatal(err)
			}
			res.Model.Name, res.Model.Version = "diabetes", "1.0.0"
			got, err := res.Model.Encode()
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join("testdata", tc.model))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("model.json differs from the branch point's:\n%s\nwant:\n%s", got, want)
			}
			b, err := os.ReadFile(filepath.Join("testdata", tc.loss))
			if err != nil {
				t.Fatal(err)
			}
			var golden struct{ Loss []float64 }
			if err := json.Unmarshal(b, &golden); err != nil {
				t.Fatal(err)
			}
			if !bitsEqual(res.Loss, golden.Loss) {
				t.Errorf("per-epoch losses differ from the branch point's")
			}
		})
	}
}
