package ghactions_test

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/modelci/modelci/ghactions"
	"github.com/modelci/modelci/modelgate"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// metrics is a training run: loss falling from ~28,800 to ~2,800 over
// epochs (NaN at the epochs in nanAt, 1-based) and 88 test losses around
// evalMean.
func metrics(epochs int, evalMean float64, nanAt ...int) *modelgate.Metrics {
	m := &modelgate.Metrics{Schema: modelgate.MetricsSchema}
	for i := range epochs {
		m.Train.Loss = append(m.Train.Loss, 2800+26000*math.Exp(-float64(i)/25))
	}
	for _, e := range nanAt {
		m.Train.Loss[e-1] = math.NaN()
	}
	var sum float64
	for i := range 88 {
		v := evalMean + 0.6*evalMean*math.Sin(1.7*float64(i))
		m.Eval.PerExample = append(m.Eval.PerExample, v)
		sum += v
	}
	m.Eval.Loss = sum / 88
	m.Dataset = modelgate.DatasetInfo{Digest: "sha256:4c5f00d1", Rows: 442}
	m.Split = modelgate.SplitInfo{TestDigest: "sha256:7e1a0b2c", TestRows: 88, Seed: 42, TestFraction: 0.2}
	return m
}

func gate(t *testing.T, policy string, m *modelgate.Metrics) *modelgate.Report {
	t.Helper()
	p, err := modelgate.DecodePolicy("policy.yaml", []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	r, err := modelgate.Evaluate(p, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ghactions -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", t.Name(), path, got, want)
	}
}

const artifacts = "https://github.com/acme/models/actions/runs/42"

func TestPRCommentGolden(t *testing.T) {
	pass := metrics(300, 3000)
	failing := metrics(40, 3000, 20)
	held := metrics(120, 3000)
	for _, tc := range []struct {
		name    string
		report  *modelgate.Report
		metrics *modelgate.Metrics
		verdict modelgate.Verdict
	}{
		{"pr_pass", gate(t, "threshold: 5000\n", pass), pass, modelgate.Pass},
		{"pr_fail", gate(t, "threshold: 2000\n", failing), failing, modelgate.Fail},
		{"pr_inconclusive", gate(t, "threshold: 3100\n", held), held, modelgate.Inconclusive},
		{"pr_none", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.report != nil && tc.report.Verdict != tc.verdict {
				t.Fatalf("fixture verdict %s, want %s", tc.report.Verdict, tc.verdict)
			}
			got := ghactions.PRComment("diabetes", tc.report, tc.metrics, artifacts)
			if !strings.HasPrefix(got, "<!-- modelci-gate:diabetes -->\n") {
				t.Errorf("the comment does not start with its marker:\n%s", got)
			}
			golden(t, tc.name, got)
		})
	}
}

func TestJobSummaryGolden(t *testing.T) {
	m := metrics(300, 3000)
	r := gate(t, "threshold: 5000\n", m)
	outputs := map[string]string{
		"model":   "diabetes",
		"version": "1.0.0",
		"digest":  "sha256:9f8e7d6c",
		"ref":     "registry.example/acme/models/diabetes@sha256:9f8e7d6c",
		"note":    "a|b `c`",
		"comment": "multi\nline",
	}
	got := ghactions.JobSummary("diabetes", r, m, outputs, artifacts)
	if strings.Contains(got, "modelci-gate:") {
		t.Errorf("the job summary carries the comment marker")
	}
	if strings.Contains(got, "multi") {
		t.Errorf("a multi-line output went into the table")
	}
	golden(t, "summary_pass", got)
}

// chartLists returns the chart's x-axis categories and each line's values.
func chartLists(t *testing.T, chart string) (xs []string, lines [][]string) {
	t.Helper()
	list := regexp.MustCompile(`\[(.*)\]`)
	for _, l := range strings.Split(chart, "\n") {
		l = strings.TrimSpace(l)
		m := list.FindStringSubmatch(l)
		switch {
		case strings.HasPrefix(l, "x-axis"):
			xs = strings.Split(m[1], ", ")
		case strings.HasPrefix(l, "line"):
			lines = append(lines, strings.Split(m[1], ", "))
		}
	}
	return xs, lines
}

