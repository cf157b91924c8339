// Package train runs the training stage: the built-in linear trainer, and
// external trainers under trainer contract v1.
package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"

	"gonum.org/v1/gonum/floats"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
)

var (
	// ErrNoData means the training split has no rows or no features.
	ErrNoData = errors.New("no training data")
	// ErrDiverged means the training loss stopped being a finite number;
	// a smaller learning rate or clip norm usually helps.
	ErrDiverged = errors.New("training diverged")
	// ErrEmptyFeature means a feature column has no value in any training
	// row, so there is nothing to learn from it or impute it with.
	ErrEmptyFeature = errors.New("feature has no value in the training split")
)

// Result is what the built-in trainer produces.
type Result struct {
	// Model has Schema, Features, Target, Columns (v2), Mean, Scale,
	// Weights and Bias set; the caller fills in Name and Version from the
	// spec.
	Model *model.Linear
	// Loss is the training MSE after each epoch, over the whole training split.
	Loss []float64
}

// Builtin fits a linear regression to train by gradient descent on the mean
// squared error, mean((ŷ−y)²):
//
//   - when every feature cell of train is a number, the inputs are the
//     features and the model is a linear/v1 document, as it always was;
//     otherwise (a text or empty cell somewhere) it is linear/v2, whose
//     inputs are: for a feature with a text cell in some training row, a
//     category feature, one input per distinct training value (numbers
//     spelled by model.CategoryKey, an empty cell as the category ""),
//     sorted, 1 for the row's value and 0 for the others; for any other
//     feature, a number feature, its value, or where empty the mean of its
//     training values (the model's impute); a feature empty in every
//     training row is an error (ErrEmptyFeature);
//   - inputs (one-hot ones too, so that every input is centred) are standardised with the training split's mean and
//     population standard deviation (a constant feature gets scale 1), and
//     the model stores both, so it takes raw features;
//   - the bias starts at mean(y), the least-squares intercept for centred
//     features, so descent only has to find the weights (its gradient starts
//     at zero) and the first epochs do not spend the clipped step on it;
//   - the gradient over weights and bias together is scaled down to
//     ClipNorm when its Euclidean norm exceeds it;
//   - epoch t steps with α_t = LearningRate / (1 + LRDecay·t);
//   - BatchSize 0 is full-batch descent, one step per epoch; otherwise the
//     rows are shuffled each epoch by a PCG seeded with seed and each batch
//     takes a step.
//
// The same inputs give bit-identical results, whatever GOMAXPROCS is. ctx is
// checked between epochs. Memory: a standardised copy of the training rows.
func Builtin(ctx context.Context, train *data.Dataset, p Params, seed int64) (*Result, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if err := train.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	n, d := train.Rows(), len(train.Features)
	if n == 0 || d == 0 {
		return nil, fmt.Errorf("train: %d rows, %d features: %w", n, d, ErrNoData)
	}

	m := &model.Linear{
		Schema:   model.Schema,
		Features: slices.Clone(train.Features),
		Target:   train.Target,
	}
	var s *state
	if train.Numeric() {
		mean, scale := standardisation(train.X, n, d)
		s = newState(make([]float64, n*d), train.Y, d, floats.Sum(train.Y)/float64(n))
		for i := range n {
			row, z := train.Row(i), s.z[i*d:(i+1)*d]
			for j, v := range row {
				z[j] = (v - mean[j]) / scale[j]
			}
		}
		m.Mean, m.Scale = mean, scale
	} else {
		cols, err := fitColumns(train)
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		m.Schema, m.Columns = model.SchemaV2, cols
		z, inputs := expand(train, cols)
		mean, scale := standardisation(z, n, inputs)
		for i := range n {
			row := z[i*inputs : (i+1)*inputs]
			for k, v := range row {
				row[k] = (v - mean[k]) / scale[k]
			}
		}
		s = newState(z, train.Y, inputs, floats.Sum(train.Y)/float64(n))
		m.Mean, m.Scale = mean, scale
	}
	defer s.close()

	loss := make([]float64, p.Epochs)
	var err error
	if p.BatchSize == 0 || p.BatchSize >= n {
		err = s.fullBatch(ctx, p, loss)
	} else {
		err = s.miniBatch(ctx, p, seed, loss)
	}
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}

	m.Weights, m.Bias = s.w, s.b
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return &Result{Model: m, Loss: loss}, nil
}

