package modelgate

import (
	"bytes"
	"fmt"
	"image/color"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// PlotLoss draws the training loss per epoch, the eval loss and, when r
// has a threshold check, the gate threshold and the eval loss's interval,
// as "png" or "svg".
func PlotLoss(m *Metrics, r *Report, format string) ([]byte, error) {
	if format != "png" && format != "svg" {
		return nil, fmt.Errorf("plot: format %q: %w", format, ErrPlotFormat)
	}
	if m == nil || len(m.Train.Loss) == 0 {
		return nil, fmt.Errorf("plot: train.loss: %w", ErrEmptyTrainLoss)
	}
	p := plot.New()
	p.Title.Text = "loss"
	p.X.Label.Text = "epoch"
	p.Y.Label.Text = "loss"
	p.Legend.Top = true

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
	tl, err := plotter.NewLine(train)
	if err != nil {
		return nil, fmt.Errorf("plot: train loss: %w", err)
	}
	tl.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	tl.Width = vg.Points(1.5)
	p.Add(tl)
	p.Legend.Add("train loss", tl)

	hline := func(y float64, c color.Color, dashes []vg.Length, label string) error {
		l, err := plotter.NewLine(plotter.XYs{{X: 1, Y: y}, {X: last, Y: y}})
		if err != nil {
			return fmt.Errorf("plot: %s: %w", label, err)
		}
		l.Color, l.Dashes, l.Width = c, dashes, vg.Points(1.5)
		p.Add(l)
		if label != "" {
			p.Legend.Add(label, l)
		}
		return nil
	}
	if finite(m.Eval.Loss) {
		if err := hline(m.Eval.Loss, color.RGBA{R: 255, G: 127, B: 14, A: 255}, nil, fmt.Sprintf("eval loss %s", fmtNum(m.Eval.Loss))); err != nil {
			return nil, err
		}
	}
	if r != nil {
		for _, c := range r.Checks {
			if c.Name == CheckThreshold && c.Lower != nil && c.Upper != nil {
				dot := []vg.Length{vg.Points(2), vg.Points(2)}
				orange := color.RGBA{R: 255, G: 127, B: 14, A: 255}
				label := fmt.Sprintf("%s%% %s interval", strconv.FormatFloat(c.Confidence*100, 'g', -1, 64), c.Method)
				if err := hline(*c.Lower, orange, dot, label); err != nil {
					return nil, err
				}
				if err := hline(*c.Upper, orange, dot, ""); err != nil {
					return nil, err
				}
			}
			if c.Name == CheckThreshold && c.Threshold != nil {
				dash := []vg.Length{vg.Points(6), vg.Points(3)}
				if err := hline(*c.Threshold, color.RGBA{R: 214, G: 39, B: 40, A: 255}, dash, fmt.Sprintf("threshold %s (%s)", fmtNum(*c.Threshold), c.Verdict)); err != nil {
					return nil, err
				}
			}
		}
	}
	p.Add(plotter.NewGrid())
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
