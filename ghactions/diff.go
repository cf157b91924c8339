package ghactions

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/modelci/modelci/modelgate"
)

// Trend says how a metric moved from the base to the candidate.
type Trend string

// Trends.
const (
	Better    Trend = "better"
	Worse     Trend = "worse"
	Unchanged Trend = "unchanged"
	// Changed: a count (epochs, rows) that is neither better nor worse.
	Changed Trend = "changed"
	// New: the base has no value (no base metrics).
	New Trend = "new"
)

// Which way a DiffRow's value is better.
const (
	Neutral      = 0
	LowerBetter  = -1
	HigherBetter = 1
)

// DiffRow is one metric of a MetricsDiff: its value in the base and in
// the candidate (nil: absent) and which way is better.
type DiffRow struct {
	Metric          string
	Base, Candidate *float64
	Better          int // LowerBetter, HigherBetter or Neutral
}

// Change is candidate − base, when both are there.
func (r DiffRow) Change() (float64, bool) {
	if r.Base == nil || r.Candidate == nil {
		return 0, false
	}
	return *r.Candidate - *r.Base, true
}

// Percent is the change relative to |base|, in percent, when both are
// there and the base is not zero.
func (r DiffRow) Percent() (float64, bool) {
	c, ok := r.Change()
	if !ok || *r.Base == 0 {
		return 0, false
	}
	return 100 * c / math.Abs(*r.Base), true
}

// Trend is the row's movement: New without a base value, Unchanged when
// equal, else Better or Worse for the row's direction, or Changed for a
// neutral count.
func (r DiffRow) Trend() Trend {
	c, ok := r.Change()
	switch {
	case !ok:
		return New
	case c == 0:
		return Unchanged
	case r.Better == Neutral:
		return Changed
	case (c < 0) == (r.Better == LowerBetter):
		return Better
	}
	return Worse
}

// ParamChange is a training parameter that differs between the base and
// the candidate; "" is a side that does not set it.
type ParamChange struct {
	Name, Base, Candidate string
}

// Paired counts, over a test split both models were scored on, the
// examples on which the candidate's per-example value is better, worse or
// equal.
type Paired struct {
	Better, Worse, Equal int
}

// MetricsDiff compares a candidate's metrics.json with the base's (the
// model its pull request's base branch trains), as `dvc metrics diff` does
// for metric files: each metric's values, the change and the relative
// change, with the direction the gate's policy gives the eval metric.
type MetricsDiff struct {
	// Metric and Direction are the gate's (default loss, minimize).
	Metric, Direction string
	Rows              []DiffRow
	// Params lists the training parameters that differ.
	Params []ParamChange
	// NoBase: there were no base metrics (a new model, or a base that did
	// not train); the rows hold the candidate's values only.
	NoBase bool
	// SameData and SameSplit: the data set and the test split have the
	// same digests on both sides.
	SameData, SameSplit bool
	// DataDigests and SplitDigests are the base's and the candidate's.
	DataDigests, SplitDigests [2]string
	// Paired is set when both were scored on the same test split, example
	// for example.
	Paired *Paired
}

// DiffMetrics compares candidate with base (nil: no base metrics). metric
// and direction are the gate's metric name and direction ("" for loss,
// minimize); the eval row follows the direction, training losses are
// lower-better, counts are neutral.
func DiffMetrics(base, candidate *modelgate.Metrics, metric, direction string) MetricsDiff {
	if metric == "" {
		metric = modelgate.DefaultMetric
	}
	if direction == "" {
		direction = modelgate.Minimize
	}
	evalBetter := LowerBetter
	if direction == modelgate.Maximize {
		evalBetter = HigherBetter
	}
	d := MetricsDiff{Metric: metric, Direction: direction, NoBase: base == nil}
	type extract struct {
		name   string
		better int
		value  func(*modelgate.Metrics) *float64
	}
	for _, e := range []extract{
		{"eval " + metric + " (mean)", evalBetter, func(m *modelgate.Metrics) *float64 { return finite(m.Eval.Loss) }},
		{"training loss (final epoch)", LowerBetter, func(m *modelgate.Metrics) *float64 { return lastFinite(m.Train.Loss) }},
		{"training loss (lowest)", LowerBetter, func(m *modelgate.Metrics) *float64 { return minFinite(m.Train.Loss) }},
		{"epochs", Neutral, func(m *modelgate.Metrics) *float64 { return count(len(m.Train.Loss)) }},
		{"test rows", Neutral, func(m *modelgate.Metrics) *float64 { return count(m.Split.TestRows) }},
		{"data set rows", Neutral, func(m *modelgate.Metrics) *float64 { return count(m.Dataset.Rows) }},
	} {
		r := DiffRow{Metric: e.name, Better: e.better}
		if candidate != nil {
			r.Candidate = e.value(candidate)
		}
		if base != nil {
			r.Base = e.value(base)
		}
		d.Rows = append(d.Rows, r)
	}
	if base == nil || candidate == nil {
		return d
	}
	d.DataDigests = [2]string{base.Dataset.Digest, candidate.Dataset.Digest}
	d.SplitDigests = [2]string{base.Split.TestDigest, candidate.Split.TestDigest}
	d.SameData = base.Dataset.Digest != "" && base.Dataset.Digest == candidate.Dataset.Digest
	d.SameSplit = base.Split.TestDigest != "" && base.Split.TestDigest == candidate.Split.TestDigest
	if d.SameSplit && len(base.Eval.PerExample) == len(candidate.Eval.PerExample) {
		p := &Paired{}
		for i, b := range base.Eval.PerExample {
			c := candidate.Eval.PerExample[i]
			switch {
			case c == b:
				p.Equal++
			case (c < b) == (evalBetter == LowerBetter):
				p.Better++
			default:
				p.Worse++
			}
		}
		d.Paired = p
	}
	for _, k := range slices.Sorted(maps.Keys(union(base.Params, candidate.Params))) {
		b, c := paramText(base.Params, k), paramText(candidate.Params, k)
		if b != c {
			d.Params = append(d.Params, ParamChange{Name: k, Base: b, Candidate: c})
		}
	}
	return d
}

