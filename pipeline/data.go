package pipeline

import (
	"context"
	"fmt"

	"github.com/modelci/modelci/stages/data"
)

// data loads the data set and splits it; the trainer never sees the test rows.
func (r *run) data(ctx context.Context) (string, error) {
	spec := r.spec
	ds, err := data.Load(ctx, spec.Path(spec.Data.Path), spec.Data.Target)
	if err != nil {
		return "", err
	}
	trainSet, testSet, err := data.Split(ds, *spec.Data.TestFraction, *spec.Data.Seed)
	if err != nil {
		return "", fmt.Errorf("split %s: %w", spec.Data.Path, err)
	}
	r.ds, r.trainSet, r.testSet = ds, trainSet, testSet
	r.rec.Inputs.Dataset = DatasetInput{Path: spec.Data.Path, Digest: ds.Digest(), Rows: ds.Rows(), Features: ds.Features, Target: ds.Target}
	r.rec.Inputs.Split = SplitInput{
		Seed: *spec.Data.Seed, TestFraction: *spec.Data.TestFraction,
		TrainDigest: trainSet.Digest(), TrainRows: trainSet.Rows(),
		TestDigest: testSet.Digest(), TestRows: testSet.Rows(),
	}
	return fmt.Sprintf("%d rows × %d features, train %d / test %d, %s",
		ds.Rows(), len(ds.Features), trainSet.Rows(), testSet.Rows(), short(r.rec.Inputs.Dataset.Digest)), nil
}
