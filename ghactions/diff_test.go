package ghactions_test

import (
	"math"
	"strings"
	"testing"

	"github.com/modelci/modelci/ghactions"
	"github.com/modelci/modelci/modelgate"
)

// diffMetrics is a small metrics.json: training losses, per-example eval
// values (their mean is eval.loss), the data set and test split digests.
func diffMetrics(train []float64, perExample []float64, data, split string, params map[string]any) *modelgate.Metrics {
	m := &modelgate.Metrics{Schema: modelgate.MetricsSchema, Params: params}
	m.Train.Loss = train
	m.Eval.PerExample = perExample
	var sum float64
	for _, v := range perExample {
		sum += v
	}
	m.Eval.Loss = sum / float64(len(perExample))
	m.Dataset = modelgate.DatasetInfo{Digest: data, Rows: 5 * len(perExample)}
	m.Split = modelgate.SplitInfo{TestDigest: split, TestRows: len(perExample), Seed: 42, TestFraction: 0.2}
	return m
}

const (
	dataA  = "sha256:2c4d518bafe3aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dataB  = "sha256:9d00c0ffee00bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	splitA = "sha256:7e1a0b2c3d4eaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	splitB = "sha256:51717b00000bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestMetricsDiff(t *testing.T) {
	base := diffMetrics([]float64{40, 20, 10}, []float64{10, 20, 30, 40}, dataA, splitA, map[string]any{"epochs": 3, "learning_rate": 0.1})
	for _, tc := range []struct {
		name      string
		base      *modelgate.Metrics
		candidate *modelgate.Metrics
		direction string
		// The eval row, the final training loss row and the epochs row.
		eval, final, epochs ghactions.Trend
		evalChange, evalPct string // as the table writes them ("" not checked)
		paired              *ghactions.Paired
		params              []ghactions.ParamChange
		// Lines the Markdown must hold, and must not.
		want, notWant []string
	}{
		{
			name:      "improvement",
			base:      base,
			candidate: diffMetrics([]float64{40, 20, 10, 8}, []float64{9, 20, 25, 34}, dataA, splitA, map[string]any{"epochs": 4, "learning_rate": 0.1}),
			eval:      ghactions.Better, final: ghactions.Better, epochs: ghactions.Changed,
			evalChange: "-3", evalPct: "-12.00% better",
			paired: &ghactions.Paired{Better: 3, Worse: 0, Equal: 1},
			params: []ghactions.ParamChange{{Name: "epochs", Base: "3", Candidate: "4"}},
			want: []string{
				"| eval loss (mean) | 25 | 22 | -3 | -12.00% better |",
				"| training loss (final epoch) | 10 | 8 | -2 | -20.00% better |",
				"| epochs | 3 | 4 | +1 | +33.33% |",
				"| test rows | 4 | 4 | 0 | 0.00% |",
				"- Data set: unchanged (`sha256:2c4d518bafe3`).",
				"per example, the candidate is better on 3 of 4, worse on 0, equal on 1.",
				"| `epochs` | `3` | `4` |",
			},
			notWant: []string{"learning_rate", "No base metrics"},
		},
		{
			name:      "regression",
			base:      base,
			candidate: diffMetrics([]float64{40, 20, 12}, []float64{11, 22, 30, 45}, dataA, splitA, map[string]any{"epochs": 3, "learning_rate": 0.5}),
			eval:      ghactions.Worse, final: ghactions.Worse, epochs: ghactions.Unchanged,
			evalChange: "+2", evalPct: "+8.00% worse",
			paired: &ghactions.Paired{Better: 0, Worse: 3, Equal: 1},
			params: []ghactions.ParamChange{{Name: "learning_rate", Base: "0.1", Candidate: "0.5"}},
			want: []string{
				"| eval loss (mean) | 25 | 27 | +2 | +8.00% worse |",
				"| training loss (final epoch) | 10 | 12 | +2 | +20.00% worse |",
				"| training loss (lowest) | 10 | 12 | +2 | +20.00% worse |",
				"| `learning_rate` | `0.1` | `0.5` |",
			},
			notWant: []string{" better |"},
		},
		{
			name:      "missing baseline",
			base:      nil,
			candidate: diffMetrics([]float64{40, 20, 10}, []float64{10, 20, 30, 40}, dataA, splitA, nil),
			eval:      ghactions.New, final: ghactions.New, epochs: ghactions.New,
			want: []string{
				"No base metrics",
				"| eval loss (mean) | — | 25 | — | — |",
				"| epochs | — | 3 | — | — |",
			},
			notWant: []string{"Data set:", "Test split:", " better |", " worse |"},
		},
		{
			name:      "maximize: higher is better",
			base:      diffMetrics([]float64{3, 2, 1}, []float64{0.5, 0.7}, dataA, splitA, nil),
			candidate: diffMetrics([]float64{3, 2, 1.5}, []float64{0.6, 0.8}, dataA, splitA, nil),
			direction: modelgate.Maximize,
			eval:      ghactions.Better, final: ghactions.Worse, epochs: ghactions.Unchanged,
			paired: &ghactions.Paired{Better: 2},
			want:   []string{"Higher eval loss is better (`direction: maximize`)"},
		},
		{
			name:      "other data and split: not paired",
			base:      base,
			candidate: diffMetrics([]float64{40, 20, 10}, []float64{10, 20, 30, 40, 50}, dataB, splitB, map[string]any{"epochs": 3, "learning_rate": 0.1, "batch_size": 32}),
			eval:      ghactions.Worse, final: ghactions.Unchanged, epochs: ghactions.Unchanged,
			params: []ghactions.ParamChange{{Name: "batch_size", Base: "", Candidate: "32"}},
			want: []string{
				"- Data set: changed, `sha256:2c4d518bafe3` → `sha256:9d00c0ffee00`.",
				"- Test split: different (`sha256:7e1a0b2c3d4e` → `sha256:51717b00000b`)",
				"| test rows | 4 | 5 | +1 | +25.00% |",
				"| `batch_size` | — | `32` |",
			},
			notWant: []string{"per example"},
		},
		{
			name:      "zero base: no percentage",
			base:      diffMetrics([]float64{1, 0}, []float64{0, 0}, dataA, splitA, nil),
			candidate: diffMetrics([]float64{1, 0.5}, []float64{0, 0.5}, dataA, splitA, nil),
			eval:      ghactions.Worse, final: ghactions.Worse, epochs: ghactions.Unchanged,
			evalChange: "+0.25", evalPct: "— worse",
			paired: &ghactions.Paired{Worse: 1, Equal: 1},
		},
		{
			name:      "non-finite training epochs are skipped",
			base:      diffMetrics([]float64{40, 20, math.NaN()}, []float64{10, 20}, dataA, splitA, nil),
			candidate: diffMetrics([]float64{40, math.Inf(1), 15}, []float64{10, 20}, dataA, splitA, nil),
			eval:      ghactions.Unchanged, final: ghactions.Better, epochs: ghactions.Unchanged,
			paired: &ghactions.Paired{Equal: 2},
			want:   []string{"| training loss (final epoch) | 20 | 15 | -5 | -25.00% better |"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ghactions.DiffMetrics(tc.base, tc.candidate, "", tc.direction)
			rows := map[string]ghactions.DiffRow{}
			for _, r := range d.Rows {
				rows[r.Metric] = r
			}
			for name, want := range map[string]ghactions.Trend{"eval loss (mean)": tc.eval, "training loss (final epoch)": tc.final, "epochs": tc.epochs} {
				if got := rows[name].Trend(); got != want {
					t.Errorf("%s: %s, want %s", name, got, want)
				}
			}
			md := d.Markdown("")
			if tc.evalChange != "" {
				line := "| eval loss (mean) | "
				i := strings.Index(md, line)
				if i < 0 || !strings.Contains(md[i:], " | "+tc.evalChange+" | "+tc.evalPct+" |") {
					t.Errorf("eval row: want change %s and %s in\n%s", tc.evalChange, tc.evalPct, md)
				}
			}
			switch {
			case (d.Paired == nil) != (tc.paired == nil):
				t.Errorf("paired %+v, want %+v", d.Paired, tc.paired)
			case d.Paired != nil && *d.Paired != *tc.paired:
				t.Errorf("paired %+v, want %+v", *d.Paired, *tc.paired)
			}
			if len(d.Params) != len(tc.params) {
				t.Errorf("params %+v, want %+v", d.Params, tc.params)
			} else {
				for i := range d.Params {
					if d.Params[i] != tc.params[i] {
						t.Errorf("param %d: %+v, want %+v", i, d.Params[i], tc.params[i])
					}
				}
			}
			if !strings.HasPrefix(md, "#### Metrics against the base\n\n") {
				t.Errorf("heading:\n%s", md)
			}
			if !strings.Contains(md, "| metric | base | candidate | change | % |") {
				t.Errorf("no metric, base, candidate, change, percent header:\n%s", md)
			}
			for _, w := range tc.want {
				if !strings.Contains(md, w) {
					t.Errorf("missing %q in\n%s", w, md)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(md, w) {
					t.Errorf("unexpected %q in\n%s", w, md)
				}
			}
			if strings.Contains(strings.ToLower(md), "nan") || strings.Contains(md, "Inf") {
				t.Errorf("a non-finite number in\n%s", md)
			}
		})
	}
}

// TestMetricsDiffBaseName: the heading names the base, and a name cannot
// open Markdown or HTML in the comment.
func TestMetricsDiffBaseName(t *testing.T) {
	m := diffMetrics([]float64{2, 1}, []float64{1, 2}, dataA, splitA, nil)
	md := ghactions.DiffMetrics(m, m, "", "").Markdown("`main` at 1a2b3c4 <!-- x --> |")
	first, _, _ := strings.Cut(md, "\n")
	if first != `#### Metrics against 'main' at 1a2b3c4 &lt;!-- x --&gt; \|` {
		t.Errorf("heading %q", first)
	}
}
