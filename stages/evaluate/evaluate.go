// Package evaluate runs the evaluation stage: per-example losses on the test
// split, from the built-in model or from an external evaluator under
// evaluator contract v1.
package evaluate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"gonum.org/v1/gonum/floats"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/internal/proc"
)

var (
	// ErrNoRows: the test split is missing or has no rows.
	ErrNoRows = errors.New("test set has no rows")
	// ErrFeatureMismatch: the test split's features are not the model's,
	// in name or order.
	ErrFeatureMismatch = errors.New("test features do not match the model")

	// ErrNoModelDir: the model directory is not given, missing, or not a
	// directory.
	ErrNoModelDir = errors.New("no model directory")

	// ErrCommandNotFound: evaluate.command names a program that does not exist.
	ErrCommandNotFound = proc.ErrNotFound
	// ErrEvaluatorFailed: the evaluator exited non-zero; the error is an
	// *ExitError with the exit code and the end of its stderr.
	ErrEvaluatorFailed = proc.ErrExit
	// ErrOutDirNotEmpty: the output directory already holds files.
	ErrOutDirNotEmpty = proc.ErrOutDirNotEmpty
	// ErrNoPredictions: the evaluator left no predictions.json.
	ErrNoPredictions = errors.New("evaluator wrote no predictions.json")
	// ErrBadPredictions: predictions.json is not {"per_example_loss": [number, …]}.
	ErrBadPredictions = errors.New("invalid predictions.json")
	// ErrLossCount: predictions.json has not one loss per test row.
	ErrLossCount = errors.New("wrong number of per-example losses")
	// ErrNonFiniteLoss: a per-example loss is NaN or infinite.
	ErrNonFiniteLoss = errors.New("per-example loss is not finite")
	// ErrTimeout: the evaluator ran past evaluate.timeout and was killed
	// with its process group.
	ErrTimeout = errors.New("evaluation timed out")
)

// ExitError is an evaluator's non-zero exit: its code and the last lines of
// its stderr.
type ExitError = proc.ExitError

// Names of evaluator contract v1.
const (
	EnvModel    = "MODELCI_MODEL"
	EnvData     = "MODELCI_DATA"
	EnvOut      = "MODELCI_OUT"
	TestCSV     = "test.csv"
	Predictions = "predictions.json"
)