func TestLossChartDownsamples(t *testing.T) {
	for _, tc := range []struct {
		epochs, points int
	}{{1, 1}, {99, 99}, {100, 100}, {101, 100}, {300, 100}, {5000, 100}} {
		t.Run(fmt.Sprint(tc.epochs), func(t *testing.T) {
			m := metrics(tc.epochs, 3000)
			r := gate(t, "threshold: 5000\n", m)
			chart := ghactions.LossChart("diabetes", r, m)
			if again := ghactions.LossChart("diabetes", r, m); again != chart {
				t.Fatalf("two renderings differ")
			}
			xs, lines := chartLists(t, chart)
			if len(xs) != tc.points {
				t.Errorf("%d x-axis points, want %d", len(xs), tc.points)
			}
			if xs[0] != "1" || xs[len(xs)-1] != fmt.Sprint(tc.epochs) {
				t.Errorf("x-axis runs %s..%s, want 1..%d", xs[0], xs[len(xs)-1], tc.epochs)
			}
			if len(lines) != 3 {
				t.Fatalf("%d lines, want train, eval and threshold", len(lines))
			}
			for i, l := range lines {
				if len(l) != len(xs) {
					t.Errorf("line %d has %d points for %d epochs", i, len(l), len(xs))
				}
			}
			if lines[2][0] != "5000" || lines[2][len(xs)-1] != "5000" {
				t.Errorf("threshold line %v, want 5000 throughout", lines[2])
			}
			if strings.ContainsAny(chart, "eE+") && regexp.MustCompile(`\d[eE][+-]?\d`).MatchString(chart) {
				t.Errorf("a number in exponent form, which Mermaid does not read:\n%s", chart)
			}
			if tc.points < tc.epochs && !strings.Contains(chart, fmt.Sprintf("%d of %d epochs shown", tc.points, tc.epochs)) {
				t.Errorf("the chart does not say it is downsampled:\n%s", chart)
			}
		})
	}
}

func TestLossChartLeavesOutNonFinite(t *testing.T) {
	m := metrics(5, 3000, 2, 4)
	chart := ghactions.LossChart("diabetes", nil, m)
	xs, lines := chartLists(t, chart)
	if strings.Join(xs, ",") != "1,3,5" {
		t.Errorf("x-axis %v, want the finite epochs 1,3,5", xs)
	}
	if len(lines) != 2 {
		t.Errorf("%d lines, want train and eval (no report: no threshold)", len(lines))
	}
	if strings.Contains(strings.ToLower(chart), "nan") {
		t.Errorf("NaN in the chart:\n%s", chart)
	}
	all := metrics(2, 3000, 1, 2)
	if got := ghactions.LossChart("diabetes", nil, all); got != "" {
		t.Errorf("no finite loss: chart %q, want none", got)
	}
}

func TestMarker(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"diabetes", "<!-- modelci-gate:diabetes -->"},
		{"", "<!-- modelci-gate:model -->"},
		{"x --> <script>", "<!-- modelci-gate:x------script- -->"},
		{"a\nb", "<!-- modelci-gate:a-b -->"},
	} {
		got := ghactions.Marker(tc.name)
		if got != tc.want {
			t.Errorf("Marker(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if strings.Count(got, "-->") != 1 || !strings.HasSuffix(got, " -->") {
			t.Errorf("Marker(%q) = %q closes early", tc.name, got)
		}
	}
}

func TestGateAnnotations(t *testing.T) {
	ok := metrics(50, 3000)
	bad := metrics(50, 3000, 10)
	for _, tc := range []struct {
		name   string
		report *modelgate.Report
		want   []string
	}{
		{"pass", gate(t, "threshold: 5000\n", ok), nil},
		{"fail", gate(t, "threshold: 2000\n", bad), []string{
			"::error title=modelci gate%3A diabetes FAIL::check threshold is FAIL",
			"::error title=modelci gate%3A diabetes FAIL::check health.finite is FAIL",
			"::error title=modelci gate%3A diabetes FAIL::check health.divergence is FAIL",
			"::error title=modelci gate%3A diabetes FAIL::check health.gap is FAIL",
		}},
		{"held", gate(t, "threshold: 3100\n", ok), []string{
			"::warning title=modelci gate%3A diabetes INCONCLUSIVE::check threshold is INCONCLUSIVE",
		}},
		{"inconclusive refused", gate(t, "threshold: 3100\non_inconclusive: fail\n", ok), []string{
			"::error title=modelci gate%3A diabetes INCONCLUSIVE::check threshold is INCONCLUSIVE",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as := ghactions.GateAnnotations("diabetes", tc.report)
			if len(as) != len(tc.want) {
				t.Fatalf("%d annotations %v, want %d", len(as), as, len(tc.want))
			}
			for i, a := range as {
				if !strings.HasPrefix(a.String(), tc.want[i]) {
					t.Errorf("annotation %d = %s\nwant prefix  %s", i, a, tc.want[i])
				}
			}
		})
	}
}

func TestRunURL(t *testing.T) {
	t.Setenv("GITHUB_SERVER_URL", "https://github.com")
	t.Setenv("GITHUB_REPOSITORY", "acme/models")
	t.Setenv("GITHUB_RUN_ID", "42")
	if got := ghactions.RunURL(); got != artifacts {
		t.Errorf("RunURL() = %q, want %q", got, artifacts)
	}
	t.Setenv("GITHUB_RUN_ID", "")
	if got := ghactions.RunURL(); got != "" {
		t.Errorf("off a runner: RunURL() = %q, want empty", got)
	}
}
