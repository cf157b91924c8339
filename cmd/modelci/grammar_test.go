package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelci/modelci/internal/stage"
	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/deploy"
)

// TestCLIGrammar is the one table of every command's output flags: a
// command that reports has -o/--output, a format (text or json; gate also
// markdown; default text), refused at parse time (exit 2) when it is none
// of them, with its values completed; a command that takes an output
// directory takes it as --output-dir, and only there may --output (never
// -o's completion) still name a directory. The walk of the cobra tree must
// find exactly the table's commands, so a new command joins the table.
func TestCLIGrammar(t *testing.T) {
	text, gate := []string{"text", "json"}, []string{"text", "json", "markdown"}
	tests := []struct {
		path    string
		formats []string // nil: reports nothing on stdout (a server, a parent)
		dir     bool     // takes --output-dir (and --output DIR, deprecated)
		args    int      // positional arguments, for the -o check
	}{
		{"modelci", nil, false, 0},
		{"modelci completion", nil, false, 0},
		{"modelci completion bash", nil, false, 0},
		{"modelci completion fish", nil, false, 0},
		{"modelci completion powershell", nil, false, 0},
		{"modelci completion zsh", nil, false, 0},
		{"modelci help", nil, false, 0},
		{"modelci serve", nil, false, 0},          // logs JSON lines; its flags are serve.Main's
		{"modelci registry", nil, false, 0},       // a parent
		{"modelci registry serve", nil, false, 0}, // a server
		{"modelci stage", nil, false, 0},          // hidden: the Dagger module's steps
		{"modelci run", text, true, 0},
		{"modelci gc", text, true, 0},
		{"modelci runs", text, true, 0},
		{"modelci rebuild", text, true, 1},
		{"modelci init", text, false, 0},
		{"modelci version", text, false, 0},
		{"modelci doctor", text, false, 0},
		{"modelci keygen", text, false, 0},
		{"modelci copy", text, false, 2},
		{"modelci sign", text, false, 1},
		{"modelci verify", text, false, 1},
		{"modelci gate", gate, false, 0},
		{"modelci diff", text, false, 0},
		{"modelci deploy", text, false, 1},
		{"modelci status", text, false, 1},
		{"modelci history", text, false, 1},
		{"modelci rollback", text, false, 1},
		{"modelci promote", text, false, 1},
	}
	root := newRootCmd()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	cmds := map[string]*cobra.Command{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		cmds[c.CommandPath()] = c
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, tt := range tests {
		c, ok := cmds[tt.path]
		if !ok {
			t.Errorf("%s: no such command", tt.path)
			continue
		}
		delete(cmds, tt.path)
		t.Run(strings.TrimPrefix(strings.ReplaceAll(tt.path, " ", "_"), "modelci_"), func(t *testing.T) {
			// Every flag: --output is only ever the format, a directory is
			// --output-dir, and no other flag says it takes one.
			c.LocalFlags().VisitAll(func(f *pflag.Flag) {
				switch {
				case f.Name == "output" && f.Value.Type() != "format":
					t.Errorf("--output is a %s, not the format", f.Value.Type())
				case f.Name == "output-dir" && f.Annotations[cobra.BashCompSubdirsInDir] == nil:
					t.Errorf("--output-dir does not complete directories")
				case f.Name == "output-format" && !f.Hidden:
					t.Errorf("--output-format (deprecated) is not hidden")
				case f.Name != "output-dir" && strings.Contains(strings.ToLower(f.Usage), "output directory"):
					t.Errorf("--%s takes the output directory: it must be --output-dir", f.Name)
				case strings.HasPrefix(f.Name, "output") && !slices.Contains([]string{"output", "output-dir", "output-format", "output-key-prefix"}, f.Name):
					t.Errorf("--%s: an output flag outside the grammar", f.Name)
				}
			})
			o := c.LocalFlags().Lookup("output")
			if tt.formats == nil {
				if o != nil {
					t.Fatalf("has --output, and reports nothing")
				}
				return
			}
			if o == nil || o.Shorthand != "o" || o.DefValue != "text" {
				t.Fatalf("--output %+v; want -o/--output, default text", o)
			}
			for _, f := range tt.formats {
				if !strings.Contains(o.Usage, f) {
					t.Errorf("-o's usage %q does not name %s", o.Usage, f)
				}
			}
			complete, ok := c.GetFlagCompletionFunc("output")
			if !ok {
				t.Fatal("-o has no completion")
			}
			if got, _ := complete(c, nil, ""); !slices.Equal(got, tt.formats) {
				t.Errorf("-o completes %q, want %q", got, tt.formats)
			}
			if d := c.LocalFlags().Lookup("output-dir"); (d != nil) != tt.dir {
				t.Errorf("--output-dir: %v, want %v", d != nil, tt.dir)
			}
			// A value that is no format exits 2 before anything runs; a
			// command that takes --output DIR accepts only an existing
			// directory that way, and run any directory (it makes it).
			if tt.path == "modelci run" {
				return
			}
			a := append(strings.Fields(tt.path)[1:], slices.Repeat([]string{"x"}, tt.args)...)
			if tt.dir {
				a = append(a, "-C", t.TempDir())
			}
			code, stdout, stderr := run(t, append(a, "-o", "yaml")...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, "want "+orList(tt.formats)) {
				t.Errorf("-o yaml: exit %d, stdout %q, stderr %q; want 2 and %q", code, stdout, stderr, "want "+orList(tt.formats))
			}
		})
	}
	for path := range cmds {
		t.Errorf("%s is not in the table", path)
	}
}

// decodeOne decodes stdout as exactly one JSON object.
func decodeOne(t *testing.T, stdout string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("stdout holds more than one JSON document:\n%s", stdout)
	}
	return doc
}

