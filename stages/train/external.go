package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/internal/proc"
)

// Errors of an external trainer run, for errors.Is.
var (
	// ErrCommandNotFound: train.command names a program that does not exist.
	ErrCommandNotFound = proc.ErrNotFound
	// ErrTrainerFailed: the trainer exited non-zero; the error is an
	// *ExitError with the exit code and the end of its stderr.
	ErrTrainerFailed = proc.ErrExit
	// ErrOutDirNotEmpty: the output directory already holds files.
	ErrOutDirNotEmpty = proc.ErrOutDirNotEmpty
	// ErrNoModelDir: the trainer left no model/ directory, or an empty one.
	ErrNoModelDir = errors.New("trainer wrote no model directory")
	// ErrNoModelFile: the model directory lacks the file of train.format
	// (model.json, model.onnx).
	ErrNoModelFile = errors.New("trainer wrote no model file of train.format")
	// ErrNoTrainReport: the trainer left no train.json.
	ErrNoTrainReport = errors.New("trainer wrote no train.json")
	// ErrBadTrainReport: train.json is not {"loss": [number, …]} with at
	// least one number.
	ErrBadTrainReport = errors.New("invalid train.json")
	// ErrNonFiniteLoss: a loss in train.json is NaN or infinite.
	ErrNonFiniteLoss = errors.New("training loss is not finite")
	// ErrSecretEnv: train.env (or evaluate.env) names a secret modelci
	// uses, or another MODELCI_* variable (CheckPassEnv).
	ErrSecretEnv = proc.ErrSecretEnv
	// ErrEnvName: train.env (or evaluate.env) holds something that is not
	// a variable name.
	ErrEnvName = proc.ErrEnvName
	// ErrProjectTooLarge: the project's files to stage are over
	// proc.MaxStageBytes (1 GiB); train.workdir runs in place instead.
	ErrProjectTooLarge = proc.ErrProjectTooLarge
	// ErrTimeout: training ran past train.timeout; an external trainer was
	// killed with its process group.
	ErrTimeout = errors.New("training timed out")
)

// CheckPassEnv says whether a name in train.env or evaluate.env may be
// passed through to a trainer or evaluator: an error wrapping ErrSecretEnv
// for the secrets modelci uses (stages/internal/proc.SecretEnv, the one
// list) and every other MODELCI_* name, ErrEnvName for a malformed name.
func CheckPassEnv(name string) error { return proc.CheckPassEnv(name) }

// ExitError is a trainer's non-zero exit: its code and the last lines of
// its stderr.
type ExitError = proc.ExitError

// Names of trainer contract v1.
const (
	EnvData      = "MODELCI_DATA"
	EnvOut       = "MODELCI_OUT"
	EnvParams    = "MODELCI_PARAMS"
	EnvSeed      = "MODELCI_SEED"
	TrainCSV     = "train.csv"
	ModelDirName = "model"
	TrainReport  = "train.json"
)

// ExternalInput is one external trainer run.
type ExternalInput struct {
	// Command is the spec's train.command: program and arguments.
	Command []string
	// Dir is the project directory. The trainer runs in a fresh staging
	// directory holding a copy of its files, removed afterwards, without
	// data files (*.csv, *.tsv, *.parquet), keys (*.key, *.pem), .git,
	// Exclude, and any file with Dataset's bytes; unless Workdir is set.
	Dir string
	// Workdir, when set, is where the trainer runs, in place and unstaged
	// (train.workdir, the escape hatch); Dir is then not copied.
	Workdir string
	// Exclude are files and directories of Dir left out of the staging
	// copy: the output directory, the signing key.
	Exclude []string
	// Dataset is the data set file: the staging copy leaves out every file
	// with its bytes, whatever its name.
	Dataset string
	// Env names variables passed through from modelci's environment
	// (train.env). The trainer's environment is otherwise PATH, a fresh
	// HOME and TMPDIR, LANG and the contract's variables only.
	Env []string
	// Train is the training split, the only rows the trainer sees.
	Train *data.Dataset
	// Params is the spec's train.params, passed as JSON.
	Params map[string]any
	Seed   int64
	// OutDir receives model/ and train.json; it is created when missing
	// and must be empty.
	OutDir string
	// ModelFile, when set, is the file model/ must hold (train.format's:
	// model.json, model.onnx), checked before anything evaluates it.
	ModelFile string
	// Log receives the trainer's stdout and stderr; nil discards them.
	Log io.Writer
	// Timeout, when positive, is how long the trainer may run (train.timeout):
	// at the deadline it is killed with its process group, and External
	// returns an error wrapping ErrTimeout.
	Timeout time.Duration
}

// ExternalResult is what a successful trainer left behind.
type ExternalResult struct {
	// ModelDir is the absolute path of $MODELCI_OUT/model.
	ModelDir string
	// Loss is train.json's per-epoch loss.
	Loss []float64
}

