package train_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/train"
)

// diabetesSplit is the bundled example's training split: test_fraction 0.2,
// seed 42, as in the example spec.
func diabetesSplit(t testing.TB) (trainSet, testSet *data.Dataset) {
	t.Helper()
	d, err := data.Load(context.Background(), filepath.Join("testdata", "diabetes.csv"), "target")
	if err != nil {
		t.Fatal(err)
	}
	trainSet, testSet, err = data.Split(d, 0.2, 42)
	if err != nil {
		t.Fatal(err)
	}
	return trainSet, testSet
}

// olsMSE solves least squares on [1, X] by QR, independently of the trainer,
// and returns the training MSE of that optimum.
func olsMSE(t testing.TB, d *data.Dataset) float64 {
	t.Helper()
	n, p := d.Rows(), len(d.Features)
	a := mat.NewDense(n, p+1, nil)
	for i := range n {
		a.Set(i, 0, 1)
		for j, v := range d.Row(i) {
			a.Set(i, j+1, v)
		}
	}
	var qr mat.QR
	qr.Factorize(a)
	var beta mat.VecDense
	if err := qr.SolveVecTo(&beta, false, mat.NewVecDense(n, slices.Clone(d.Y))); err != nil {
		t.Fatal(err)
	}
	var pred mat.VecDense
	pred.MulVec(a, &beta)
	return mse(pred.RawVector().Data, d.Y)
}

func mse(pred, y []float64) float64 {
	var s float64
	for i := range y {
		r := pred[i] - y[i]
		s += r * r
	}
	return s / float64(len(y))
}

func modelMSE(m *model.Linear, d *data.Dataset) float64 {
	pred := make([]float64, d.Rows())
	for i := range pred {
		pred[i] = m.Predict(d.Row(i))
	}
	return mse(pred, d.Y)
}

func TestBuiltinReachesLeastSquares(t *testing.T) {
	trainSet, _ := diabetesSplit(t)
	opt := olsMSE(t, trainSet)
	tests := []struct {
		name   string
		params func(*train.Params)
	}{
		{name: "defaults", params: func(*train.Params) {}},
		{name: "mini-batch", params: func(p *train.Params) { p.BatchSize = 32 }},
		{name: "one batch per epoch", params: func(p *train.Params) { p.BatchSize = 10000 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := train.DefaultParams()
			tt.params(&p)
			res, err := train.Builtin(context.Background(), trainSet, p, 7)
			if err != nil {
				t.Fatalf("Builtin: %v", err)
			}
			got := modelMSE(res.Model, trainSet)
			t.Logf("training MSE %.4f, least squares %.4f (ratio %.5f)", got, opt, got/opt)
			if got > opt*1.01 {
				t.Errorf("training MSE %v is more than 1%% above the least-squares optimum %v", got, opt)
			}
			if len(res.Loss) != p.Epochs {
				t.Fatalf("%d losses for %d epochs", len(res.Loss), p.Epochs)
			}
			// The reported last loss is the final model's training MSE.
			if last := res.Loss[len(res.Loss)-1]; math.Abs(last-got) > 1e-9*got {
				t.Errorf("last reported loss %v, model's training MSE %v", last, got)
			}
			if res.Loss[0] <= res.Loss[len(res.Loss)-1] {
				t.Errorf("loss did not fall: first %v, last %v", res.Loss[0], res.Loss[len(res.Loss)-1])
			}
		})
	}
}