// keysOf is the sorted keys of doc.
func keysOf(doc map[string]any) []string {
	var k []string
	for key := range doc {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

// TestRunJSON: run -o json prints one document, modelci.dev/run-result/v1,
// for a PASS (the reference and digest), a FAIL (exit 3, ref empty, the
// run succeeded) and a failed run (exit 1, status failed, the error).
func TestRunJSON(t *testing.T) {
	base := []string{"decision", "digest", "ref", "run_dir", "run_id", "schema", "status", "verdict"}
	t.Run("pass", func(t *testing.T) {
		dir := example(t, nil)
		code, stdout, stderr := run(t, "run", "-C", dir, "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		doc := decodeOne(t, stdout)
		if k := keysOf(doc); !slices.Equal(k, base) {
			t.Errorf("keys %q, want %q", k, base)
		}
		ref, _ := doc["ref"].(string)
		if doc["schema"] != runSchema || doc["status"] != "succeeded" || doc["verdict"] != "PASS" || doc["decision"] != "release" ||
			!strings.HasPrefix(ref, "oci-layout://"+filepath.Join(dir, ".modelci", "oci")+"@sha256:") || !strings.HasSuffix(ref, "@"+doc["digest"].(string)) {
			t.Errorf("run -o json:\n%s", stdout)
		}
		if id, _ := doc["run_id"].(string); id == "" || !strings.Contains(stderr, "run "+id+": ") {
			t.Errorf("run_id %q, stderr:\n%s", id, stderr)
		}
	})
	t.Run("fail", func(t *testing.T) {
		dir := example(t, func(s string) string { return strings.Replace(s, "threshold: 5000", "threshold: 0.01", 1) })
		code, stdout, stderr := run(t, "run", "-C", dir, "-o", "json")
		if code != 3 {
			t.Fatalf("exit %d, want 3\n%s", code, stderr)
		}
		// The progress line keeps the threshold's digits (it once said ≤ 0.0).
		if !strings.Contains(stderr, "vs ≤ 0.01,") {
			t.Errorf("the gate's progress line:\n%s", stderr)
		}
		doc := decodeOne(t, stdout)
		if k := keysOf(doc); !slices.Equal(k, base) {
			t.Errorf("keys %q, want %q", k, base)
		}
		if doc["status"] != "succeeded" || doc["verdict"] != "FAIL" || doc["decision"] != "refuse" || doc["ref"] != "" || doc["digest"] != "" {
			t.Errorf("a refused run:\n%s", stdout)
		}
	})
	t.Run("failed", func(t *testing.T) {
		dir := example(t, func(s string) string {
			return regexp.MustCompile(`(?s)\ntrain:\n.*?\ngate:`).ReplaceAllLiteralString(s,
				"\ntrain:\n  command: [sh, -c, 'echo trainer broke >&2; exit 7']\n  format: linear\nevaluate:\n  command: [sh, -c, 'exit 1']\ngate:")
		})
		code, stdout, stderr := run(t, "run", "-C", dir, "-o", "json")
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s", code, stderr)
		}
		doc := decodeOne(t, stdout)
		if k := keysOf(doc); !slices.Equal(k, []string{"decision", "digest", "error", "ref", "run_dir", "run_id", "schema", "status", "verdict"}) {
			t.Errorf("keys %q", k)
		}
		if doc["status"] != "failed" || doc["ref"] != "" || !strings.Contains(doc["error"].(string), "train") || doc["run_id"] == "" {
			t.Errorf("a failed run:\n%s", stdout)
		}
	})
	t.Run("no spec", func(t *testing.T) {
		code, stdout, _ := run(t, "run", "-C", t.TempDir(), "-o", "json")
		doc := decodeOne(t, stdout)
		if code != 1 || doc["status"] != "failed" || !strings.Contains(doc["error"].(string), "modelci init") || doc["run_id"] != "" {
			t.Errorf("exit %d, stdout:\n%s", code, stdout)
		}
	})
}

// TestOutputDirBackwardCompatible: run, runs, gc and rebuild still take
// --output DIR, with one warning; --output-dir is the flag; runs'
// --output-format is a deprecated -o.
func TestOutputDirBackwardCompatible(t *testing.T) {
	dir := example(t, nil)
	code, stdout, stderr := run(t, "run", "-C", dir, "--output", "elsewhere")
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(stdout), "oci-layout://"+filepath.Join(dir, "elsewhere", "oci")+"@sha256:") {
		t.Fatalf("run --output elsewhere: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	warning := regexp.MustCompile(`(?m)^modelci run: warning: --output elsewhere is taken as the output directory; .*use --output-dir elsewhere`)
	if n := len(warning.FindAllString(stderr, -1)); n != 1 || strings.Count(stderr, "warning: --output") != 1 {
		t.Fatalf("want one warning, got %d:\n%s", n, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, ".modelci")); !os.IsNotExist(err) {
		t.Fatalf("run --output elsewhere wrote the spec's output directory too: %v", err)
	}
	list := func(args ...string) (map[string]any, string) {
		t.Helper()
		code, stdout, stderr := run(t, append([]string{"runs", "-C", dir}, args...)...)
		if code != 0 {
			t.Fatalf("runs %q: exit %d\n%s", args, code, stderr)
		}
		return decodeOne(t, stdout), stderr
	}
	got, stderr := list("--output-dir", "elsewhere", "-o", "json")
	if runs, _ := got["runs"].([]any); len(runs) != 1 || stderr != "" {
		t.Fatalf("runs --output-dir elsewhere -o json: %v\n%s", got, stderr)
	}
	got, stderr = list("--output", "elsewhere", "--output-format", "json")
	if runs, _ := got["runs"].([]any); len(runs) != 1 || !strings.Contains(stderr, "--output elsewhere is taken as the output directory") || !strings.Contains(stderr, "--output-format is deprecated") {
		t.Fatalf("runs --output elsewhere --output-format json: %v\n%s", got, stderr)
	}
	if code, _, stderr := run(t, "runs", "-C", dir, "--output-dir", "elsewhere", "--output", "nowhere"); code != 2 {
		t.Fatalf("runs --output-dir and --output DIR: exit %d, want 2\n%s", code, stderr)
	}
	code, stdout, stderr = run(t, "gc", "-C", dir, "--output-dir", "elsewhere", "--keep", "5", "-o", "json")
	if doc := decodeOne(t, stdout); code != 0 || doc["schema"] != gcSchema || doc["output"] != filepath.Join(dir, "elsewhere") {
		t.Fatalf("gc -o json: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestVersion: modelci version prints the version, commit, Go version and
// platform; -o json is a flat object of them; modelci --version prints
// the same text.
func TestVersion(t *testing.T) {
	code, stdout, stderr := run(t, "version", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	doc := decodeOne(t, stdout)
	if k := keysOf(doc); !slices.Equal(k, []string{"commit", "go_version", "platform", "schema", "version"}) {
		t.Errorf("keys %q", k)
	}
	for key, v := range doc {
		if _, ok := v.(string); !ok {
			t.Errorf("%s is a %T: the object must be flat", key, v)
		}
	}
	if doc["schema"] != versionSchema || !regexp.MustCompile(`^go1\.\d+`).MatchString(doc["go_version"].(string)) || !regexp.MustCompile(`^[a-z0-9]+/[a-z0-9]+$`).MatchString(doc["platform"].(string)) || doc["version"] == "" {
		t.Errorf("version -o json:\n%s", stdout)
	}
	_, text, _ := run(t, "version")
	for _, want := range []string{"modelci " + doc["version"].(string), "go:       " + doc["go_version"].(string), "platform: " + doc["platform"].(string), "commit:   "} {
		if !strings.Contains(text, want) {
			t.Errorf("version lacks %q:\n%s", want, text)
		}
	}
	code, flag, stderr := run(t, "--version")
	if code != 0 || flag != text {
		t.Errorf("--version: exit %d, %q; want %q\n%s", code, flag, text, stderr)
	}
}

// TestCompletion: cobra's __complete (what modelci completion's scripts
// call) completes -o's values, --strategy's, --model-source's, serve's --role's and
// rebuild's RUN_ID from the output directory's runs.
func TestCompletion(t *testing.T) {
	dir := example(t, func(s string) string { return strings.Replace(s, "threshold: 5000", "threshold: 10", 1) })
	if code, _, stderr := run(t, "run", "-C", dir); code != 3 {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	_, stdout, _ := run(t, "runs", "-C", dir, "-o", "json")
	id := decodeOne(t, stdout)["runs"].([]any)[0].(map[string]any)["id"].(string)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"run", "-o", ""}, []string{"text", "json"}},
		{[]string{"gate", "--output", ""}, []string{"text", "json", "markdown"}},
		{[]string{"status", "-o", ""}, []string{"text", "json"}},
		{[]string{"deploy", "--strategy", ""}, []string{"rolling", "canary"}},
		{[]string{"deploy", "--model-source", ""}, []string{"image", "volume"}},
		{[]string{"serve", "--role", ""}, []string{"all", "predict", "preprocess"}},
		{[]string{"rebuild", "-C", dir, ""}, []string{id + "\tsucceeded FAIL 1.0.0"}},
		{[]string{"rebuild", "-C", dir, id[:8]}, []string{id + "\tsucceeded FAIL 1.0.0"}},
		{[]string{"rebuild", "-C", dir, "x"}, nil},
		{[]string{"rebuild", "-C", dir, id, ""}, nil},
	}
	for _, tt := range tests {
		code, stdout, stderr := run(t, append([]string{"__complete"}, tt.args...)...)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if code != 0 || len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], ":") {
			t.Errorf("__complete %q: exit %d\n%s%s", tt.args, code, stdout, stderr)
			continue
		}
		if got := lines[:len(lines)-1]; !slices.Equal(got, tt.want) && !(len(got) == 0 && tt.want == nil) {
			t.Errorf("__complete %q = %q, want %q", tt.args, got, tt.want)
		}
	}
	// The scripts themselves: cobra's, for each shell.
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if code, stdout, stderr := run(t, "completion", shell); code != 0 || !strings.Contains(stdout, "__complete") {
			t.Errorf("completion %s: exit %d\n%s", shell, code, stderr)
		}
	}
}

// TestJSONDocuments audits every JSON document modelci defines (what -o
// json prints, run.json, metrics.json, gate.json, model.json, the Dagger
// module's stage documents): a schema field at the
// top, and snake_case keys all the way down. OCI, in-toto, cosign and the
// serving protocol's bodies follow their own specs and are not here.
func TestJSONDocuments(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	docs := []any{
		runOutput{}, versionInfo{}, gcOutput{}, rebuildOutput{}, pipeline.RunList{}, initOutput{}, keygenOutput{},
		copyOutput{}, doctorOutput{}, signOutput{}, verifyOutput{}, promoteOutput{}, deploy.Report{},
		pipeline.EnvStatusReport{}, modelgate.Report{}, pipeline.Record{}, modelgate.Metrics{},
		model.Linear{}, model.ONNXInfo{}, stage.Plan{}, stage.GateResult{}, stage.Champion{},
	}
	for _, d := range docs {
		ty := reflect.TypeOf(d)
		seen := map[reflect.Type]bool{}
		var keys func(path string, ty reflect.Type) []string
		keys = func(path string, ty reflect.Type) []string {
			for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Array || ty.Kind() == reflect.Map {
				ty = ty.Elem()
			}
			if ty.Kind() != reflect.Struct || seen[ty] || ty == reflect.TypeOf(time.Time{}) {
				return nil
			}
			seen[ty] = true
			var top []string
			for i := range ty.NumField() {
				f := ty.Field(i)
				if !f.IsExported() {
					continue
				}
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if name == "-" {
					continue
				}
				if f.Anonymous && name == "" {
					top = append(top, keys(path, f.Type)...)
					continue
				}
				if !snake.MatchString(name) {
					t.Errorf("%s: %s.%s has the key %q, not snake_case", ty, path, f.Name, name)
				}
				top = append(top, name)
				keys(path+"."+name, f.Type)
			}
			return top
		}
		if top := keys(ty.String(), ty); !slices.Contains(top, "schema") {
			t.Errorf("%s has no schema field: %q", ty, top)
		}
	}
}
