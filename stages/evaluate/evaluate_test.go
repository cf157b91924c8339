package evaluate_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/evaluate"
)

// linear is y = 1 + 2·(a − 1)/2 − 3·(b − 0)/1 = a − 3b.
func linear() *model.Linear {
	return &model.Linear{
		Schema: model.Schema, Name: "m", Version: "1.0.0",
		Features: []string{"a", "b"}, Target: "y",
		Mean: []float64{1, 0}, Scale: []float64{2, 1}, Weights: []float64{2, -3}, Bias: 1,
	}
}

func TestBuiltin(t *testing.T) {
	test := &data.Dataset{
		Features: []string{"a", "b"}, Target: "y",
		X: []float64{1, 1, 4, 0, 0, 0.5},
		Y: []float64{-2, 5, 0},
	}
	// Predictions −2, 4, −1.5.
	got, err := evaluate.Builtin(linear(), test)
	if err != nil {
		t.Fatal(err)
	}
	if want := []float64{0, 1, 2.25}; !slices.Equal(got, want) {
		t.Errorf("losses %v, want %v", got, want)
	}
}

func TestBuiltinErrors(t *testing.T) {
	bad := linear()
	bad.Scale[0] = 0
	tests := []struct {
		name    string
		m       *model.Linear
		test    *data.Dataset
		wantErr error
	}{
		{name: "renamed feature", m: linear(), test: &data.Dataset{Features: []string{"a", "c"}, X: []float64{1, 2}, Y: []float64{1}}, wantErr: evaluate.ErrFeatureMismatch},
		{name: "reordered features", m: linear(), test: &data.Dataset{Features: []string{"b", "a"}, X: []float64{1, 2}, Y: []float64{1}}, wantErr: evaluate.ErrFeatureMismatch},
		{name: "extra feature", m: linear(), test: &data.Dataset{Features: []string{"a", "b", "c"}, X: []float64{1, 2, 3}, Y: []float64{1}}, wantErr: evaluate.ErrFeatureMismatch},
		{name: "no rows", m: linear(), test: &data.Dataset{Features: []string{"a", "b"}}, wantErr: evaluate.ErrNoRows},
		{name: "no test set", m: linear(), wantErr: evaluate.ErrNoRows},
		{name: "bad shape", m: linear(), test: &data.Dataset{Features: []string{"a", "b"}, X: []float64{1}, Y: []float64{1}}, wantErr: data.ErrShape},
		{name: "invalid model", m: bad, test: &data.Dataset{Features: []string{"a", "b"}, X: []float64{1, 2}, Y: []float64{1}}, wantErr: model.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := evaluate.Builtin(tt.m, tt.test)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Builtin: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// synthetic is n rows of y = a − 3b + noise.
func synthetic(n int) *data.Dataset {
	rng := rand.New(rand.NewPCG(1, 1))
	d := &data.Dataset{Features: []string{"a", "b"}, Target: "y"}
	for range n {
		a, b := rng.NormFloat64()*10, rng.Float64()
		d.X = append(d.X, a, b)
		d.Y = append(d.Y, a-3*b+rng.NormFloat64())
	}
	return d
}

func modelDir(t *testing.T, m *model.Linear) string {
	t.Helper()
	dir := t.TempDir()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, model.FileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A Python evaluator applying the same model gives the built-in losses.
func TestExternalMatchesBuiltin(t *testing.T) {
	test := synthetic(200)
	m := linear()
	want, err := evaluate.Builtin(m, test)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "eval")
	var log bytes.Buffer
	got, err := evaluate.External(context.Background(), evaluate.ExternalInput{
		Command:  []string{"python3", "evaluator.py"},
		Dir:      "testdata",
		ModelDir: modelDir(t, m),
		Test:     test,
		OutDir:   out,
		Log:      &log,
	})
	if err != nil {
		t.Fatalf("External: %v\nlog:\n%s", err, log.String())
	}
	if len(got) != len(want) {
		t.Fatalf("%d losses, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-9*(1+want[i]) {
			t.Errorf("loss[%d] = %v, built-in %v", i, got[i], want[i])
		}
	}
	if _, err := os.Stat(filepath.Join(out, evaluate.Predictions)); err != nil {
		t.Errorf("predictions.json not kept in the output directory: %v", err)
	}
	if !strings.Contains(log.String(), "evaluated 200 rows") {
		t.Errorf("log %q lacks the evaluator's output", log.String())
	}
}

func TestExternalFailures(t *testing.T) {
	const write = `> "$MODELCI_OUT/predictions.json"`
	tests := []struct {
		name     string
		script   string // run by /bin/sh in the project directory
		command  []string
		modelDir func(*testing.T) string // default: a valid model directory
		prefill  bool
		wantErr  error
		wantMsg  string
	}{
		{name: "command not found", command: []string{"./no-such-evaluator"}, wantErr: evaluate.ErrCommandNotFound},
		{name: "non-zero exit", script: `echo "model file unreadable" >&2; exit 4`, wantErr: evaluate.ErrEvaluatorFailed, wantMsg: "model file unreadable"},
		{name: "no predictions", script: `true`, wantErr: evaluate.ErrNoPredictions},
		{name: "not JSON", script: `echo '[1,2,3]' ` + write, wantErr: evaluate.ErrBadPredictions},
		{name: "wrong key", script: `echo '{"loss":[1,2,3]}' ` + write, wantErr: evaluate.ErrBadPredictions},
		{name: "too few", script: `echo '{"per_example_loss":[1,2]}' ` + write, wantErr: evaluate.ErrLossCount, wantMsg: "2 losses for 3 test rows"},
		{name: "too many", script: `echo '{"per_example_loss":[1,2,3,4]}' ` + write, wantErr: evaluate.ErrLossCount},
		{name: "NaN", script: `echo '{"per_example_loss":[1,NaN,3]}' ` + write, wantErr: evaluate.ErrNonFiniteLoss, wantMsg: "per_example_loss[1] is NaN"},
		{name: "Infinity", script: `echo '{"per_example_loss":[1,2,Infinity]}' ` + write, wantErr: evaluate.ErrNonFiniteLoss},
		{name: "output dir not empty", script: `echo '{"per_example_loss":[1,2,3]}' ` + write, prefill: true, wantErr: evaluate.ErrOutDirNotEmpty},
		{name: "no model dir given", script: `true`, modelDir: func(*testing.T) string { return "" }, wantErr: evaluate.ErrNoModelDir},
		{name: "missing model dir", script: `true`, modelDir: noModelDir, wantErr: evaluate.ErrNoModelDir, wantMsg: "no such file"},
		{name: "model dir is a file", script: `true`, modelDir: modelFile, wantErr: evaluate.ErrNoModelDir, wantMsg: "is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			project := t.TempDir()
			command := tt.command
			if tt.script != "" {
				if err := os.WriteFile(filepath.Join(project, "evaluate.sh"), []byte(tt.script+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				command = []string{"/bin/sh", "evaluate.sh"}
			}
			md := modelDir(t, linear())
			if tt.modelDir != nil {
				md = tt.modelDir(t)
			}
			out := t.TempDir()
			if tt.prefill {
				if err := os.WriteFile(filepath.Join(out, "stale"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := evaluate.External(context.Background(), evaluate.ExternalInput{
				Command: command, Dir: project, ModelDir: md, Test: synthetic(3), OutDir: out,
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("External: %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q lacks %q", err, tt.wantMsg)
			}
		})
	}
}

func noModelDir(t *testing.T) string { return filepath.Join(t.TempDir(), "model") }

func modelFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "model")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The evaluator sees only test.csv, and the model directory by absolute path.
func TestExternalEnvironment(t *testing.T) {
	project := t.TempDir()
	script := `ls "$MODELCI_DATA" > "$MODELCI_OUT/seen"; cat "$MODELCI_MODEL/model.json" >/dev/null || exit 9
echo '{"per_example_loss":[0,0,0]}' > "$MODELCI_OUT/predictions.json"
`
	if err := os.WriteFile(filepath.Join(project, "evaluate.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	got, err := evaluate.External(context.Background(), evaluate.ExternalInput{
		Command: []string{"/bin/sh", "evaluate.sh"}, Dir: project,
		ModelDir: modelDir(t, linear()), Test: synthetic(3), OutDir: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []float64{0, 0, 0}) {
		t.Errorf("losses %v", got)
	}
	seen, err := os.ReadFile(filepath.Join(out, "seen"))
	if err != nil {
		t.Fatal(err)
	}
	if string(seen) != "test.csv\n" {
		t.Errorf("MODELCI_DATA holds %q, want only test.csv", seen)
	}
}

func TestMean(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{1, 2, 3, 4}, 2.5},
		{[]float64{7}, 7},
	}
	for _, tt := range tests {
		if got := evaluate.Mean(tt.in); got != tt.want {
			t.Errorf("Mean(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := evaluate.Mean(nil); !math.IsNaN(got) {
		t.Errorf("Mean(nil) = %v, want NaN", got)
	}
}

func TestReadScores(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []float64
		err       error
	}{
		{"losses only", `{"per_example_loss": [1, 4]}`, nil, nil},
		{"with predictions", `{"per_example_loss": [1, 4], "predictions": [150.5, 98]}`, []float64{150.5, 98}, nil},
		{"a prediction short", `{"per_example_loss": [1, 4], "predictions": [150.5]}`, nil, evaluate.ErrLossCount},
		{"a NaN prediction", `{"per_example_loss": [1, 4], "predictions": [NaN, 98]}`, nil, evaluate.ErrBadPredictions},
		{"predictions not numbers", `{"per_example_loss": [1, 4], "predictions": ["a", "b"]}`, nil, evaluate.ErrBadPredictions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "predictions.json")
			if err := os.WriteFile(p, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := evaluate.ReadScores(p, 2)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ReadScores: %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(s.Loss, []float64{1, 4}) || !slices.Equal(s.Predictions, tc.want) {
				t.Fatalf("ReadScores = %+v, %v", s, err)
			}
		})
	}
}
