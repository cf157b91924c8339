package ghactions

import (
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/modelci/modelci/modelgate"
)

// MaxChartPoints is the most epochs a loss chart draws; longer curves are
// downsampled to evenly spaced epochs, first and last included.
const MaxChartPoints = 100

// Marker is the hidden line that identifies a model's gate comment, so a
// workflow updates that one comment in place instead of adding another.
func Marker(name string) string {
	return "<!-- modelci-gate:" + safeName(name) + " -->"
}

// safeName keeps a model name to letters, digits, '.', '_' and '-': it
// ends up inside an HTML comment, a Mermaid string and Markdown code.
func safeName(name string) string {
	if name == "" {
		return "model"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, name)
}

// PRComment renders the pull-request comment for a model's gate: the
// hidden marker, the gate table, the loss curve as a Mermaid chart and a
// link to the plot files uploaded as a workflow artifact (none when
// artifactURL is empty).
func PRComment(name string, r *modelgate.Report, m *modelgate.Metrics, artifactURL string) string {
	var b strings.Builder
	b.WriteString(Marker(name) + "\n")
	fmt.Fprintf(&b, "**Model `%s`**\n\n", safeName(name))
	writeBody(&b, name, r, m, artifactURL)
	return b.String()
}

// JobSummary renders a model's section of the job summary: the step's
// outputs (digest, reference, version…) as a table, then what PRComment
// shows.
func JobSummary(name string, r *modelgate.Report, m *modelgate.Metrics, outputs map[string]string, artifactURL string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## modelci: `%s`\n\n", safeName(name))
	if len(outputs) > 0 {
		b.WriteString("| output | value |\n|---|---|\n")
		for _, k := range slices.Sorted(maps.Keys(outputs)) {
			v := outputs[k]
			if strings.ContainsAny(v, "\r\n") {
				continue // multi-line values (a comment body) do not fit a cell
			}
			fmt.Fprintf(&b, "| %s | %s |\n", k, code(v))
		}
		b.WriteString("\n")
	}
	writeBody(&b, name, r, m, artifactURL)
	return b.String()
}

func writeBody(b *strings.Builder, name string, r *modelgate.Report, m *modelgate.Metrics, artifactURL string) {
	if r == nil {
		b.WriteString("No gate report: the gate did not run.\n")
	} else {
		b.WriteString(r.Markdown())
	}
	if chart := LossChart(name, r, m); chart != "" {
		b.WriteString("\n" + chart)
	}
	if artifactURL != "" {
		fmt.Fprintf(b, "\nLoss plot (PNG/SVG), metrics and report: [workflow artifacts](%s).\n", artifactURL)
	}
}

// code puts v in a Markdown code span, with a fence longer than any run
// of backticks inside it, and keeps it inside a table cell.
func code(v string) string {
	if v == "" {
		return "—"
	}
	fence := "`"
	for strings.Contains(v, fence) {
		fence += "`"
	}
	v = strings.ReplaceAll(v, "|", `\|`)
	if strings.HasPrefix(v, "`") || strings.HasSuffix(v, "`") {
		v = " " + v + " "
	}
	return fence + v + fence
}

