package modelgate

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// PlotOption adds to what a plot shows beyond the metrics and the report.
type PlotOption func(*plotConfig)

type plotConfig struct {
	name, version string
	champion      *Metrics
}

// WithModel names the model and its version in the plots' titles.
func WithModel(name, version string) PlotOption {
	return func(c *plotConfig) { c.name, c.version = name, version }
}

// WithChampion gives the champion's metrics: its eval loss on the loss plot
// (without it, the report's baseline summary's) and its per-example losses
// beside the candidate's on the per-example plot.
func WithChampion(m *Metrics) PlotOption { return func(c *plotConfig) { c.champion = m } }

func plotConfigOf(opts []PlotOption) plotConfig {
	var c plotConfig
	for _, o := range opts {
		o(&c)
	}
	return c
}

// title is "NAME VERSION: VERDICT — what", as much of it as is known.
func (c plotConfig) title(r *Report, what string) string {
	head := c.name
	if c.version != "" {
		head += " " + c.version
	}
	if r != nil && r.Verdict != "" {
		if head != "" {
			head += ": "
		}
		head += "gate " + string(r.Verdict)
	}
	if head == "" {
		return what
	}
	return head + " — " + what
}

// The plots' colours (matplotlib's tab10, which readers know).
var (
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	band   = color.NRGBA{R: 255, G: 127, B: 14, A: 64} // the interval, a quarter opaque
	green  = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	red    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	grey   = color.RGBA{R: 127, G: 127, B: 127, A: 255}
)

var (
	dashed  = []vg.Length{vg.Points(6), vg.Points(3)}
	dashDot = []vg.Length{vg.Points(6), vg.Points(2), vg.Points(1.5), vg.Points(2)}
)

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = font.Length(13)
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.ThumbnailWidth = vg.Points(24)
	p.Add(plotter.NewGrid())
	return p
}

func checkFormat(format string) error {
	if format != "png" && format != "svg" {
		return fmt.Errorf("plot: format %q: %w", format, ErrPlotFormat)
	}
	return nil
}

func render(p *plot.Plot, format string) ([]byte, error) {
	w, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, format)
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("plot: writing %s: %w", format, err)
	}
	return buf.Bytes(), nil
}

// line adds a line through xys with a legend entry (none when label is
// empty).
func line(p *plot.Plot, xys plotter.XYs, c color.Color, dashes []vg.Length, label string) (*plotter.Line, error) {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, fmt.Errorf("plot: %s: %w", label, err)
	}
	l.Color, l.Dashes, l.Width = c, dashes, vg.Points(1.5)
	p.Add(l)
	if label != "" {
		p.Legend.Add(label, l)
	}
	return l, nil
}

// thresholdOf is r's threshold check, or nil.
func thresholdOf(r *Report) *Check {
	if r == nil {
		return nil
	}
	for i, c := range r.Checks {
		if c.Name == CheckThreshold {
			return &r.Checks[i]
		}
	}
	return nil
}

// intervalLabel is "95% t interval [a, b]".
func intervalLabel(c *Check) string {
	return fmt.Sprintf("%s%% %s interval [%s, %s]", strconv.FormatFloat(c.Confidence*100, 'g', -1, 64), c.Method, FormatNumber(*c.Lower), FormatNumber(*c.Upper))
}

// PlotLoss draws, as "png" or "svg", the training loss per epoch, the
// eval loss estimate with its interval as a band (the threshold check's),
// the gate threshold, and the champion's eval loss when there is one
// (WithChampion, else the report's baseline), under a title that names the
// model, its version (WithModel) and the verdict.
func PlotLoss(m *Metrics, r *Report, format string, opts ...PlotOption) ([]byte, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	if m == nil || len(m.Train.Loss) == 0 {
		return nil, fmt.Errorf("plot: train.loss: %w", ErrEmptyTrainLoss)
	}
	cfg := plotConfigOf(opts)
	p := newPlot(cfg.title(r, "loss"), "epoch", "loss")

	train := make(plotter.XYs, 0, len(m.Train.Loss))
	for i, v := range m.Train.Loss {
		if finite(v) { // a diverged epoch is left out, not drawn off the chart
			train = append(train, plotter.XY{X: float64(i + 1), Y: v})
		}
	}
	if len(train) == 0 {
		return nil, fmt.Errorf("plot: train.loss has no finite value: %w", ErrNonFinite)
	}
	last := float64(max(len(m.Train.Loss), 2))
	across := func(y float64) plotter.XYs { return plotter.XYs{{X: 1, Y: y}, {X: last, Y: y}} }

	th := thresholdOf(r)
	if th != nil && th.Lower != nil && th.Upper != nil && finite(*th.Lower) && finite(*th.Upper) {
		b, err := plotter.NewPolygon(plotter.XYs{{X: 1, Y: *th.Lower}, {X: last, Y: *th.Lower}, {X: last, Y: *th.Upper}, {X: 1, Y: *th.Upper}})
		if err != nil {
			return nil, fmt.Errorf("plot: interval: %w", err)
		}
		b.Color, b.LineStyle.Width = band, 0
		p.Add(b)
		p.Legend.Add(intervalLabel(th), b)
	}
	if _, err := line(p, train, blue, nil, "train loss"); err != nil {
		return nil, err
	}
	if finite(m.Eval.Loss) {
		label := fmt.Sprintf("eval loss %s", FormatNumber(m.Eval.Loss))
		if n := len(m.Eval.PerExample); n > 0 {
			label += fmt.Sprintf(" (%d test rows)", n)
		}
		if _, err := line(p, across(m.Eval.Loss), orange, nil, label); err != nil {
			return nil, err
		}
	}
	champion := math.NaN()
	switch {
	case cfg.champion != nil:
		champion = cfg.champion.Eval.Loss
	case r != nil && r.Baseline != nil && r.Baseline.EvalLoss != nil:
		champion = *r.Baseline.EvalLoss
	}
	if finite(champion) {
		if _, err := line(p, across(champion), green, dashDot, fmt.Sprintf("champion eval loss %s", FormatNumber(champion))); err != nil {
			return nil, err
		}
	}
	if th != nil && th.Threshold != nil && finite(*th.Threshold) {
		if _, err := line(p, across(*th.Threshold), red, dashed, fmt.Sprintf("threshold %s (%s)", FormatNumber(*th.Threshold), th.Verdict)); err != nil {
			return nil, err
		}
	}
	return render(p, format)
}

