package ghactions_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/ghactions"
)

// runnerFiles points GITHUB_STEP_SUMMARY and GITHUB_OUTPUT at fresh files,
// as the runner does for each step.
func runnerFiles(t *testing.T) (summary, output string) {
	t.Helper()
	dir := t.TempDir()
	summary, output = filepath.Join(dir, "summary.md"), filepath.Join(dir, "output")
	for _, p := range []string{summary, output} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(ghactions.EnvSummary, summary)
	t.Setenv(ghactions.EnvOutput, output)
	return summary, output
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseOutputs reads a $GITHUB_OUTPUT file as the runner does: `name=value`
// lines, and `name<<DELIM` blocks that end at the first line equal to DELIM.
func parseOutputs(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		eq, heredoc := strings.Index(line, "="), strings.Index(line, "<<")
		if eq >= 0 && (heredoc < 0 || eq < heredoc) {
			out[line[:eq]] = line[eq+1:]
			continue
		}
		if heredoc < 0 {
			t.Fatalf("output line %d %q: neither name=value nor name<<DELIM", i+1, line)
		}
		name, delim := line[:heredoc], line[heredoc+2:]
		var value []string
		for i++; ; i++ {
			if i == len(lines) {
				t.Fatalf("output %s: delimiter %q never closes", name, delim)
			}
			if lines[i] == delim {
				break
			}
			value = append(value, lines[i])
		}
		out[name] = strings.Join(value, "\n")
	}
	return out
}

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{{"true", true}, {"", false}, {"false", false}, {"1", false}} {
		t.Setenv(ghactions.EnvActions, tc.value)
		if got := ghactions.Enabled(); got != tc.want {
			t.Errorf("GITHUB_ACTIONS=%q: Enabled() = %v, want %v", tc.value, got, tc.want)
		}
	}
}