// External runs a trainer under trainer contract v1 and checks what it
// wrote: a non-empty model/ directory and a train.json with at least one
// loss, all finite.
func External(ctx context.Context, in ExternalInput) (*ExternalResult, error) {
	if in.Train == nil {
		return nil, fmt.Errorf("external trainer: %w", ErrNoData)
	}
	if err := in.Train.Validate(); err != nil {
		return nil, fmt.Errorf("external trainer: %w", err)
	}
	out, err := proc.EmptyDir(in.OutDir)
	if err != nil {
		return nil, fmt.Errorf("external trainer: %w", err)
	}
	params := in.Params
	if params == nil {
		params = map[string]any{} // "{}", not "null", for trainers that index it
	}
	pj, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("external trainer: encode params: %w", err)
	}

	dataDir, err := os.MkdirTemp("", "modelci-train-")
	if err != nil {
		return nil, fmt.Errorf("external trainer: %w", err)
	}
	defer os.RemoveAll(dataDir)
	if err := proc.WriteCSV(filepath.Join(dataDir, TrainCSV), in.Train); err != nil {
		return nil, fmt.Errorf("external trainer: %w", err)
	}

	var dataset []string
	if in.Dataset != "" {
		dataset = []string{in.Dataset}
	}
	runCtx, cancel := withTimeout(ctx, in.Timeout)
	defer cancel()
	err = proc.Run(runCtx, proc.Cmd{
		Argv:           in.Command,
		Project:        in.Dir,
		Workdir:        in.Workdir,
		Exclude:        in.Exclude,
		ExcludeContent: dataset,
		SetEnv: []string{
			EnvData + "=" + dataDir,
			EnvOut + "=" + out,
			EnvParams + "=" + string(pj),
			EnvSeed + "=" + strconv.FormatInt(in.Seed, 10),
		},
		PassEnv: in.Env,
		Log:     in.Log,
	})
	if err != nil && TimedOut(ctx, runCtx) {
		return nil, fmt.Errorf("external trainer %q: %w: train.timeout %s reached; it was killed with its process group", in.Command[0], ErrTimeout, in.Timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("external trainer: %w", err)
	}

	return CheckOutput(out, in.ModelFile)
}

// CheckOutput checks what a trainer left in out under trainer contract v1
// (a non-empty model/ directory, holding modelFile when set, and a
// train.json with at least one loss, all finite), wherever it ran: here,
// or in a Job on a cluster whose output modelci pulled.
func CheckOutput(out, modelFile string) (*ExternalResult, error) {
	modelDir := filepath.Join(out, ModelDirName)
	entries, err := os.ReadDir(modelDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("external trainer: %s does not exist: %w", modelDir, ErrNoModelDir)
	case err != nil:
		return nil, fmt.Errorf("external trainer: %s is not a readable directory: %w: %w", modelDir, ErrNoModelDir, err)
	case len(entries) == 0:
		return nil, fmt.Errorf("external trainer: %s is empty: %w", modelDir, ErrNoModelDir)
	}
	if modelFile != "" {
		if fi, err := os.Stat(filepath.Join(modelDir, modelFile)); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("external trainer: %s holds no file %s: %w", modelDir, modelFile, ErrNoModelFile)
		}
	}
	loss, err := ReadTrainReport(filepath.Join(out, TrainReport))
	if err != nil {
		return nil, fmt.Errorf("external trainer: %w", err)
	}
	return &ExternalResult{ModelDir: modelDir, Loss: loss}, nil
}

// Stage copies the project in dir into dst as an external trainer's
// staging directory holds it (ExternalInput.Dir: without data files, keys,
// .git, exclude, and any file with dataset's bytes): what a Job on a
// cluster gets as its source.
func Stage(dir, dst string, exclude []string, dataset string, log io.Writer) error {
	var content []string
	if dataset != "" {
		content = []string{dataset}
	}
	if log == nil {
		log = io.Discard
	}
	return proc.Stage(dir, dst, exclude, content, log)
}

// withTimeout is ctx with a deadline d from now; ctx itself when d is not
// positive.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// TimedOut says whether run, derived from parent with a timeout, ended at
// its deadline while parent is still live: a timeout, not a cancellation.
func TimedOut(parent, run context.Context) bool {
	return parent.Err() == nil && errors.Is(run.Err(), context.DeadlineExceeded)
}

// ReadTrainReport reads a trainer's train.json (trainer contract v1): at
// least one loss, every one finite. The Dagger module's steps read it here
// too, so a trainer in a container is held to the same contract.
func ReadTrainReport(path string) ([]float64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: %w", path, ErrNoTrainReport)
	}
	if err != nil {
		return nil, err
	}
	loss, err := proc.DecodeFloats(b, "loss")
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrBadTrainReport, err)
	}
	if len(loss) == 0 {
		return nil, fmt.Errorf("%s: no loss values: %w", path, ErrBadTrainReport)
	}
	for i, v := range loss {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%s: loss[%d] is %v: %w", path, i, v, ErrNonFiniteLoss)
		}
	}
	return loss, nil
}