// PlotPerExampleLoss draws the distribution of the candidate's per-example
// eval losses, and the champion's beside it (WithChampion), as empirical
// CDFs (the fraction of test rows at or below each loss) with each mean
// marked, as "png" or "svg". Losses spread over more than two orders of
// magnitude get a logarithmic axis.
func PlotPerExampleLoss(m *Metrics, r *Report, format string, opts ...PlotOption) ([]byte, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	if m == nil || len(m.Eval.PerExample) == 0 {
		return nil, fmt.Errorf("plot: eval.per_example: %w", ErrEmptyPerExample)
	}
	cfg := plotConfigOf(opts)
	type series struct {
		name   string
		losses []float64
		c      color.Color
	}
	// The champion first, so that the candidate is drawn over it.
	var all []series
	if cfg.champion != nil && len(cfg.champion.Eval.PerExample) > 0 {
		all = append(all, series{"champion", cfg.champion.Eval.PerExample, green})
	}
	all = append(all, series{"candidate", m.Eval.PerExample, blue})
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range all {
		for _, v := range s.losses {
			if finite(v) {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if !finite(lo) {
		return nil, fmt.Errorf("plot: eval.per_example has no finite value: %w", ErrNonFinite)
	}
	p := newPlot(cfg.title(r, fmt.Sprintf("per-example eval loss (%d test rows)", len(m.Eval.PerExample))), "loss", "fraction of test rows ≤ loss")
	if lo > 0 && hi/lo > 100 {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		p.X.Label.Text = "loss (log scale)"
	}
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Left = true // top left, above the curves' feet
	for _, s := range all {
		sorted := make([]float64, 0, len(s.losses))
		var sum float64
		for _, v := range s.losses {
			if finite(v) {
				sorted = append(sorted, v)
				sum += v
			}
		}
		slices.Sort(sorted)
		ecdf := make(plotter.XYs, 0, len(sorted)+1)
		ecdf = append(ecdf, plotter.XY{X: sorted[0], Y: 0})
		for i, v := range sorted {
			ecdf = append(ecdf, plotter.XY{X: v, Y: float64(i+1) / float64(len(sorted))})
		}
		l, err := line(p, ecdf, s.c, nil, fmt.Sprintf("%s (%d rows)", s.name, len(sorted)))
		if err != nil {
			return nil, err
		}
		l.StepStyle = plotter.PostStep
		mean := sum / float64(len(sorted))
		if _, err := line(p, plotter.XYs{{X: mean, Y: 0}, {X: mean, Y: 1}}, s.c, dashed, fmt.Sprintf("%s mean %s", s.name, FormatNumber(mean))); err != nil {
			return nil, err
		}
	}
	return render(p, format)
}

// PlotPredictions draws a regressor's predictions against the actual
// targets of the test rows, one point per row, with the line where they
// would be equal and the root mean squared error, as "png" or "svg".
func PlotPredictions(predicted, actual []float64, r *Report, format string, opts ...PlotOption) ([]byte, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	if len(predicted) == 0 || len(predicted) != len(actual) {
		return nil, fmt.Errorf("plot: %d predictions for %d targets: %w", len(predicted), len(actual), ErrLengthMismatch)
	}
	cfg := plotConfigOf(opts)
	pts := make(plotter.XYs, 0, len(predicted))
	lo, hi := math.Inf(1), math.Inf(-1)
	var sq float64
	for i, y := range predicted {
		a := actual[i]
		if !finite(y) || !finite(a) {
			continue
		}
		pts = append(pts, plotter.XY{X: a, Y: y})
		lo, hi = min(lo, a, y), max(hi, a, y)
		sq += (y - a) * (y - a)
	}
	if len(pts) == 0 {
		return nil, fmt.Errorf("plot: no finite prediction: %w", ErrNonFinite)
	}
	p := newPlot(cfg.title(r, fmt.Sprintf("predicted vs actual (%d test rows)", len(predicted))), "actual", "predicted")
	p.Legend.Left = true // top left: high predictions of low targets are rare
	if _, err := line(p, plotter.XYs{{X: lo, Y: lo}, {X: hi, Y: hi}}, grey, dashed, "predicted = actual"); err != nil {
		return nil, err
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, fmt.Errorf("plot: predictions: %w", err)
	}
	s.GlyphStyle = draw.GlyphStyle{Color: blue, Radius: vg.Points(2.5), Shape: draw.CircleGlyph{}}
	p.Add(s)
	p.Legend.Add(fmt.Sprintf("test rows (RMSE %s)", FormatNumber(math.Sqrt(sq/float64(len(pts))))), s)
	return render(p, format)
}
