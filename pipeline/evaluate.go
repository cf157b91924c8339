package pipeline

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/modelci/modelci/stages/evaluate"
)

// evaluate scores the model on the test rows (built in, or the spec's
// evaluator under evaluator contract v1) and writes metrics.json.
func (r *run) evaluate(ctx context.Context) (string, error) {
	spec := r.spec
	var perExample []float64
	var err error
	if len(spec.Evaluate.Command) == 0 {
		perExample, err = evaluate.Builtin(r.linear, r.testSet)
		if err != nil {
			return "", err
		}
		r.predictions = make([]float64, r.testSet.Rows())
		var text []string
		for i := range r.predictions {
			text = r.testSet.RowText(text, i)
			if r.predictions[i], err = r.linear.PredictRow(r.testSet.Row(i), text); err != nil {
				return "", r.testSet.CellError(i, 0, err)
			}
		}
	} else if spec.Train.OnCluster() {
		scores, err := r.evaluateOnCluster(ctx)
		if err != nil {
			return "", err
		}
		perExample, r.predictions = scores.Loss, scores.Predictions
	} else {
		exclude, dataset := r.leftOut()
		scores, err := evaluate.ExternalScores(ctx, evaluate.ExternalInput{
			Command: spec.Evaluate.Command, Dir: spec.Dir, Workdir: spec.Evaluate.Workdir, Env: spec.Evaluate.Env,
			Exclude: exclude, Dataset: dataset,
			ModelDir: r.modelDir, Test: r.testSet,
			OutDir: filepath.Join(r.tmp, "evaluate"), Log: r.o.log,
			Timeout: spec.Evaluate.TimeoutDuration(),
		})
		if err != nil {
			return "", err
		}
		perExample, r.predictions = scores.Loss, scores.Predictions
	}
	r.metrics = NewMetrics(MetricsInput{
		Params: spec.Train.Params, DatasetDigest: r.rec.Inputs.Dataset.Digest, Rows: r.ds.Rows(),
		TestDigest: r.rec.Inputs.Split.TestDigest, TestRows: r.testSet.Rows(),
		Seed: *spec.Data.Seed, TestFraction: *spec.Data.TestFraction,
		TrainLoss: r.trainLoss, PerExample: perExample,
	})
	d, err := writeJSON(filepath.Join(r.tmp, "metrics.json"), r.metrics)
	if err != nil {
		return "", err
	}
	r.rec.Outputs.Metrics = Artifact{Path: "metrics.json", Digest: d}
	r.rec.Figures.EvalLoss = r.metrics.Eval.Loss
	return fmt.Sprintf("eval loss %s over %d test rows", num(r.metrics.Eval.Loss), len(perExample)), nil
}
