package pipeline

import (
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/evaluate"
)

// MetricsInput is what metrics.json v1 is made of: the run's parameters,
// the data set and split facts, and the trainer's and evaluator's losses.
type MetricsInput struct {
	Params        map[string]any
	DatasetDigest string
	Rows          int
	TestDigest    string
	TestRows      int
	Seed          int64
	TestFraction  float64
	TrainLoss     []float64
	PerExample    []float64
}

// NewMetrics assembles metrics.json v1. `modelci run` and the Dagger
// module's evaluate step both call it, so the two write the same bytes.
func NewMetrics(in MetricsInput) *modelgate.Metrics {
	return &modelgate.Metrics{
		Schema:  modelgate.MetricsSchema,
		Train:   modelgate.TrainMetrics{Loss: in.TrainLoss},
		Eval:    modelgate.EvalMetrics{Loss: evaluate.Mean(in.PerExample), PerExample: in.PerExample},
		Params:  in.Params,
		Dataset: modelgate.DatasetInfo{Digest: in.DatasetDigest, Rows: in.Rows},
		Split: modelgate.SplitInfo{TestDigest: in.TestDigest, TestRows: in.TestRows,
			Seed: in.Seed, TestFraction: in.TestFraction},
	}
}