// WriteModel writes m's canonical encoding to dir/model.json, creating dir.
func WriteModel(dir string, m *model.Linear) error {
	b, err := m.Encode()
	if err != nil {
		return fmt.Errorf("write model to %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, model.FileName), b, 0o644); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	return nil
}

// fitColumns works out how each feature of train becomes inputs (see
// Builtin): its kind, and its categories or its impute.
func fitColumns(train *data.Dataset) ([]model.Column, error) {
	n := train.Rows()
	cols := make([]model.Column, len(train.Features))
	for j, name := range train.Features {
		if train.Text != nil && train.Text[j] != nil {
			seen := make(map[string]bool)
			for i := range n {
				switch kind, v, text := train.Cell(i, j); kind {
				case data.Number:
					seen[model.CategoryKey(v)] = true
				case data.Empty:
					seen[""] = true
				case data.Text:
					seen[text] = true
				}
			}
			cats := make([]string, 0, len(seen))
			for c := range seen {
				cats = append(cats, c)
			}
			slices.Sort(cats)
			cols[j] = model.Column{Kind: model.KindCategory, Categories: cats}
			continue
		}
		var sum float64
		count := 0
		for i := range n {
			if v := train.X[i*len(train.Features)+j]; !math.IsNaN(v) {
				sum += v
				count++
			}
		}
		if count == 0 {
			return nil, train.CellError(0, j, fmt.Errorf("feature %q is empty in all %d training rows: %w", name, n, ErrEmptyFeature))
		}
		impute := sum / float64(count)
		cols[j] = model.Column{Kind: model.KindNumber, Impute: &impute}
	}
	return cols, nil
}

// expand returns the training rows as inputs, row-major, before
// standardisation: numbers with missing values imputed, one-hot
// indicators for categories.
func expand(train *data.Dataset, cols []model.Column) (x []float64, inputs int) {
	for _, c := range cols {
		if c.Kind == model.KindCategory {
			inputs += len(c.Categories)
		} else {
			inputs++
		}
	}
	n := train.Rows()
	x = make([]float64, n*inputs)
	for i := range n {
		row := x[i*inputs : (i+1)*inputs]
		k := 0
		for j, c := range cols {
			kind, v, text := train.Cell(i, j)
			if c.Kind == model.KindNumber {
				if kind != data.Number {
					v = *c.Impute
				}
				row[k] = v
				k++
				continue
			}
			key := text
			if kind == data.Number {
				key = model.CategoryKey(v)
			}
			q, _ := slices.BinarySearch(c.Categories, key)
			row[k+q] = 1
			k += len(c.Categories)
		}
	}
	return x, inputs
}

// standardisation returns the mean and population standard deviation of
// each of the d columns of the n rows in x (row-major), with 1 in place of
// a zero deviation. Two passes keep the variance accurate when the mean is
// large against the spread.
func standardisation(x []float64, n, d int) (mean, scale []float64) {
	mean = make([]float64, d)
	scale = make([]float64, d)
	row := func(i int) []float64 { return x[i*d : (i+1)*d : (i+1)*d] }
	for i := range n {
		floats.Add(mean, row(i))
	}
	floats.Scale(1/float64(n), mean)
	for i := range n {
		for j, v := range row(i) {
			dv := v - mean[j]
			scale[j] += dv * dv
		}
	}
	for j := range scale {
		scale[j] = math.Sqrt(scale[j] / float64(n))
		if scale[j] == 0 {
			scale[j] = 1
		}
	}
	return mean, scale
}

// state is the trainer's working memory, allocated once so that epochs do
// not allocate.
type state struct {
	d int
	z []float64 // standardised features, row-major
	y []float64
	w []float64 // weights on standardised features
	b float64
	g []float64 // Σ r·z over the rows of the current step

	// Full passes run over fixed chunks of rows whose partial sums are added
	// in chunk order, so the result does not depend on how many goroutines
	// took part or which took which chunk.
	partial []float64 // per chunk: d sums of r·z, then Σ r², Σ r
	next    atomic.Int64
	start   chan struct{}
	done    chan struct{}
	helpers int // goroutines working on chunks besides the caller
}

// chunkRows is the rows per chunk of a full pass: large enough that a chunk
// costs far more than handing it out, small enough to balance the workers.
const chunkRows = 8192

func newState(z, y []float64, d int, bias float64) *state {
	chunks := (len(y) + chunkRows - 1) / chunkRows
	s := &state{
		d:       d,
		z:       z,
		y:       y,
		w:       make([]float64, d),
		b:       bias,
		g:       make([]float64, d),
		partial: make([]float64, chunks*(d+2)),
		helpers: min(runtime.GOMAXPROCS(0), chunks) - 1,
	}
	if s.helpers > 0 {
		// Helpers live for the whole run, so that an epoch allocates nothing.
		s.start = make(chan struct{})
		s.done = make(chan struct{})
		for range s.helpers {
			go s.help()
		}
	}
	return s
}

// close stops the helpers.
func (s *state) close() {
	if s.start != nil {
		close(s.start)
	}
}

func (s *state) help() {
	for range s.start {
		s.runChunks()
		s.done <- struct{}{}
	}
}

// runChunks takes chunks until none is left.
func (s *state) runChunks() {
	chunks := len(s.partial) / (s.d + 2)
	for {
		c := int(s.next.Add(1)) - 1
		if c >= chunks {
			return
		}
		lo, hi := c*chunkRows, min((c+1)*chunkRows, len(s.y))
		part := s.partial[c*(s.d+2) : (c+1)*(s.d+2)]
		clear(part)
		part[s.d], part[s.d+1] = s.accumulate(part[:s.d], s.z[lo*s.d:hi*s.d], s.y[lo:hi])
	}
}

// fullPass sets s.g to Σ r_i·z_i over all rows and returns Σ r_i² and Σ r_i.
func (s *state) fullPass() (sse, sumR float64) {
	s.next.Store(0)
	for range s.helpers {
		s.start <- struct{}{}
	}
	s.runChunks()
	for range s.helpers {
		<-s.done
	}
	clear(s.g)
	for c := 0; c < len(s.partial); c += s.d + 2 {
		part := s.partial[c : c+s.d+2]
		floats.Add(s.g, part[:s.d])
		sse += part[s.d]
		sumR += part[s.d+1]
	}
	return sse, sumR
}

// fullBatch runs one step per epoch. A single pass over the rows gives both
// the loss of the current parameters and the gradient of the next step.
func (s *state) fullBatch(ctx context.Context, p Params, loss []float64) error {
	n := float64(len(s.y))
	_, gb := s.fullPass()
	for t := range p.Epochs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("epoch %d: %w", t, err)
		}
		s.step(2/n, gb, p.LearningRateAt(t), p.ClipNorm)
		var sse float64
		sse, gb = s.fullPass()
		loss[t] = sse / n
		if math.IsNaN(loss[t]) || math.IsInf(loss[t], 0) {
			return fmt.Errorf("epoch %d: loss is %v: %w", t, loss[t], ErrDiverged)
		}
	}
	return nil
}

