package modelgate_test

import (
	"bytes"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

// svgPaths are the SVG's paths with the given style fragment, each as the
// numbers of its d attribute.
func svgPaths(svg []byte, style string) [][]float64 {
	var out [][]float64
	num := regexp.MustCompile(`-?[0-9]+(?:\.[0-9]+)?`)
	for _, m := range regexp.MustCompile(`<path d="([^"]*)" style="([^"]*)"`).FindAllSubmatch(svg, -1) {
		if !strings.Contains(string(m[2]), style) {
			continue
		}
		var ns []float64
		for _, n := range num.FindAll(m[1], -1) {
			f, _ := strconv.ParseFloat(string(n), 64)
			ns = append(ns, f)
		}
		out = append(out, ns)
	}
	return out
}

// yRange is the lowest and highest y of a path's points (x, y pairs).
func yRange(ns []float64) (lo, hi float64) {
	lo, hi = ns[1], ns[1]
	for i := 3; i < len(ns); i += 2 {
		lo, hi = min(lo, ns[i]), max(hi, ns[i])
	}
	return lo, hi
}

// The plot's colours, as gonum's SVG writes them.
const (
	bandStyle      = "fill:#FF7E0D;fill-opacity:0.25" // the interval, orange at a quarter
	evalStyle      = "stroke:#FF7F0E;stroke-width:1.5"
	thresholdStyle = "stroke:#D62728;stroke-width:1.5;stroke-dasharray:6,3"
	championStyle  = "stroke:#2CA02C;stroke-width:1.5;stroke-dasharray"
)

// TestPlotLoss: the loss plot's title names the model, version and
// verdict; the eval loss lies inside its interval, drawn as a band, and
// the threshold above it (a PASS under minimize); the champion's eval loss
// is drawn when there is one. SVG's y grows upwards here (gonum flips it).
func TestPlotLoss(t *testing.T) {
	champion := diabetes(t)
	m := scaled(champion, 1.01)
	r, err := modelgate.Evaluate(policy(5000), m, champion)
	if err != nil {
		t.Fatal(err)
	}
	opts := []modelgate.PlotOption{modelgate.WithModel("diabetes", "1.0.0"), modelgate.WithChampion(champion)}
	svg, err := modelgate.PlotLoss(m, r, "svg", opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", ">diabetes 1.0.0: gate PASS — loss</text>", ">threshold 5000 (PASS)</text>", ">95% t interval [2438, 4160]</text>",
		">eval loss 3299 (88 test rows)</text>", ">champion eval loss 3266</text>", ">train loss</text>"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the SVG lacks %q", want)
		}
	}
	// Each drawn once on the plot and once in the legend (the band's
	// thumbnail is a box).
	bands, evals, thresholds, champions := svgPaths(svg, bandStyle), svgPaths(svg, evalStyle), svgPaths(svg, thresholdStyle), svgPaths(svg, championStyle)
	if len(bands) != 2 || len(evals) != 2 || len(thresholds) != 2 || len(champions) != 2 {
		t.Fatalf("paths: %d bands, %d eval lines, %d thresholds, %d champion lines; want 2 of each", len(bands), len(evals), len(thresholds), len(champions))
	}
	lower, upper := yRange(bands[0])
	_, eval := yRange(evals[0])
	_, threshold := yRange(thresholds[0])
	_, champ := yRange(champions[0])
	if !(lower < eval && eval < upper && upper < threshold) || !(lower < champ && champ < eval) {
		t.Errorf("band %v–%v, eval %v, champion %v, threshold %v: want the eval and champion losses in the band, the champion's below, the threshold above", lower, upper, eval, champ, threshold)
	}

	png, err := modelgate.PlotLoss(m, r, "png", opts...)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("png: %v", err)
	}
	again, err := modelgate.PlotLoss(m, r, "svg", opts...)
	if err != nil || !bytes.Equal(again, svg) {
		t.Errorf("the same plot twice differs (%v)", err)
	}
	// Without a champion or a name: no champion line, the verdict alone.
	alone, err := modelgate.Evaluate(policy(5000), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	svg, err = modelgate.PlotLoss(m, alone, "svg")
	if err != nil || len(svgPaths(svg, championStyle)) != 0 || !bytes.Contains(svg, []byte(">gate PASS — loss</text>")) {
		t.Errorf("a plot without a champion: %v", err)
	}
	if _, err := modelgate.PlotLoss(m, r, "pdf"); !errors.Is(err, modelgate.ErrPlotFormat) {
		t.Errorf("pdf: %v, want ErrPlotFormat", err)
	}
	empty := *m
	empty.Train.Loss = nil
	if _, err := modelgate.PlotLoss(&empty, r, "png"); !errors.Is(err, modelgate.ErrEmptyTrainLoss) {
		t.Errorf("no train loss: %v, want ErrEmptyTrainLoss", err)
	}
}

// TestPlotPerExampleLoss: the candidate's per-example losses and the
// champion's, as step curves from 0 to 1, with their means.
func TestPlotPerExampleLoss(t *testing.T) {
	champion := diabetes(t)
	m := scaled(champion, 1.01)
	r, err := modelgate.Evaluate(policy(5000), m, champion)
	if err != nil {
		t.Fatal(err)
	}
	svg, err := modelgate.PlotPerExampleLoss(m, r, "svg", modelgate.WithModel("diabetes", "1.0.0"), modelgate.WithChampion(champion))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{">diabetes 1.0.0: gate PASS — per-example eval loss (88 test rows)</text>", ">candidate (88 rows)</text>", ">champion (88 rows)</text>",
		">candidate mean 3299</text>", ">champion mean 3266</text>", ">loss (log scale)</text>"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the SVG lacks %q", want)
		}
	}
	// The candidate's ECDF: 88 steps (two segments each) and its start.
	curves := svgPaths(svg, "stroke:#1F77B4;stroke-width:1.5") // the curve, its mean (dashed), their legend
	if len(curves) != 4 || len(curves[0]) < 2*2*88 {
		t.Errorf("no step curve of 88 rows for the candidate: %d paths", len(curves))
	}
	if _, err := modelgate.PlotPerExampleLoss(&modelgate.Metrics{}, r, "svg"); !errors.Is(err, modelgate.ErrEmptyPerExample) {
		t.Errorf("no per-example losses: %v, want ErrEmptyPerExample", err)
	}
	if png, err := modelgate.PlotPerExampleLoss(m, nil, "png"); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("png without a champion or a report: %v", err)
	}
}

// TestPlotPredictions: one point per test row against the line where
// predicted equals actual, with the RMSE.
func TestPlotPredictions(t *testing.T) {
	m := diabetes(t)
	r, err := modelgate.Evaluate(policy(5000), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	actual := []float64{100, 150, 200, 250}
	predicted := []float64{110, 140, 200, 250} // errors 10, -10, 0, 0: RMSE √50
	svg, err := modelgate.PlotPredictions(predicted, actual, r, "svg", modelgate.WithModel("diabetes", "1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{">diabetes 1.0.0: gate PASS — predicted vs actual (4 test rows)</text>", ">test rows (RMSE 7.071)</text>", ">predicted = actual</text>", ">actual</text>", ">predicted</text>"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("the SVG lacks %q", want)
		}
	}
	if _, err := modelgate.PlotPredictions(predicted[:3], actual, r, "svg"); !errors.Is(err, modelgate.ErrLengthMismatch) {
		t.Errorf("3 predictions for 4 targets: %v, want ErrLengthMismatch", err)
	}
}
