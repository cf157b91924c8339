package modelgate_test

import (
	"math"
	"strings"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

// TestFormatNumber: every number in the text and Markdown reports keeps
// four significant digits (a threshold of 0.01 is 0.01, not 0.0).
func TestFormatNumber(t *testing.T) {
	for _, tt := range []struct {
		in   float64
		want string
	}{
		{0.01, "0.01"},
		{0.012345, "0.01235"}, // 0.012345 is 0.01234500000000000007… in binary
		{0.0123456, "0.01235"},
		{1234.5678, "1235"},
		{5000, "5000"},
		{1e-7, "1e-7"},
		{123456789, "1.235e8"},
		{12345.6, "12346"}, // no integer digit rounded away
		{999999.7, "1e6"},
		{9999.7, "10000"},
		{0.99999, "1"},
		{3.5, "3.5"},
		{0.1782366, "0.1782"},
		{0.0001, "0.0001"},
		{0.00009999, "9.999e-5"},
		{2.9931e-11, "2.993e-11"},
		{-3298.74, "-3299"},
		{-0.05, "-0.05"},
		{0, "0"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
	} {
		if got := modelgate.FormatNumber(tt.in); got != tt.want {
			t.Errorf("FormatNumber(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestReportsKeepSmallThresholds: a threshold of 0.01 reads 0.01 in the
// text and Markdown reports and the one-line summary.
func TestReportsKeepSmallThresholds(t *testing.T) {
	m := diabetes(t)
	small := *m
	small.Eval.PerExample = make([]float64, len(m.Eval.PerExample))
	var sum float64
	for i, v := range m.Eval.PerExample {
		small.Eval.PerExample[i] = v * 1e-6
		sum += small.Eval.PerExample[i]
	}
	small.Eval.Loss = sum / float64(len(m.Eval.PerExample))
	r, err := modelgate.Evaluate(policy(0.01), &small, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"markdown": r.Markdown(), "text": r.Text(), "summary": r.Summary()} {
		if !strings.Contains(s, "0.01") || strings.Contains(s, "0.0 ") || strings.Contains(s, "0.0)") {
			t.Errorf("%s:\n%s", name, s)
		}
	}
	if !strings.Contains(r.Markdown(), "| 0.01 |") {
		t.Errorf("markdown's threshold column:\n%s", r.Markdown())
	}
}
