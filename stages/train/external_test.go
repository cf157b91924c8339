package train_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/train"
)

func TestExternalPythonTrainer(t *testing.T) {
	trainSet, testSet := diabetesSplit(t)
	out := filepath.Join(t.TempDir(), "out") // created by External
	var log bytes.Buffer
	res, err := train.External(context.Background(), train.ExternalInput{
		Command: []string{"python3", "trainer.py"},
		Dir:     "testdata",
		Train:   trainSet,
		Params:  map[string]any{"epochs": 4, "learning_rate": 0.25},
		Seed:    42,
		OutDir:  out,
		Log:     &log,
	})
	if err != nil {
		t.Fatalf("External: %v\nlog:\n%s", err, log.String())
	}
	if want := filepath.Join(out, "model"); res.ModelDir != want {
		t.Errorf("ModelDir %q, want %q", res.ModelDir, want)
	}
	if len(res.Loss) != 4 {
		t.Fatalf("loss %v, want 4 epochs", res.Loss)
	}
	// Steps of 0.25·2 halve the intercept's distance to mean(y) each epoch.
	var mean float64
	for _, y := range trainSet.Y {
		mean += y
	}
	mean /= float64(trainSet.Rows())
	var variance float64
	for _, y := range trainSet.Y {
		variance += (y - mean) * (y - mean)
	}
	variance /= float64(trainSet.Rows())
	for e, got := range res.Loss {
		dist := mean * math.Pow(0.5, float64(e+1))
		if want := variance + dist*dist; math.Abs(got-want) > 1e-9*want {
			t.Errorf("loss[%d] = %v, want %v", e, got, want)
		}
	}

	b, err := os.ReadFile(filepath.Join(res.ModelDir, "intercept.json"))
	if err != nil {
		t.Fatal(err)
	}
	var seen struct {
		Header    []string       `json:"header"`
		Rows      int            `json:"rows"`
		Seed      int64          `json:"seed"`
		Params    map[string]any `json:"params"`
		DataFiles []string       `json:"data_files"`
	}
	if err := json.Unmarshal(b, &seen); err != nil {
		t.Fatal(err)
	}
	if seen.Rows != trainSet.Rows() || seen.Rows == trainSet.Rows()+testSet.Rows() {
		t.Errorf("trainer saw %d rows, want the %d training rows only", seen.Rows, trainSet.Rows())
	}
	if want := append(slices.Clone(trainSet.Features), "target"); !slices.Equal(seen.Header, want) {
		t.Errorf("header %v, want %v", seen.Header, want)
	}
	if !slices.Equal(seen.DataFiles, []string{"train.csv"}) {
		t.Errorf("MODELCI_DATA holds %v, want only train.csv", seen.DataFiles)
	}
	if seen.Seed != 42 || seen.Params["epochs"] != 4.0 || seen.Params["learning_rate"] != 0.25 {
		t.Errorf("trainer saw seed %d params %v", seen.Seed, seen.Params)
	}
	for _, want := range []string{"epoch 3: loss", "trainer done"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
}

func TestExternalFailures(t *testing.T) {
	tests := []struct {
		name    string
		script  string // run by /bin/sh in the project directory
		command []string
		prefill bool   // put a file into the output directory first
		file    string // ExternalInput.ModelFile
		wantErr error
		wantMsg string
	}{
		{name: "command not found", command: []string{"./no-such-trainer"}, wantErr: train.ErrCommandNotFound},
		{name: "program not on PATH", command: []string{"modelci-no-such-trainer"}, wantErr: train.ErrCommandNotFound},
		{name: "non-zero exit", script: `echo "CUDA out of memory" >&2; exit 7`, wantErr: train.ErrTrainerFailed, wantMsg: "CUDA out of memory"},
		{name: "no model dir", script: `echo '{"loss":[1]}' > "$MODELCI_OUT/train.json"`, wantErr: train.ErrNoModelDir},
		{name: "empty model dir", script: `mkdir "$MODELCI_OUT/model"; echo '{"loss":[1]}' > "$MODELCI_OUT/train.json"`, wantErr: train.ErrNoModelDir, wantMsg: "is empty"},
		{name: "model is a file", script: `echo w > "$MODELCI_OUT/model"; echo '{"loss":[1]}' > "$MODELCI_OUT/train.json"`, wantErr: train.ErrNoModelDir},
		{name: "no train.json", script: `mkdir "$MODELCI_OUT/model"; echo w > "$MODELCI_OUT/model/w"`, wantErr: train.ErrNoTrainReport},
		{name: "train.json not JSON", script: writeModel + `echo 'loss=1' > "$MODELCI_OUT/train.json"`, wantErr: train.ErrBadTrainReport},
		{name: "no loss key", script: writeModel + `echo '{"losses":[1]}' > "$MODELCI_OUT/train.json"`, wantErr: train.ErrBadTrainReport},
		{name: "empty loss", script: writeModel + `echo '{"loss":[]}' > "$MODELCI_OUT/train.json"`, wantErr: train.ErrBadTrainReport, wantMsg: "no loss values"},
		{name: "NaN loss", script: writeModel + `echo '{"loss":[3.5, NaN]}' > "$MODELCI_OUT/train.json"`, wantErr: train.ErrNonFiniteLoss, wantMsg: "loss[1] is NaN"},
		{name: "overflowing loss", script: writeModel + `echo '{"loss":[1e999]}' > "$MODELCI_OUT/train.json"`, wantErr: train.ErrNonFiniteLoss},
		{name: "no model file of the format", script: writeModel + `echo '{"loss":[1]}' > "$MODELCI_OUT/train.json"`, file: "model.onnx", wantErr: train.ErrNoModelFile, wantMsg: "holds no file model.onnx"},
		{name: "model file is a directory", script: writeModel + `mkdir "$MODELCI_OUT/model/model.onnx"; echo '{"loss":[1]}' > "$MODELCI_OUT/train.json"`, file: "model.onnx", wantErr: train.ErrNoModelFile},
		{name: "output dir not empty", script: writeModel + `echo '{"loss":[1]}' > "$MODELCI_OUT/train.json"`, prefill: true, wantErr: train.ErrOutDirNotEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			project := t.TempDir()
			command := tt.command
			if tt.script != "" {
				if err := os.WriteFile(filepath.Join(project, "train.sh"), []byte(tt.script+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				command = []string{"/bin/sh", "train.sh"}
			}
			out := t.TempDir()
			if tt.prefill {
				if err := os.WriteFile(filepath.Join(out, "stale"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, err := train.External(context.Background(), train.ExternalInput{
				Command: command, Dir: project, Train: line(), OutDir: out, ModelFile: tt.file,
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

// writeModel writes a one-file model directory.
const writeModel = `mkdir "$MODELCI_OUT/model" && echo w > "$MODELCI_OUT/model/w"; `

func TestExternalExitError(t *testing.T) {
	project := t.TempDir()
	script := "i=1; while [ $i -le 50 ]; do echo \"trace $i\" >&2; i=$((i+1)); done; exit 3\n"
	if err := os.WriteFile(filepath.Join(project, "train.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	_, err := train.External(context.Background(), train.ExternalInput{
		Command: []string{"/bin/sh", "train.sh"}, Dir: project, Train: line(), OutDir: t.TempDir(), Log: &log,
	})
	var exit *train.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("External: %v, want an *ExitError", err)
	}
	if exit.Code != 3 {
		t.Errorf("exit code %d, want 3", exit.Code)
	}
	if !strings.HasSuffix(exit.Stderr, "trace 50") || strings.Contains(exit.Stderr, "trace 30\n") {
		t.Errorf("stderr tail %q, want the last lines only", exit.Stderr)
	}
	if !strings.Contains(log.String(), "trace 1\n") {
		t.Errorf("the log lost the first stderr line")
	}
}

func TestExternalCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := train.External(ctx, train.ExternalInput{
		Command: []string{"/bin/sh", "-c", "exit 0"}, Train: line(), OutDir: t.TempDir(),
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("External: %v, want context.Canceled", err)
	}
}

func TestExternalNoData(t *testing.T) {
	_, err := train.External(context.Background(), train.ExternalInput{Command: []string{"true"}, OutDir: t.TempDir()})
	if !errors.Is(err, train.ErrNoData) {
		t.Fatalf("External: %v, want ErrNoData", err)
	}
	_, err = train.External(context.Background(), train.ExternalInput{
		Command: []string{"true"}, OutDir: t.TempDir(),
		Train: &data.Dataset{Features: []string{"x"}, X: []float64{1}},
	})
	if !errors.Is(err, data.ErrShape) {
		t.Fatalf("External: %v, want data.ErrShape", err)
	}
}

// No params reach the trainer as an empty object, and the seed verbatim.
func TestExternalEnvironment(t *testing.T) {
	project := t.TempDir()
	script := writeModel + `printf '%s %s' "$MODELCI_PARAMS" "$MODELCI_SEED" > "$MODELCI_OUT/model/env"
echo '{"loss":[2,1]}' > "$MODELCI_OUT/train.json"
`
	if err := os.WriteFile(filepath.Join(project, "train.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := train.External(context.Background(), train.ExternalInput{
		Command: []string{"/bin/sh", "train.sh"}, Dir: project, Train: line(), Seed: -5, OutDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Loss, []float64{2, 1}) {
		t.Errorf("loss %v, want [2 1]", res.Loss)
	}
	env, err := os.ReadFile(filepath.Join(res.ModelDir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	if string(env) != "{} -5" {
		t.Errorf("trainer saw params and seed %q, want %q", env, "{} -5")
	}
}