func TestBuiltinDeterministic(t *testing.T) {
	trainSet, _ := diabetesSplit(t)
	for _, bs := range []int{0, 16} {
		p := train.DefaultParams()
		p.Epochs = 50
		p.BatchSize = bs
		a, err := train.Builtin(context.Background(), trainSet, p, 3)
		if err != nil {
			t.Fatal(err)
		}
		b, err := train.Builtin(context.Background(), trainSet, p, 3)
		if err != nil {
			t.Fatal(err)
		}
		if !bitsEqual(a.Loss, b.Loss) || !bitsEqual(a.Model.Weights, b.Model.Weights) ||
			math.Float64bits(a.Model.Bias) != math.Float64bits(b.Model.Bias) {
			t.Errorf("batch size %d: two runs with seed 3 differ", bs)
		}
		c, err := train.Builtin(context.Background(), trainSet, p, 4)
		if err != nil {
			t.Fatal(err)
		}
		// Full batch ignores the seed; mini-batches are shuffled by it.
		if same := bitsEqual(a.Model.Weights, c.Model.Weights); same != (bs == 0) {
			t.Errorf("batch size %d: seeds 3 and 4 give equal weights: %v", bs, same)
		}
	}
}

func bitsEqual(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
}

// line is y = 100·x on x = 1…4: the least-squares weight on the
// standardised feature is 100·std(x), and the bias is mean(y) = 250.
func line() *data.Dataset {
	return &data.Dataset{Features: []string{"x"}, Target: "y", X: []float64{1, 2, 3, 4}, Y: []float64{100, 200, 300, 400}}
}

func TestBuiltinClipsTheStep(t *testing.T) {
	ds := line()
	std := math.Sqrt(1.25)
	// The first gradient: the bias starts at its optimum, so only the weight
	// has one, −2·cov(y, z) = −2·100·std.
	gradNorm := 2 * 100 * std
	const alpha = 0.1
	tests := []struct {
		name     string
		clip     float64
		wantStep float64
	}{
		{name: "clipped", clip: 1, wantStep: alpha * 1},
		{name: "clipped harder", clip: 0.25, wantStep: alpha * 0.25},
		{name: "below the cap", clip: 1000, wantStep: alpha * gradNorm},
		{name: "off", clip: 0, wantStep: alpha * gradNorm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := train.Params{Epochs: 1, LearningRate: alpha, ClipNorm: tt.clip}
			res, err := train.Builtin(context.Background(), ds, p, 1)
			if err != nil {
				t.Fatal(err)
			}
			m := res.Model
			step := math.Hypot(m.Weights[0], m.Bias-250)
			if math.Abs(step-tt.wantStep) > 1e-12*tt.wantStep {
				t.Errorf("step norm %v, want %v", step, tt.wantStep)
			}
			if m.Weights[0] <= 0 {
				t.Errorf("weight %v moved away from the optimum", m.Weights[0])
			}
		})
	}
}

func TestLearningRateAt(t *testing.T) {
	tests := []struct {
		alpha, beta float64
		epoch       int
		want        float64
	}{
		{0.1, 0.01, 0, 0.1},
		{0.1, 0.01, 100, 0.05},
		{0.1, 0.01, 300, 0.025},
		{0.1, 0, 300, 0.1},
		{1, 1, 3, 0.25},
	}
	for _, tt := range tests {
		p := train.Params{LearningRate: tt.alpha, LRDecay: tt.beta}
		if got := p.LearningRateAt(tt.epoch); math.Abs(got-tt.want) > 1e-15 {
			t.Errorf("α₀=%v β=%v t=%d: %v, want %v", tt.alpha, tt.beta, tt.epoch, got, tt.want)
		}
	}
}

// With a clip far below every gradient, each epoch moves the weight by
// exactly α_t·clip toward the optimum, so the final weight is clip·Σα_t: the
// trainer follows the decay schedule.
func TestBuiltinFollowsDecay(t *testing.T) {
	p := train.Params{Epochs: 20, LearningRate: 0.5, LRDecay: 0.3, ClipNorm: 0.01}
	res, err := train.Builtin(context.Background(), line(), p, 1)
	if err != nil {
		t.Fatal(err)
	}
	var want float64
	for e := range p.Epochs {
		want += p.ClipNorm * 0.5 / (1 + 0.3*float64(e))
	}
	if got := res.Model.Weights[0]; math.Abs(got-want) > 1e-12 {
		t.Errorf("weight %v, want clip·Σα_t = %v", got, want)
	}
}

