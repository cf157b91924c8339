package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/modelci/modelci/modelgate"
)

// gate decides on the metrics against the policy and the baseline, and
// writes gate.json, gate.md and the plots.
func (r *run) gate(ctx context.Context) (string, error) {
	baseline, err := r.baseline(ctx, r.metrics)
	if err != nil {
		return "", err
	}
	r.report, err = modelgate.Evaluate(r.spec.Gate, r.metrics, baseline)
	if err != nil {
		return "", err
	}
	if err := r.writeReports(r.report, r.metrics, baseline); err != nil {
		return "", err
	}
	return gateSummary(r.report), nil
}

// Plots is what writeReports draws in the run directory, each as .svg and
// .png: the loss (train curve, eval loss with its interval, threshold,
// champion), the per-example losses (candidate and champion), and, when
// the evaluator gave predictions, predicted against actual.
var Plots = []string{"loss", "losses", "predictions"}

// writeReports writes gate.json, gate.md and the plots; champion is the
// baseline's metrics (nil without one).
func (r *run) writeReports(report *modelgate.Report, m, champion *modelgate.Metrics) error {
	b, err := report.JSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.tmp, "gate.json"), b, 0o644); err != nil {
		return err
	}
	r.rec.Outputs.Gate = Artifact{Path: "gate.json", Digest: DigestBytes(b)}
	if err := os.WriteFile(filepath.Join(r.tmp, "gate.md"), []byte(report.Markdown()), 0o644); err != nil {
		return err
	}
	opts := []modelgate.PlotOption{modelgate.WithModel(r.spec.Model.Name, r.spec.Model.Version)}
	if champion != nil {
		opts = append(opts, modelgate.WithChampion(champion))
	}
	plots := map[string]func(format string) ([]byte, error){
		"loss":   func(f string) ([]byte, error) { return modelgate.PlotLoss(m, report, f, opts...) },
		"losses": func(f string) ([]byte, error) { return modelgate.PlotPerExampleLoss(m, report, f, opts...) },
	}
	if r.testSet != nil && len(r.predictions) > 0 && len(r.predictions) == r.testSet.Rows() {
		plots["predictions"] = func(f string) ([]byte, error) {
			return modelgate.PlotPredictions(r.predictions, r.testSet.Y, report, f, opts...)
		}
	}
	for _, name := range Plots {
		draw, ok := plots[name]
		if !ok {
			continue
		}
		for _, format := range []string{"svg", "png"} {
			plot, err := draw(format)
			if errors.Is(err, modelgate.ErrNonFinite) {
				// A diverged model: the gate says so; a plot of nothing helps no one.
				r.warnf("warning: %s.%s not drawn: %v", name, format, err)
				break
			}
			if err != nil {
				return fmt.Errorf("%s.%s: %w", name, format, err)
			}
			if err := os.WriteFile(filepath.Join(r.tmp, name+"."+format), plot, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// baseline finds the champion's metrics: gate.baseline.metrics when set,
// the champion of gate.baseline.from's environment, else the last passing
// run in the output directory on the same test split. A failed run is
// never a baseline, not even one it named by path.
func (r *run) baseline(ctx context.Context, candidate *modelgate.Metrics) (*modelgate.Metrics, error) {
	if r.spec.Gate.Baseline.From != "" {
		return r.championBaseline(ctx, candidate, r.testSet)
	}
	if p := r.spec.Gate.Baseline.Metrics; p != "" {
		path := r.spec.Path(p)
		// A file of a failed run's record is no baseline.
		if id := runOf(r.out, path); id != "" {
			if rec, err := ReadRecord(r.out, id); err == nil && rec.Status == StatusFailed {
				return nil, fmt.Errorf("gate.baseline.metrics %s: run %s: %w (%s: %s)", p, id, ErrFailedRun, rec.FailedStage, rec.Error)
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("gate.baseline.metrics: %w", err)
		}
		m, err := modelgate.DecodeMetrics(b)
		if err != nil {
			return nil, fmt.Errorf("gate.baseline.metrics %s: %w", p, err)
		}
		r.rec.Inputs.Baseline = &BaselineInput{Source: p, Digest: DigestBytes(b)}
		return m, nil
	}
	ids, err := ListRuns(r.out)
	if err != nil {
		return nil, err
	}
	for i := len(ids) - 1; i >= 0; i-- {
		rec, err := ReadRecord(r.out, ids[i])
		if err != nil || rec.Status != StatusSucceeded || rec.Verdict != modelgate.Pass || rec.Model.Name != r.spec.Model.Name {
			continue
		}
		if rec.Inputs.Split.TestDigest != candidate.Split.TestDigest {
			r.warnf("warning: last passing run %s used another test split; no baseline comparison", ids[i])
			return nil, nil
		}
		b, err := os.ReadFile(filepath.Join(RunsDir(r.out), ids[i], "metrics.json"))
		if err != nil {
			return nil, fmt.Errorf("baseline run %s: %w", ids[i], err)
		}
		m, err := modelgate.DecodeMetrics(b)
		if err != nil {
			return nil, fmt.Errorf("baseline run %s: %w", ids[i], err)
		}
		r.rec.Inputs.Baseline = &BaselineInput{Source: "run:" + ids[i], Digest: DigestBytes(b)}
		return m, nil
	}
	return nil, nil
}

// runOf is the id of the run whose directory under output's runs/ holds
// path, or "".
func runOf(output, path string) string {
	rel, err := filepath.Rel(RunsDir(output), path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return ""
	}
	id, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	return id
}

// gateSummary is the gate's progress line: the verdict, the threshold
// check's interval, and how many checks passed.
func gateSummary(r *modelgate.Report) string {
	var b strings.Builder
	b.WriteString(string(r.Verdict))
	passed := 0
	for _, c := range r.Checks {
		if c.Verdict == modelgate.Pass {
			passed++
		}
		if c.Name == modelgate.CheckThreshold && c.Estimate != nil {
			fmt.Fprintf(&b, ", %s %s", r.Metric, num(*c.Estimate))
			if c.Lower != nil && c.Upper != nil {
				fmt.Fprintf(&b, " (%g%% CI %s–%s)", c.Confidence*100, num(*c.Lower), num(*c.Upper))
			}
			if c.Threshold != nil {
				op := "≤"
				if r.Direction == "maximize" {
					op = "≥"
				}
				fmt.Fprintf(&b, " vs %s %s", op, num(*c.Threshold))
			}
		}
	}
	fmt.Fprintf(&b, ", %d/%d checks pass", passed, len(r.Checks))
	return b.String()
}
