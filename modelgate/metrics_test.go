package modelgate_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

const goodMetrics = `{
  "schema": "modelci.dev/metrics/v1",
  "train": {"loss": [30000, 5000, 2950, 2900]},
  "eval": {"loss": 3000, "per_example": [1000, 2000, 6000]},
  "params": {"epochs": 4},
  "dataset": {"digest": "sha256:aa", "rows": 15},
  "split": {"test_digest": "sha256:bb", "test_rows": 3, "seed": 42, "test_fraction": 0.2}
}`

func TestDecodeMetrics(t *testing.T) {
	m, err := modelgate.DecodeMetrics([]byte(goodMetrics))
	if err != nil {
		t.Fatal(err)
	}
	if m.Eval.Loss != 3000 || len(m.Eval.PerExample) != 3 || m.Split.TestDigest != "sha256:bb" || m.Split.Seed != 42 || len(m.Train.Loss) != 4 {
		t.Errorf("decoded %+v", m)
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := modelgate.DecodeMetrics(b)
	if err != nil {
		t.Fatalf("decoding the encoding: %v\n%s", err, b)
	}
	if again.Eval.Loss != m.Eval.Loss || again.Split != m.Split || again.Dataset != m.Dataset {
		t.Errorf("round trip: %+v, want %+v", again, m)
	}
	for _, key := range []string{`"schema"`, `"train"`, `"loss"`, `"eval"`, `"per_example"`, `"params"`, `"dataset"`, `"digest"`, `"rows"`, `"split"`, `"test_digest"`, `"test_rows"`, `"seed"`, `"test_fraction"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("encoding lacks %s:\n%s", key, b)
		}
	}
}

func TestDecodeMetricsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		want           error
	}{
		{"NaN literal", `[1000, 2000, 6000]`, `[1000, NaN, 6000]`, modelgate.ErrNonFinite},
		{"Infinity literal", `"loss": 3000`, `"loss": Infinity`, modelgate.ErrNonFinite},
		{"minus Infinity", `[30000, 5000`, `[-Infinity, 5000`, modelgate.ErrNonFinite},
		{"overflow", `[1000, 2000, 6000]`, `[1000, 2e999, 6000]`, modelgate.ErrNonFinite},
		{"empty per-example", `"per_example": [1000, 2000, 6000]`, `"per_example": []`, modelgate.ErrEmptyPerExample},
		{"null per-example", `"per_example": [1000, 2000, 6000]`, `"per_example": null`, modelgate.ErrEmptyPerExample},
		{"empty train loss", `[30000, 5000, 2950, 2900]`, `[]`, modelgate.ErrEmptyTrainLoss},
		{"loss is not the mean", `"loss": 3000`, `"loss": 3001`, modelgate.ErrLossMismatch},
		{"rows", `"test_rows": 3`, `"test_rows": 4`, modelgate.ErrRowsMismatch},
		{"schema", `metrics/v1`, `metrics/v2`, modelgate.ErrMetricsSchema},
		{"unknown field", `"params"`, `"extra": 1, "params"`, modelgate.ErrMetricsSchema},
		{"wrong type", `"rows": 15`, `"rows": "15"`, modelgate.ErrMetricsSchema},
		{"trailing data", `"test_fraction": 0.2}
}`, `"test_fraction": 0.2}
} {}`, modelgate.ErrMetricsSchema},
		{"truncated", `"test_fraction": 0.2}
}`, `"test_fraction": 0.2}`, modelgate.ErrMetricsSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(goodMetrics, tc.old, tc.new, 1)
			if doc == goodMetrics {
				t.Fatalf("%q not in the document", tc.old)
			}
			_, err := modelgate.DecodeMetrics([]byte(doc))
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEncodeRefusesNonFinite(t *testing.T) {
	m, err := modelgate.DecodeMetrics([]byte(goodMetrics))
	if err != nil {
		t.Fatal(err)
	}
	m.Train.Loss[1] = math.Inf(1)
	if _, err := m.Encode(); !errors.Is(err, modelgate.ErrNonFinite) || !strings.Contains(err.Error(), "train.loss[1]") {
		t.Errorf("err = %v, want ErrNonFinite naming train.loss[1]", err)
	}
}

func FuzzDecodeMetrics(f *testing.F) {
	f.Add([]byte(goodMetrics))
	f.Add([]byte(`{"schema":"modelci.dev/metrics/v1","train":{"loss":[1]},"eval":{"loss":1,"per_example":[1]},"split":{"test_rows":1}}`))
	f.Add([]byte(`{"eval":{"per_example":[NaN]}}`))
	f.Add([]byte(`{"eval":{"loss":1e400}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := modelgate.DecodeMetrics(b)
		if err != nil {
			return
		}
		// What decodes is valid, finite and survives a round trip.
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded metrics do not validate: %v", err)
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded metrics do not encode: %v", err)
		}
		again, err := modelgate.DecodeMetrics(enc)
		if err != nil {
			t.Fatalf("round trip: %v\n%s", err, enc)
		}
		if again.Eval.Loss != m.Eval.Loss || len(again.Eval.PerExample) != len(m.Eval.PerExample) {
			t.Fatalf("round trip changed eval: %+v → %+v", m.Eval, again.Eval)
		}
	})
}