func TestBuiltinStandardisation(t *testing.T) {
	ds := &data.Dataset{
		Features: []string{"x", "constant"},
		Target:   "y",
		X:        []float64{1, 7, 2, 7, 3, 7, 4, 7},
		Y:        []float64{3, 5, 7, 9},
	}
	p := train.DefaultParams()
	p.ClipNorm = 0
	res, err := train.Builtin(context.Background(), ds, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Model
	if want := []float64{2.5, 7}; !slices.Equal(m.Mean, want) {
		t.Errorf("mean %v, want %v", m.Mean, want)
	}
	if want := []float64{math.Sqrt(1.25), 1}; !slices.Equal(m.Scale, want) {
		t.Errorf("scale %v, want %v (population std; 1 for a constant)", m.Scale, want)
	}
	if m.Weights[1] != 0 {
		t.Errorf("weight of the constant feature %v, want 0", m.Weights[1])
	}
	if got := m.Predict([]float64{10, 7}); math.Abs(got-21) > 1e-6 {
		t.Errorf("prediction at x=10: %v, want 21 (y = 2x + 1)", got)
	}
	if m.Schema != model.Schema || m.Target != "y" || !slices.Equal(m.Features, ds.Features) {
		t.Errorf("model header %q %q %v", m.Schema, m.Target, m.Features)
	}
}

func TestBuiltinErrors(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		ds      *data.Dataset
		params  func(*train.Params)
		wantErr error
	}{
		{name: "no rows", ds: &data.Dataset{Features: []string{"x"}, Target: "y"}, wantErr: train.ErrNoData},
		{name: "no features", ds: &data.Dataset{Target: "y", Y: []float64{1}}, wantErr: train.ErrNoData},
		{name: "bad shape", ds: &data.Dataset{Features: []string{"x"}, Target: "y", X: []float64{1}, Y: []float64{1, 2}}, wantErr: data.ErrShape},
		{name: "bad params", ds: line(), params: func(p *train.Params) { p.Epochs = 0 }, wantErr: train.ErrInvalidParams},
		{name: "canceled", ctx: canceled, ds: line(), wantErr: context.Canceled},
		// Each step multiplies the weight's error by 1 − 2·α = −19.
		{name: "diverges", ds: line(), params: func(p *train.Params) { p.ClipNorm, p.LRDecay, p.LearningRate = 0, 0, 10 }, wantErr: train.ErrDiverged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			p := train.DefaultParams()
			if tt.params != nil {
				tt.params(&p)
			}
			_, err := train.Builtin(ctx, tt.ds, p, 1)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Builtin: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestWriteModel(t *testing.T) {
	res, err := train.Builtin(context.Background(), line(), train.DefaultParams(), 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if err := train.WriteModel(dir, res.Model); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, model.FileName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bitsEqual(m.Weights, res.Model.Weights) || m.Bias != res.Model.Bias {
		t.Errorf("decoded model %+v differs from %+v", m, res.Model)
	}
}

// Full passes over many rows run on several goroutines; the sums must not
// depend on how many.
func TestBuiltinSameOnAnyProcs(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	ds := &data.Dataset{Features: []string{"a", "b", "c"}, Target: "y"}
	for range 50_000 {
		a, b, c := rng.NormFloat64(), rng.Float64(), rng.NormFloat64()*5
		ds.X = append(ds.X, a, b, c)
		ds.Y = append(ds.Y, 3*a-b+0.5*c+rng.NormFloat64())
	}
	p := train.DefaultParams()
	p.Epochs = 5
	var runs []*train.Result
	for _, procs := range []int{1, 4} {
		prev := runtime.GOMAXPROCS(procs)
		res, err := train.Builtin(context.Background(), ds, p, 1)
		runtime.GOMAXPROCS(prev)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, res)
	}
	if !bitsEqual(runs[0].Loss, runs[1].Loss) || !bitsEqual(runs[0].Model.Weights, runs[1].Model.Weights) {
		t.Errorf("GOMAXPROCS 1 and 4 differ: losses %v and %v", runs[0].Loss, runs[1].Loss)
	}
}