// Markdown renders the diff for a pull-request comment or a job summary:
// a heading naming the base (baseName, e.g. "main at 1a2b3c4"; "" for
// "the base"), the table metric | base | candidate | change | %, the data
// and test split, the paired per-example count and the changed params.
func (d MetricsDiff) Markdown(baseName string) string {
	var b strings.Builder
	if baseName == "" {
		baseName = "the base"
	}
	fmt.Fprintf(&b, "#### Metrics against %s\n\n", mdText(baseName))
	if d.NoBase {
		b.WriteString("No base metrics: the base does not train this model (a new model, or its base failed). The candidate's values only.\n\n")
	}
	b.WriteString("| metric | base | candidate | change | % |\n|---|---|---|---|---|\n")
	for _, r := range d.Rows {
		change, pct := "—", "—"
		if c, ok := r.Change(); ok {
			change = signed(c)
		}
		if p, ok := r.Percent(); ok {
			pct = strconv.FormatFloat(p, 'f', 2, 64) + "%"
			if p > 0 {
				pct = "+" + pct
			}
		}
		switch t := r.Trend(); t {
		case Better, Worse:
			pct += " " + string(t)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Metric, value(r.Base), value(r.Candidate), change, pct)
	}
	if d.Direction == modelgate.Maximize {
		fmt.Fprintf(&b, "\nHigher eval %s is better (`direction: maximize`); lower training loss is better.\n", mdText(d.Metric))
	} else {
		fmt.Fprintf(&b, "\nLower is better for the losses.\n")
	}
	if d.NoBase {
		return b.String()
	}
	b.WriteString("\n")
	if d.SameData {
		fmt.Fprintf(&b, "- Data set: unchanged (%s).\n", code(short(d.DataDigests[1])))
	} else {
		fmt.Fprintf(&b, "- Data set: changed, %s → %s.\n", code(short(d.DataDigests[0])), code(short(d.DataDigests[1])))
	}
	switch {
	case d.Paired != nil:
		n := d.Paired.Better + d.Paired.Worse + d.Paired.Equal
		fmt.Fprintf(&b, "- Test split: the same (%s): per example, the candidate is better on %d of %d, worse on %d, equal on %d.\n",
			code(short(d.SplitDigests[1])), d.Paired.Better, n, d.Paired.Worse, d.Paired.Equal)
	case d.SameSplit:
		fmt.Fprintf(&b, "- Test split: the same digest (%s), but a different number of per-example values: not compared example for example.\n", code(short(d.SplitDigests[1])))
	default:
		fmt.Fprintf(&b, "- Test split: different (%s → %s): the data, seed or test fraction changed, so the eval figures are over different rows, not paired.\n",
			code(short(d.SplitDigests[0])), code(short(d.SplitDigests[1])))
	}
	if len(d.Params) > 0 {
		b.WriteString("\n| param | base | candidate |\n|---|---|---|\n")
		for _, p := range d.Params {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", code(p.Name), code(p.Base), code(p.Candidate))
		}
	}
	return b.String()
}

func finite(v float64) *float64 {
	if !isFinite(v) {
		return nil
	}
	return &v
}

func count(n int) *float64 {
	v := float64(n)
	return &v
}

func lastFinite(vs []float64) *float64 {
	for i := len(vs) - 1; i >= 0; i-- {
		if isFinite(vs[i]) {
			return finite(vs[i])
		}
	}
	return nil
}

func minFinite(vs []float64) *float64 {
	var m *float64
	for _, v := range vs {
		if isFinite(v) && (m == nil || v < *m) {
			m = finite(v)
		}
	}
	return m
}

func union(a, b map[string]any) map[string]any {
	u := maps.Clone(a)
	if u == nil {
		u = map[string]any{}
	}
	maps.Copy(u, b)
	return u
}

// paramText is a param's value as JSON ("" when absent).
func paramText(params map[string]any, k string) string {
	v, ok := params[k]
	if !ok {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// value formats a table cell: six significant digits, "—" when absent.
func value(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(*v, 'g', 6, 64)
}

func signed(v float64) string {
	s := strconv.FormatFloat(v, 'g', 6, 64)
	if v > 0 {
		s = "+" + s
	}
	return s
}

// short keeps a digest's algorithm and its first 12 hex digits.
func short(digest string) string {
	if alg, hex, ok := strings.Cut(digest, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return digest
}

// mdText keeps text from opening Markdown or HTML constructs.
func mdText(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", `\|`, "`", "'", "\n", " ", "\r", " ").Replace(s)
}