// LossChart renders the training loss per epoch as a Mermaid xychart-beta
// block, with the eval loss and the gate threshold (when the report has
// one) as flat lines, and a line of text naming them, since the chart has
// no legend. Non-finite epochs are left out. It is empty when there is no
// finite training loss.
func LossChart(name string, r *modelgate.Report, m *modelgate.Metrics) string {
	if m == nil {
		return ""
	}
	var epochs []int
	var loss []float64
	for i, v := range m.Train.Loss {
		if isFinite(v) {
			epochs = append(epochs, i+1)
			loss = append(loss, v)
		}
	}
	if len(loss) == 0 {
		return ""
	}
	idx := downsample(len(loss), MaxChartPoints)
	xs := make([]string, len(idx))
	train := make([]float64, len(idx))
	for k, i := range idx {
		xs[k] = strconv.Itoa(epochs[i])
		train[k] = loss[i]
	}
	series := [][]float64{train}
	legend := []string{"training loss per epoch"}
	all := slices.Clone(train)
	if isFinite(m.Eval.Loss) {
		series = append(series, flat(m.Eval.Loss, len(idx)))
		legend = append(legend, "eval loss "+fmtLegend(m.Eval.Loss)+" (flat)")
		all = append(all, m.Eval.Loss)
	}
	if t, ok := threshold(r); ok {
		series = append(series, flat(t, len(idx)))
		legend = append(legend, "gate threshold "+fmtLegend(t)+" (flat)")
		all = append(all, t)
	}
	decimals := chartDecimals(all)

	var b strings.Builder
	b.WriteString("```mermaid\nxychart-beta\n")
	fmt.Fprintf(&b, "    title \"%s: loss per epoch\"\n", safeName(name))
	fmt.Fprintf(&b, "    x-axis \"epoch\" [%s]\n", strings.Join(xs, ", "))
	b.WriteString("    y-axis \"loss\"\n")
	for _, s := range series {
		vs := make([]string, len(s))
		for i, v := range s {
			vs[i] = fmtChart(v, decimals)
		}
		fmt.Fprintf(&b, "    line [%s]\n", strings.Join(vs, ", "))
	}
	b.WriteString("```\n\n")
	fmt.Fprintf(&b, "Lines: %s", strings.Join(legend, "; "))
	if len(idx) < len(loss) {
		fmt.Fprintf(&b, "; %d of %d epochs shown", len(idx), len(loss))
	}
	b.WriteString(".\n")
	return b.String()
}

// threshold is the threshold check's limit.
func threshold(r *modelgate.Report) (float64, bool) {
	if r == nil {
		return 0, false
	}
	for _, c := range r.Checks {
		if c.Name == modelgate.CheckThreshold && c.Threshold != nil && isFinite(*c.Threshold) {
			return *c.Threshold, true
		}
	}
	return 0, false
}

// downsample returns at most max indices into n points, evenly spaced,
// first and last included, the same for the same n every time.
func downsample(n, max int) []int {
	if n <= max {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := make([]int, max)
	for k := range idx {
		idx[k] = int(math.Round(float64(k) * float64(n-1) / float64(max-1)))
	}
	return idx
}

func flat(v float64, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// chartDecimals gives the chart's numbers about five significant digits
// at the scale of its largest value; Mermaid does not read exponents.
func chartDecimals(vs []float64) int {
	var top float64
	for _, v := range vs {
		top = math.Max(top, math.Abs(v))
	}
	if top == 0 {
		return 0
	}
	return min(max(4-int(math.Floor(math.Log10(top))), 0), 12)
}

func fmtChart(v float64, decimals int) string {
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func fmtLegend(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// GateAnnotations are the annotations for a gate that did not pass: an
// error for each failing check (and for inconclusive ones when
// on_inconclusive is fail), a warning for each inconclusive check held
// for approval. A passing gate has none.
func GateAnnotations(name string, r *modelgate.Report) []Annotation {
	if r == nil || r.Verdict == modelgate.Pass {
		return nil
	}
	title := "modelci gate: " + safeName(name) + " " + string(r.Verdict)
	var as []Annotation
	for _, c := range r.Checks {
		level := Error
		switch {
		case c.Verdict == modelgate.Pass:
			continue
		case c.Verdict == modelgate.Inconclusive && r.OnInconclusive != modelgate.FailOn:
			level = Warning
		}
		as = append(as, Annotation{Level: level, Title: title,
			Message: fmt.Sprintf("check %s is %s: %s", c.Name, c.Verdict, c.Reason)})
	}
	return as
}

// RunURL is the web address of the current workflow run (where its
// artifacts are listed), or "" off a runner.
func RunURL() string {
	server, repo, id := os.Getenv("GITHUB_SERVER_URL"), os.Getenv("GITHUB_REPOSITORY"), os.Getenv("GITHUB_RUN_ID")
	if server == "" || repo == "" || id == "" {
		return ""
	}
	return server + "/" + repo + "/actions/runs/" + id
}
