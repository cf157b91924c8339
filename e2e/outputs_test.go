package e2e

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// jqCall is one jq command line of a workflow, its file argument left
// out: run on a JSON document, it prints what the workflow reads.
type jqCall struct {
	line string   // the workflow's line, for messages
	args []string // jq's arguments before the file
}

// key names what c reads: its --arg value (the key a '.[$k]' filter looks
// up), else its filter.
func (c jqCall) key() string {
	if i := indexOf(c.args, "--arg"); i >= 0 && i+2 < len(c.args) {
		return c.args[i+2]
	}
	return c.args[len(c.args)-1]
}

// workflowFilters are the jq commands of .github/workflows/NAME that read
// file (the shell word naming the module's JSON result, e.g. "$r"), with
// the loop variable of `for k in A B; do … --arg k "$k"` expanded to each
// of A, B. The tests run these, not copies, so the workflows and the tests
// cannot drift apart.
func workflowFilters(t *testing.T, name, file string) []jqCall {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), ".github", "workflows", name))
	if err != nil {
		t.Fatal(err)
	}
	loop := regexp.MustCompile(`for (\w+) in ([^;]+); do`)
	loops := map[string][]string{}
	var calls []jqCall
	for _, line := range strings.Split(string(b), "\n") {
		if m := loop.FindStringSubmatch(line); m != nil {
			loops[m[1]] = strings.Fields(m[2])
		}
		i := strings.Index(line, "jq ")
		j := strings.LastIndex(line, " "+file)
		if i < 0 || j < i {
			continue
		}
		words, err := shellWords(line[i+len("jq ") : j])
		if err != nil {
			t.Fatalf("%s: %q: %v", name, line, err)
		}
		// `--arg NAME "$VAR"` with VAR a loop variable: one call per value.
		expanded := [][]string{words}
		for k, w := range words {
			if k > 0 && words[k-1] != "--arg" && strings.HasPrefix(w, "$") {
				if vals, ok := loops[strings.TrimPrefix(w, "$")]; ok {
					expanded = nil
					for _, v := range vals {
						ws := append([]string(nil), words...)
						ws[k] = v
						expanded = append(expanded, ws)
					}
				}
			}
		}
		for _, ws := range expanded {
			calls = append(calls, jqCall{line: strings.TrimSpace(line), args: ws})
		}
	}
	if len(calls) == 0 {
		t.Fatalf("%s has no jq command reading %s", name, file)
	}
	return calls
}

// shellWords splits s as the shell would, for the quoting jq lines use:
// '…' literal, "…" with $VAR kept as written, bare words.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' || c == '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return nil, &os.PathError{Op: "unterminated quote", Path: s}
			}
			w.WriteString(s[i+1 : i+1+end])
			i += end + 1
			in = true
		case c == ' ' || c == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, w.String())
	}
	return words, nil
}

// jq runs Debian's jq with args on doc, as a workflow step does.
func jq(t *testing.T, doc string, args ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "doc.json")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("jq", append(args, f)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jq %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSuffix(string(out), "\n")
}

// workflowReads runs every jq command of workflow that reads file on doc,
// and returns what each printed by its filter (with an --arg, the
// filter's argument value). An empty or null answer fails: the workflow
// would read nothing there (jq, unlike Go's decoder, matches keys by
// case).
func workflowReads(t *testing.T, workflow, file, doc string) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, c := range workflowFilters(t, workflow, file) {
		out := jq(t, doc, c.args...)
		key := c.key()
		if out == "" || out == "null" {
			t.Errorf("%s: %q reads %q from the module's result:\n%.600s", workflow, c.line, out, doc)
		}
		got[key] = out
	}
	return got
}

func indexOf(s []string, v string) int {
	for i, w := range s {
		if w == v {
			return i
		}
	}
	return -1
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// checkDocument fails unless doc is a JSON object with a schema key
// (want) and snake_case keys at every depth, and no string in it names
// the registry by the tunnel's inner host (registry:PORT) rather than as
// the caller does.
func checkDocument(t *testing.T, doc, want string) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatalf("the module's JSON result: %v\n%.600s", err, doc)
	}
	if obj["schema"] != want {
		t.Errorf("schema %v, want %s", obj["schema"], want)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if !snakeCase.MatchString(k) {
					t.Errorf("key %s%s is not snake_case", path, k)
				}
				walk(path+k+".", e)
			}
		case []any:
			for _, e := range v {
				walk(path, e)
			}
		case string:
			if regexp.MustCompile(`(^|[^.\w])registry:\d+/`).MatchString(v) {
				t.Errorf("%s names the registry by the tunnel: %.200s", strings.TrimSuffix(path, "."), v)
			}
		}
	}
	walk("", obj)
	return obj
}

// TestWorkflowFilters: the jq commands the tests run are found in the
// workflows, so a changed workflow line is tested as it now reads, and one
// the extraction misses fails here rather than going untested.
func TestWorkflowFilters(t *testing.T) {
	tests := []struct {
		workflow, file string
		want           []string
	}{
		// The reusable workflow's release, promote and gate jobs (ci.yml,
		// release.yml and promote.yml call it).
		{"modelci.yml", `"$r"`, []string{".summary", "verdict", "version", "digest", "ref", "signature", ".verdict", ".exit_code", ".ref"}},
		{"modelci.yml", `"$RUNNER_TEMP/promote.json"`, []string{".image"}},
		{"modelci.yml", `"$out/gate.json"`, []string{".verdict", ".on_inconclusive"}},
	}
	for _, tt := range tests {
		var got []string
		for _, c := range workflowFilters(t, tt.workflow, tt.file) {
			got = append(got, c.key())
		}
		sort.Strings(got)
		sort.Strings(tt.want)
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("%s reads %v from %s, want %v", tt.workflow, got, tt.file, tt.want)
		}
	}
}

// TestModuleArgumentsDocumented: every argument of every exported
// function of the module has a description in the comment right above it
// (Dagger's help text for the flag), not only pragmas (+optional…).
func TestModuleArgumentsDocumented(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "ci")
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range files {
		if strings.HasSuffix(name, "dagger.gen.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		lines := map[int]string{}
		for _, g := range f.Comments {
			for _, c := range g.List {
				lines[fset.Position(c.Pos()).Line] = strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
			}
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || !fd.Name.IsExported() || fd.Recv == nil && fd.Name.Name != "New" {
				continue
			}
			for _, p := range fd.Type.Params.List {
				if sel, ok := p.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Context" {
					continue
				}
				n++
				described := false
				for l := fset.Position(p.Pos()).Line - 1; ; l-- {
					c, ok := lines[l]
					if !ok {
						break
					}
					if c != "" && !strings.HasPrefix(c, "+") {
						described = true
					}
				}
				if !described {
					t.Errorf("%s: %s's argument %s has no description above it", fset.Position(p.Pos()), fd.Name.Name, p.Names[0].Name)
				}
			}
		}
	}
	if n < 80 {
		t.Errorf("found %d arguments in %s; the module has more: is the parse right?", n, dir)
	}
}