// miniBatch runs one step per batch of shuffled rows, and one pass over all
// rows after each epoch for its loss.
func (s *state) miniBatch(ctx context.Context, p Params, seed int64, loss []float64) error {
	n := len(s.y)
	src := rand.NewPCG(uint64(seed), 0)
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for t := range p.Epochs {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("epoch %d: %w", t, err)
		}
		shuffle(src, perm)
		alpha := p.LearningRateAt(t)
		for lo := 0; lo < n; lo += p.BatchSize {
			batch := perm[lo:min(lo+p.BatchSize, n)]
			clear(s.g)
			gb := s.accumulateRows(batch)
			s.step(2/float64(len(batch)), gb, alpha, p.ClipNorm)
		}
		sse, _ := s.fullPass()
		loss[t] = sse / float64(n)
		if math.IsNaN(loss[t]) || math.IsInf(loss[t], 0) {
			return fmt.Errorf("epoch %d: loss is %v: %w", t, loss[t], ErrDiverged)
		}
	}
	return nil
}

// shuffle is a Fisher–Yates shuffle drawing from src with Lemire's
// multiply-and-reject, spelled out (as data.Split does) so that training
// stays reproducible across Go releases.
func shuffle(src *rand.PCG, perm []int) {
	for i := len(perm) - 1; i > 0; i-- {
		n := uint64(i + 1)
		hi, lo := bits.Mul64(src.Uint64(), n)
		if lo < n {
			for thresh := -n % n; lo < thresh; {
				hi, lo = bits.Mul64(src.Uint64(), n)
			}
		}
		perm[i], perm[hi] = perm[hi], perm[i]
	}
}

// step moves the parameters against the gradient (scale·g, scale·gb),
// clipped to norm clip when clip > 0.
func (s *state) step(scale, gb, alpha, clip float64) {
	norm := scale * math.Sqrt(floats.Dot(s.g, s.g)+gb*gb)
	if clip > 0 && norm > clip {
		scale *= clip / norm
	}
	floats.AddScaled(s.w, -alpha*scale, s.g)
	s.b -= alpha * scale * gb
}

// accumulate adds Σ r_i·z_i to g over the rows of z (row-major) and
// returns Σ r_i² and Σ r_i, where r_i = z_i·w + b − y_i. It reads each row
// once for both products, with gonum's assembly dot and scaled-add kernels;
// a plain Go loop (its dot product waits on a single accumulator) was slower,
// and two BLAS matrix–vector calls read the rows twice (see BenchmarkEpoch).
func (s *state) accumulate(g, z, y []float64) (sse, sumR float64) {
	d := s.d
	for i, yi := range y {
		row := z[i*d : (i+1)*d : (i+1)*d]
		r := floats.Dot(row, s.w) + s.b - yi
		floats.AddScaled(g, r, row)
		sse += r * r
		sumR += r
	}
	return sse, sumR
}

// accumulateRows is accumulate over the listed rows, returning Σ r_i.
func (s *state) accumulateRows(rows []int) (sumR float64) {
	d := s.d
	for _, i := range rows {
		row := s.z[i*d : (i+1)*d : (i+1)*d]
		r := floats.Dot(row, s.w) + s.b - s.y[i]
		floats.AddScaled(s.g, r, row)
		sumR += r
	}
	return sumR
}