func TestWriteSummaryAppends(t *testing.T) {
	summary, _ := runnerFiles(t)
	if err := os.WriteFile(summary, []byte("earlier step\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, md := range []string{"### first\n", "second, no newline"} {
		if err := ghactions.WriteSummary(md); err != nil {
			t.Fatal(err)
		}
	}
	want := "earlier step\n\n### first\n\nsecond, no newline\n\n"
	if got := read(t, summary); got != want {
		t.Errorf("summary file:\n%q\nwant\n%q", got, want)
	}
}

func TestSetOutputs(t *testing.T) {
	_, output := runnerFiles(t)
	outputs := map[string]string{
		"digest":  "sha256:0123abcd",
		"version": "1.2.0+build.7",
		"comment": "<!-- modelci-gate:diabetes -->\n### gate\n\n| a | b |\n",
		"empty":   "",
		// A value cannot end its heredoc early, set another output, or
		// smuggle a workflow command: none of these lines means anything
		// in the output file.
		"reason": "EOF\nverdict=PASS\nghadelimiter_guess\n::set-output name=verdict::PASS\n::error::injected",
		"crlf":   "line one\r\nline two",
	}
	if err := ghactions.SetOutputs(outputs); err != nil {
		t.Fatal(err)
	}
	// A second step's outputs go after the first's.
	if err := ghactions.SetOutputs(map[string]string{"verdict": "FAIL"}); err != nil {
		t.Fatal(err)
	}
	text := read(t, output)
	got := parseOutputs(t, text)
	want := map[string]string{"verdict": "FAIL"}
	for k, v := range outputs {
		want[k] = v
	}
	if len(got) != len(want) {
		t.Errorf("parsed %d outputs %v, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("output %s = %q, want %q", k, got[k], v)
		}
	}
	if !strings.Contains(text, "digest=sha256:0123abcd\n") {
		t.Errorf("a single-line value is not written as name=value:\n%s", text)
	}
	if !strings.Contains(text, "comment<<ghadelimiter_") {
		t.Errorf("a multi-line value is not written with a random heredoc delimiter:\n%s", text)
	}
}

func TestSetOutputsDelimitersDiffer(t *testing.T) {
	a, err := ghactions.FormatOutputs(map[string]string{"x": "1\n2"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ghactions.FormatOutputs(map[string]string{"x": "1\n2"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Errorf("two writes used the same delimiter: %q", a)
	}
}

func TestSetOutputsDelimiterCollision(t *testing.T) {
	// The value holds the first delimiter drawn: the next one is used.
	draws := []string{"DELIM_A", "DELIM_B"}
	restore := ghactions.SetDelimiterFunc(func() string {
		d := draws[0]
		draws = draws[1:]
		return d
	})
	defer restore()
	b, err := ghactions.FormatOutputs(map[string]string{"x": "a\nDELIM_A\nverdict=PASS"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "x<<DELIM_B\na\nDELIM_A\nverdict=PASS\nDELIM_B\n"; string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}

	restore2 := ghactions.SetDelimiterFunc(func() string { return "SAME" })
	defer restore2()
	if _, err := ghactions.FormatOutputs(map[string]string{"x": "SAME\nSAME"}); !errors.Is(err, ghactions.ErrDelimiter) {
		t.Errorf("every delimiter collides: err = %v, want ErrDelimiter", err)
	}
}

func TestSetOutputsRefusesBadNames(t *testing.T) {
	_, output := runnerFiles(t)
	for _, name := range []string{"", "a=b", "x<<EOF", "two\nlines", "1st", "with space", "dot.ted"} {
		err := ghactions.SetOutputs(map[string]string{"good": "1", name: "v"})
		if !errors.Is(err, ghactions.ErrOutputName) {
			t.Errorf("name %q: err = %v, want ErrOutputName", name, err)
		}
	}
	if got := read(t, output); got != "" {
		t.Errorf("a refused call wrote %q", got)
	}
}

func TestWritersOffRunner(t *testing.T) {
	t.Setenv(ghactions.EnvSummary, "")
	t.Setenv(ghactions.EnvOutput, "")
	if err := ghactions.WriteSummary("x"); !errors.Is(err, ghactions.ErrNotSet) {
		t.Errorf("WriteSummary: err = %v, want ErrNotSet", err)
	}
	if err := ghactions.SetOutputs(map[string]string{"a": "b"}); !errors.Is(err, ghactions.ErrNotSet) {
		t.Errorf("SetOutputs: err = %v, want ErrNotSet", err)
	}
	t.Setenv(ghactions.EnvSummary, filepath.Join(t.TempDir(), "missing-dir", "summary.md"))
	if err := ghactions.WriteSummary("x"); err == nil || errors.Is(err, ghactions.ErrNotSet) {
		t.Errorf("unwritable summary file: err = %v, want an open error", err)
	}
}

func TestAnnotationString(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    ghactions.Annotation
		want string
	}{
		{"message only", ghactions.Annotation{Level: ghactions.Error, Message: "gate FAIL"},
			"::error::gate FAIL"},
		{"file and line", ghactions.Annotation{Level: ghactions.Warning, File: "examples/linreg/modelci.yaml", Line: 12, Message: "held"},
			"::warning file=examples/linreg/modelci.yaml,line=12::held"},
		{"title", ghactions.Annotation{Level: ghactions.Notice, Title: "modelci gate: diabetes PASS", Message: "ok"},
			"::notice title=modelci gate%3A diabetes PASS::ok"},
		{"message cannot start a second command", ghactions.Annotation{Level: ghactions.Error, Message: "bad\n::add-mask::x\r\n100%"},
			"::error::bad%0A::add-mask::x%0D%0A100%25"},
		{"properties cannot end the list", ghactions.Annotation{Level: ghactions.Error, File: "a,title=x:y.yaml", Title: "t\n::warning::", Message: "m"},
			"::error file=a%2Ctitle=x%3Ay.yaml,title=t%0A%3A%3Awarning%3A%3A::m"},
		{"percent first", ghactions.Annotation{Level: ghactions.Error, Message: "%0A"},
			"::error::%250A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if strings.ContainsAny(tc.a.String(), "\r\n") {
				t.Errorf("the command spans lines")
			}
		})
	}
}

func TestAnnotate(t *testing.T) {
	var buf bytes.Buffer
	defer ghactions.SetCommandWriter(&buf)()
	if err := ghactions.Annotate(ghactions.Error, "check threshold is FAIL:\nupper bound 5,120", "modelci.yaml", 3); err != nil {
		t.Fatal(err)
	}
	if want := "::error file=modelci.yaml,line=3::check threshold is FAIL:%0Aupper bound 5,120\n"; buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
	buf.Reset()
	if err := ghactions.Annotate("fatal", "x", "", 0); !errors.Is(err, ghactions.ErrLevel) {
		t.Errorf("level fatal: err = %v, want ErrLevel", err)
	}
	if buf.Len() != 0 {
		t.Errorf("a refused annotation wrote %q", buf.String())
	}
}
