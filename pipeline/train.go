package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/serve"
	"github.com/modelci/modelci/stages/train"
)

// train fits the model on the training rows into <tmp>/model: the built-in
// trainer in process, or the spec's command under trainer contract v1.
func (r *run) train(ctx context.Context) (string, error) {
	spec := r.spec
	r.modelDir = filepath.Join(r.tmp, "model")
	if spec.Train.OnCluster() {
		res, err := r.trainOnCluster(ctx)
		if err != nil {
			return "", err
		}
		if err := r.keepTrained(res); err != nil {
			return "", err
		}
	} else if spec.Train.Builtin != "" {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if d := spec.Train.TimeoutDuration(); d > 0 {
			tctx, cancel = context.WithTimeout(ctx, d)
		}
		res, err := train.Builtin(tctx, r.trainSet, spec.Train.Linear, *spec.Data.Seed)
		cancel()
		if err != nil && train.TimedOut(ctx, tctx) {
			return "", fmt.Errorf("built-in trainer: %w: train.timeout %s reached", train.ErrTimeout, spec.Train.TimeoutDuration())
		}
		if err != nil {
			return "", err
		}
		r.linear, r.trainLoss = res.Model, res.Loss
		r.linear.Name, r.linear.Version = spec.Model.Name, spec.Model.Version
		b, err := r.linear.Encode()
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(r.modelDir, 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(r.modelDir, model.FileName), b, 0o644); err != nil {
			return "", err
		}
	} else {
		exclude, dataset := r.leftOut()
		file := ""
		if spec.Train.Format != "" {
			var err error
			if file, err = model.FormatFile(spec.Train.Format); err != nil {
				return "", err
			}
		}
		res, err := train.External(ctx, train.ExternalInput{
			ModelFile: file,
			Command:   spec.Train.Command, Dir: spec.Dir, Workdir: spec.Train.Workdir, Env: spec.Train.Env,
			Exclude: exclude, Dataset: dataset,
			Train: r.trainSet, Params: spec.Train.Params,
			Seed: *spec.Data.Seed, OutDir: filepath.Join(r.tmp, "train"), Log: r.o.log,
			Timeout: spec.Train.TimeoutDuration(),
		})
		if err != nil {
			return "", err
		}
		if err := r.keepTrained(res); err != nil {
			return "", err
		}
	}
	d, err := DigestTree(r.modelDir)
	if err != nil {
		return "", err
	}
	size, err := treeSize(r.modelDir)
	if err != nil {
		return "", fmt.Errorf("model directory: %w", err)
	}
	last := r.trainLoss[len(r.trainLoss)-1]
	r.rec.Outputs.Model = ModelOutput{Path: "model", Digest: d, Size: size}
	r.rec.Figures.Epochs = len(r.trainLoss)
	r.rec.Figures.FinalTrainLoss = last
	return fmt.Sprintf("%d epochs, final loss %s", len(r.trainLoss), num(last)), nil
}

// keepTrained takes the model an external trainer (here or on a cluster)
// left: moved to the run's model directory, the built-in model decoded for
// the evaluation, an ONNX model's facts recorded.
func (r *run) keepTrained(res *train.ExternalResult) error {
	if err := os.Rename(res.ModelDir, r.modelDir); err != nil {
		return fmt.Errorf("keep trained model: %w", err)
	}
	r.trainLoss = res.Loss
	switch r.spec.Train.Format {
	case model.FormatONNX:
		return r.onnxInfo()
	case model.FormatLinear:
		if r.spec.Train.Builtin == "" {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(r.modelDir, model.FileName))
		if err != nil {
			return fmt.Errorf("trained model: %w", err)
		}
		if r.linear, err = model.Decode(b); err != nil {
			return fmt.Errorf("trained model %s: %w", model.FileName, err)
		}
		if r.linear.Name != r.spec.Model.Name || r.linear.Version != r.spec.Model.Version {
			return fmt.Errorf("trained model %s names %s %s, not %s %s", model.FileName, r.linear.Name, r.linear.Version, r.spec.Model.Name, r.spec.Model.Version)
		}
	}
	return nil
}

// leftOut is what the staging copy of the project, where an external
// trainer or evaluator runs, leaves out besides the fixed rules (data files,
// keys, .git): the output directory (the run's and the spec's) and the
// signing key by path, and the data set by content, under any name.
func (r *run) leftOut() (exclude []string, dataset string) {
	sp := r.spec
	exclude = []string{sp.Path(sp.Output)}
	for _, p := range []string{r.out, sp.Sign.Key} { // r.out is empty outside a run (ChampionBaseline)
		if p != "" {
			exclude = append(exclude, p)
		}
	}
	return exclude, sp.Path(sp.Data.Path)
}

// onnxInfo records beside model.onnx what the runtime needs and the file
// does not say (model.ONNXInfo), then loads the model as the image's server
// will: an operator the runtime lacks is refused now, with its name, not
// when a request comes.
func (r *run) onnxInfo() error {
	sp := r.spec
	info := &model.ONNXInfo{Name: sp.Model.Name, Version: sp.Model.Version, Features: r.trainSet.Features, Target: sp.Data.Target}
	b, err := info.Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.modelDir, model.ONNXInfoFileName), b, 0o644); err != nil {
		return err
	}
	m, _, err := serve.LoadONNX(r.modelDir)
	if err != nil {
		return fmt.Errorf("train.format onnx: modelci's runtime cannot serve this model: %w", err)
	}
	r.rec.Inputs.Trainer.ONNXOps = m.Ops()
	return nil
}