// Builtin returns the squared error of m on each test row, in row order.
// Rows go through the model as the server takes them (model.Process: a v2
// model imputes missing numbers and one-hot encodes categories); a cell
// the model cannot take (a category not seen in training, a missing value
// for a v1 model, text for a number feature) is an error wrapping
// model.ErrUnseenCategory, model.ErrNoImputation or model.ErrNotNumber,
// located at the cell's file:line:column when the test split was read
// from a file.
func Builtin(m *model.Linear, test *data.Dataset) ([]float64, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	if test == nil || test.Rows() == 0 {
		return nil, fmt.Errorf("evaluate: %w", ErrNoRows)
	}
	if err := test.Validate(); err != nil {
		return nil, fmt.Errorf("evaluate: %w", err)
	}
	if !slices.Equal(test.Features, m.Features) {
		return nil, fmt.Errorf("evaluate: test features %v, model features %v: %w", test.Features, m.Features, ErrFeatureMismatch)
	}
	loss := make([]float64, test.Rows())
	if m.Columns == nil && test.Numeric() {
		// A v1 model on numbers: as it always was, bit for bit.
		for i, y := range test.Y {
			r := m.Predict(test.Row(i)) - y
			loss[i] = r * r
		}
		return loss, nil
	}
	var z []float64
	var text []string
	for i, y := range test.Y {
		text = test.RowText(text, i)
		var err error
		if z, err = m.Process(z, test.Row(i), text); err != nil {
			var ce *model.CellError
			if errors.As(err, &ce) {
				err = test.CellError(i, ce.Feature, err)
			}
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		r := m.Score(z) - y
		loss[i] = r * r
	}
	return loss, nil
}

// ExternalInput is one external evaluator run.
type ExternalInput struct {
	// Command is the spec's evaluate.command: program and arguments.
	Command []string
	// Dir is the project directory, staged as for a trainer (see
	// train.ExternalInput.Dir) unless Workdir is set.
	Dir string
	// Workdir, when set, is where the evaluator runs, in place and unstaged
	// (evaluate.workdir).
	Workdir string
	// Exclude are files and directories of Dir left out of the staging
	// copy: the output directory, the signing key.
	Exclude []string
	// Dataset is the data set file: the staging copy leaves out every file
	// with its bytes, whatever its name.
	Dataset string
	// Env names variables passed through from modelci's environment
	// (evaluate.env). The evaluator's environment is otherwise PATH, a
	// fresh HOME and TMPDIR, LANG and the contract's variables only.
	Env []string
	// ModelDir is the trainer's model directory.
	ModelDir string
	// Test is the test split.
	Test *data.Dataset
	// OutDir receives predictions.json; it is created when missing and must
	// be empty. Empty means a temporary directory, removed afterwards.
	OutDir string
	// Log receives the evaluator's stdout and stderr; nil discards them.
	Log io.Writer
	// Timeout, when positive, is how long the evaluator may run
	// (evaluate.timeout): at the deadline it is killed with its process
	// group, and the error wraps ErrTimeout.
	Timeout time.Duration
}

// Scores is what an evaluator reports of the test rows, in their order: a
// loss each, and, when it writes them (evaluator contract v1's optional
// "predictions"), what the model predicted, which the smoke test compares
// with what the built image serves.
type Scores struct {
	Loss        []float64
	Predictions []float64
}

// External runs an evaluator under evaluator contract v1 and returns its
// per-example losses after checking there is one finite loss per test row.
func External(ctx context.Context, in ExternalInput) ([]float64, error) {
	s, err := ExternalScores(ctx, in)
	if err != nil {
		return nil, err
	}
	return s.Loss, nil
}

// ExternalScores is External with the evaluator's predictions, when it
// wrote them.
func ExternalScores(ctx context.Context, in ExternalInput) (*Scores, error) {
	if in.Test == nil || in.Test.Rows() == 0 {
		return nil, fmt.Errorf("external evaluator: %w", ErrNoRows)
	}
	if err := in.Test.Validate(); err != nil {
		return nil, fmt.Errorf("external evaluator: %w", err)
	}
	if in.ModelDir == "" {
		return nil, fmt.Errorf("external evaluator: %w given", ErrNoModelDir)
	}
	modelDir, err := filepath.Abs(in.ModelDir)
	if err != nil {
		return nil, fmt.Errorf("external evaluator: model directory %s: %w", in.ModelDir, err)
	}
	if fi, err := os.Stat(modelDir); err != nil {
		return nil, fmt.Errorf("external evaluator: %w: %w", ErrNoModelDir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("external evaluator: %s is not a directory: %w", modelDir, ErrNoModelDir)
	}

	outDir := in.OutDir
	if outDir == "" {
		tmp, err := os.MkdirTemp("", "modelci-evaluate-out-")
		if err != nil {
			return nil, fmt.Errorf("external evaluator: %w", err)
		}
		defer os.RemoveAll(tmp)
		outDir = tmp
	}
	out, err := proc.EmptyDir(outDir)
	if err != nil {
		return nil, fmt.Errorf("external evaluator: %w", err)
	}

	dataDir, err := os.MkdirTemp("", "modelci-evaluate-")
	if err != nil {
		return nil, fmt.Errorf("external evaluator: %w", err)
	}
	defer os.RemoveAll(dataDir)
	if err := proc.WriteCSV(filepath.Join(dataDir, TestCSV), in.Test); err != nil {
		return nil, fmt.Errorf("external evaluator: %w", err)
	}

	var dataset []string
	if in.Dataset != "" {
		dataset = []string{in.Dataset}
	}
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if in.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, in.Timeout)
	}
	defer cancel()
	err = proc.Run(runCtx, proc.Cmd{
		Argv:           in.Command,
		Project:        in.Dir,
		Workdir:        in.Workdir,
		Exclude:        in.Exclude,
		ExcludeContent: dataset,
		SetEnv:         []string{EnvModel + "=" + modelDir, EnvData + "=" + dataDir, EnvOut + "=" + out},
		PassEnv:        in.Env,
		Log:            in.Log,
	})
	if err != nil && ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("external evaluator %q: %w: evaluate.timeout %s reached; it was killed with its process group", in.Command[0], ErrTimeout, in.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("external evaluator: %w", err)
	}

	scores, err := ReadScores(filepath.Join(out, Predictions), in.Test.Rows())
	if err != nil {
		return nil, fmt.Errorf("external evaluator: %w", err)
	}
	return scores, nil
}

// ReadPredictions reads an evaluator's predictions.json (evaluator contract
// v1): one finite loss for each of rows test rows. The Dagger module's steps
// read it here too, so an evaluator in a container is held to the same
// contract.
func ReadPredictions(path string, rows int) ([]float64, error) {
	s, err := ReadScores(path, rows)
	if err != nil {
		return nil, err
	}
	return s.Loss, nil
}

// ReadScores is ReadPredictions with the optional "predictions": absent,
// or one finite number per test row.
func ReadScores(path string, rows int) (*Scores, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: %w", path, ErrNoPredictions)
	}
	if err != nil {
		return nil, err
	}
	loss, err := proc.DecodeFloats(b, "per_example_loss")
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrBadPredictions, err)
	}
	if len(loss) != rows {
		return nil, fmt.Errorf("%s has %d losses for %d test rows: %w", path, len(loss), rows, ErrLossCount)
	}
	for i, v := range loss {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: per_example_loss[%d] is %v: %w", path, i, v, ErrNonFiniteLoss)
		}
	}
	pred, err := proc.DecodeFloats(b, "predictions")
	switch {
	case errors.Is(err, proc.ErrNoKey):
		pred = nil
	case err != nil:
		return nil, fmt.Errorf("%s: %w: %w", path, ErrBadPredictions, err)
	case len(pred) != rows:
		return nil, fmt.Errorf("%s has %d predictions for %d test rows: %w", path, len(pred), rows, ErrLossCount)
	}
	for i, v := range pred {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: predictions[%d] is %v: %w: a model's predictions must be finite", path, i, v, ErrBadPredictions)
		}
	}
	return &Scores{Loss: loss, Predictions: pred}, nil
}

// Mean is the mean of xs, NaN when xs is empty.
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return floats.Sum(xs) / float64(len(xs))
}
