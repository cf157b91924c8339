package modelgate

import (
	"fmt"
	"strconv"
	"strings"
)

// Markdown is the report as a GitHub-flavoured Markdown section: the
// verdict, then a table of the checks, fit for a job summary or a pull
// request comment.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### modelci gate: %s %s\n\n", verdictMark(r.Verdict), r.Verdict)
	if r.Candidate != nil {
		fmt.Fprintf(&b, "Candidate: eval %s %s over %d test examples, %d epochs (test split `%s`).",
			orDefault(r.Metric, "loss"), fmtPtr(r.Candidate.EvalLoss), r.Candidate.Examples, r.Candidate.Epochs, orDefault(r.Candidate.TestDigest, "unknown"))
		if r.Baseline != nil {
			fmt.Fprintf(&b, " Champion: eval %s %s.", orDefault(r.Metric, "loss"), fmtPtr(r.Baseline.EvalLoss))
		}
		b.WriteString("\n\n")
	}
	b.WriteString("| check | verdict | estimate | interval | threshold | tests | reason |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "| `%s` | %s %s | %s | %s | %s | %s | %s |\n",
			c.Name, verdictMark(c.Verdict), c.Verdict, fmtPtr(c.Estimate), intervalText(c), fmtPtr(c.Threshold), testsText(c.Tests), mdEscape(c.Reason))
	}
	if r.Verdict == Inconclusive {
		if r.OnInconclusive == FailOn {
			b.WriteString("\nINCONCLUSIVE is refused under `on_inconclusive: fail`.\n")
		} else {
			b.WriteString("\nINCONCLUSIVE is held for approval (`on_inconclusive: hold`).\n")
		}
	}
	return b.String()
}

// Text is the report for a terminal: one line per check.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gate: %s\n", r.Verdict)
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "  %-18s %-12s %s\n", c.Name, c.Verdict, c.Reason)
		if len(c.Tests) > 0 {
			fmt.Fprintf(&b, "  %-18s %-12s %s\n", "", "", testsText(c.Tests))
		}
	}
	return b.String()
}

func verdictMark(v Verdict) string {
	switch v {
	case Pass:
		return "✅"
	case Fail:
		return "❌"
	}
	return "⏸️"
}

func intervalText(c Check) string {
	if c.Lower == nil || c.Upper == nil {
		return "—"
	}
	s := fmt.Sprintf("[%s, %s]", FormatNumber(*c.Lower), FormatNumber(*c.Upper))
	if c.Confidence > 0 {
		s += fmt.Sprintf(" (%s%% %s)", strconv.FormatFloat(c.Confidence*100, 'g', -1, 64), c.Method)
	}
	return s
}

func testsText(ts []TestResult) string {
	if len(ts) == 0 {
		return "—"
	}
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("%s p=%s", t.Name, FormatNumber(t.PValue))
	}
	return strings.Join(parts, ", ")
}

func fmtPtr(v *float64) string {
	if v == nil {
		return "—"
	}
	return FormatNumber(*v)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// mdEscape keeps a reason inside its table cell.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
