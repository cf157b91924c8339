package ghactions_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// The workflows, relative to this package's directory.
const workflowDir = "../.github/workflows"

var workflowFiles = []string{"ci.yml", "release.yml", "promote.yml"}

type workflow struct {
	Permissions yaml.Node      `yaml:"permissions"`
	Concurrency *concurrency   `yaml:"concurrency"`
	Jobs        map[string]job `yaml:"jobs"`
}

type concurrency struct {
	Group            string `yaml:"group"`
	CancelInProgress bool   `yaml:"cancel-in-progress"`
}

type job struct {
	Permissions yaml.Node         `yaml:"permissions"`
	Concurrency *concurrency      `yaml:"concurrency"`
	Environment yaml.Node         `yaml:"environment"`
	Env         map[string]string `yaml:"env"`
	Steps       []step            `yaml:"steps"`
}

type step struct {
	Name string            `yaml:"name"`
	ID   string            `yaml:"id"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

func loadWorkflow(t *testing.T, name string) workflow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(workflowDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(w.Jobs) == 0 {
		t.Fatalf("%s: no jobs", name)
	}
	return w
}

// permissions decodes a permissions block: a map, or "read-all" and the like.
func permissions(t *testing.T, n yaml.Node) (map[string]string, bool) {
	t.Helper()
	if n.Kind == 0 {
		return nil, false
	}
	var m map[string]string
	if err := n.Decode(&m); err != nil {
		t.Fatalf("permissions at line %d: %v", n.Line, err)
	}
	return m, true
}

func engineVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../dagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		EngineVersion string `json:"engineVersion"`
	}
	if err := json.Unmarshal(b, &d); err != nil || d.EngineVersion == "" {
		t.Fatalf("dagger.json: engineVersion %q, %v", d.EngineVersion, err)
	}
	return d.EngineVersion
}

var pinned = regexp.MustCompile(`^[\w.-]+/[\w.-]+@[0-9a-f]{40}$`)

func TestWorkflowsLeastPrivilege(t *testing.T) {
	for _, name := range workflowFiles {
		t.Run(name, func(t *testing.T) {
			w := loadWorkflow(t, name)
			top, ok := permissions(t, w.Permissions)
			if !ok {
				t.Errorf("no top-level permissions: jobs would get the repository's default token")
			}
			for k, v := range top {
				if v != "read" && v != "none" {
					t.Errorf("top-level permission %s: %s, want read or none (jobs ask for more)", k, v)
				}
			}
			for id, j := range w.Jobs {
				if _, ok := permissions(t, j.Permissions); !ok {
					t.Errorf("job %s: no permissions block", id)
				}
			}
		})
	}
}

func TestWorkflowsPinActionsAndEngine(t *testing.T) {
	want := engineVersion(t)
	daggerSteps := 0
	for _, name := range workflowFiles {
		w := loadWorkflow(t, name)
		for id, j := range w.Jobs {
			for i, s := range j.Steps {
				if s.Uses != "" && !pinned.MatchString(s.Uses) {
					t.Errorf("%s job %s step %d: %s is not pinned to a commit", name, id, i+1, s.Uses)
				}
				if strings.HasPrefix(s.Uses, "dagger/dagger-for-github@") {
					daggerSteps++
					if s.With["version"] != want {
						t.Errorf("%s job %s: dagger-for-github version %q, want dagger.json's engine %s", name, id, s.With["version"], want)
					}
					for _, k := range []string{"call", "args", "shell"} {
						if s.With[k] != "" {
							t.Errorf("%s job %s: dagger-for-github runs %s %q: the action splices it into a script; run dagger in a step of ours", name, id, k, s.With[k])
						}
					}
				}
				// Values reach scripts through env, never by template
				// expansion into the script text (script injection).
				if strings.Contains(s.Run, "${{") {
					t.Errorf("%s job %s step %q: an expression inside run:", name, id, s.Name)
				}
			}
		}
	}
	if daggerSteps == 0 {
		t.Error("no workflow installs dagger")
	}
}

// callStep is the step that runs `dagger call FN`.
func callStep(t *testing.T, j job, fn string) step {
	t.Helper()
	for _, s := range j.Steps {
		for _, c := range daggerCalls(s.Run) {
			if c.fn == fn {
				return s
			}
		}
	}
	t.Fatalf("no step runs dagger call %s", fn)
	return step{}
}

func TestReleaseSignsKeylessWithTheWorkflowIdentity(t *testing.T) {
	w := loadWorkflow(t, "release.yml")
	j, ok := w.Jobs["release"]
	if !ok {
		t.Fatal("release.yml has no release job")
	}
	perms, _ := permissions(t, j.Permissions)
	if want := map[string]string{"contents": "read", "packages": "write", "id-token": "write"}; !mapsEqual(perms, want) {
		t.Errorf("release job permissions %v, want %v", perms, want)
	}
	if env := j.Environment.Value; env != "staging" {
		t.Errorf("release job environment %q, want staging", env)
	}
	if j.Concurrency == nil || !strings.Contains(j.Concurrency.Group, "matrix.model") || j.Concurrency.CancelInProgress {
		t.Errorf("release job concurrency %+v: want a group per model that never cancels a running release", j.Concurrency)
	}

	s := callStep(t, j, "release")
	run := s.Run
	request := strings.Index(run, `"$ACTIONS_ID_TOKEN_REQUEST_URL&audience=sigstore"`)
	mask := strings.Index(run, `echo "::add-mask::$OIDC_TOKEN"`)
	call := strings.Index(run, "dagger call release")
	switch {
	case !strings.Contains(run, `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`):
		t.Error("the release step does not authenticate the token request with ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	case request < 0:
		t.Error("the release step does not request a token for the sigstore audience from ACTIONS_ID_TOKEN_REQUEST_URL")
	case mask < 0 || mask < request:
		t.Error("the token is not masked after it is requested")
	case call < mask:
		t.Error("dagger call release runs before the token is masked")
	}
	c := daggerCalls(run)[0]
	if got := c.flags["oidc-token"]; got != "env:OIDC_TOKEN" {
		t.Errorf("--oidc-token %q, want the secret env:OIDC_TOKEN", got)
	}
	if got := c.flags["password"]; !strings.HasPrefix(got, "env:") {
		t.Errorf("--password %q, want a secret (env:…)", got)
	}
	if got := c.flags["address"]; got != "$address" || !strings.Contains(run, `address="ghcr.io/${GITHUB_REPOSITORY,,}/$MODEL"`) {
		t.Errorf("--address %q: want the container registry under the repository's name", got)
	}
	if got := c.flags["kubeconfig"]; got != "env:KUBECONFIG_DATA" || s.Env["KUBECONFIG_DATA"] != "${{ secrets.KUBECONFIG }}" {
		t.Errorf("--kubeconfig %q from %q: want the staging environment's KUBECONFIG secret", got, s.Env["KUBECONFIG_DATA"])
	}
	// The token lives in that one step: no later step or action sees it.
	for _, o := range j.Steps {
		if strings.Contains(o.Run, "OIDC_TOKEN") && (strings.Contains(o.Run, "GITHUB_ENV") || strings.Contains(o.Run, "GITHUB_OUTPUT")) {
			t.Errorf("step %q may export the OIDC token", o.Name)
		}
	}
	summary := false
	for _, o := range j.Steps {
		summary = summary || strings.Contains(o.Run, `>> "$GITHUB_STEP_SUMMARY"`)
	}
	if !summary {
		t.Error("no step writes the job summary")
	}
}

func TestPromoteUsesEnvironmentApprovals(t *testing.T) {
	w := loadWorkflow(t, "promote.yml")
	j := w.Jobs["promote"]
	if got := j.Environment.Value; got != "${{ inputs.to }}" {
		t.Errorf("promote job environment %q, want ${{ inputs.to }}: the target environment's rules approve", got)
	}
	if w.Concurrency == nil || !strings.Contains(w.Concurrency.Group, "inputs.model") || !strings.Contains(w.Concurrency.Group, "inputs.to") || w.Concurrency.CancelInProgress {
		t.Errorf("promote concurrency %+v: want one group per model and environment, never cancelled", w.Concurrency)
	}
	c := daggerCalls(callStep(t, j, "promote").Run)[0]
	for _, f := range []string{"model", "from", "to", "reason", "kubeconfig"} {
		if c.flags[f] == "" {
			t.Errorf("dagger call promote without --%s", f)
		}
	}
}

func TestCIGatesAndComments(t *testing.T) {
	w := loadWorkflow(t, "ci.yml")
	var commands []string
	for _, j := range w.Jobs {
		for _, s := range j.Steps {
			commands = append(commands, s.Run)
		}
	}
	all := strings.Join(commands, "\n")
	for _, want := range []string{"go vet ./...", "go test ./...", "tools/actionlint/build.sh", "dagger call test", "dagger call gate", "modelci-gate:"} {
		if !strings.Contains(all, want) {
			t.Errorf("ci.yml never runs %q", want)
		}
	}
	gate := w.Jobs["gate"]
	perms, _ := permissions(t, gate.Permissions)
	if want := map[string]string{"contents": "read", "pull-requests": "write"}; !mapsEqual(perms, want) {
		t.Errorf("gate job permissions %v, want %v", perms, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestActionlint runs actionlint (tools/actionlint, and shellcheck on the
// scripts when it is installed) on every workflow.
func TestActionlint(t *testing.T) {
	bin := os.Getenv("MODELCI_ACTIONLINT")
	if bin == "" {
		t.Skip("MODELCI_ACTIONLINT is not set: build actionlint with tools/actionlint/build.sh and set it to the path it prints (.ci/run does)")
	}
	args := []string{"-no-color"}
	for _, f := range workflowFiles {
		args = append(args, filepath.Join(".github/workflows", f))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("actionlint: %v\n%s", err, out)
	}
}

// A dagger call found in a script: the function and its --flags.
type daggerCall struct {
	fn    string
	flags map[string]string // name → value ("" for a bool)
	chain []string          // the words after the arguments: fields, export…
}

// daggerCalls finds every `dagger call FN …` in a bash script, expanding
// "${NAME[@]}" from the script's NAME=(…) assignments.
func daggerCalls(script string) []daggerCall {
	script = strings.ReplaceAll(script, "\\\n", " ")
	arrays := map[string][]string{}
	assign := regexp.MustCompile(`^\s*(\w+)=\((.*)\)\s*$`)
	for _, line := range strings.Split(script, "\n") {
		if m := assign.FindStringSubmatch(line); m != nil {
			arrays[m[1]] = append(arrays[m[1]], shellWords(m[2])...)
		}
	}
	expand := regexp.MustCompile(`^\$\{(\w+)\[@\]\}$`)
	var calls []daggerCall
	for _, line := range strings.Split(script, "\n") {
		words := shellWords(line)
		for i := 0; i+2 < len(words); i++ {
			if words[i] != "dagger" || words[i+1] != "call" {
				continue
			}
			var rest []string
			for _, w := range words[i+3:] {
				if w == ">" || w == "|" || w == ";" || w == "&&" || w == "||" {
					break
				}
				if m := expand.FindStringSubmatch(w); m != nil {
					rest = append(rest, arrays[m[1]]...)
					continue
				}
				rest = append(rest, w)
			}
			c := daggerCall{fn: words[i+2], flags: map[string]string{}}
			for k := 0; k < len(rest); k++ {
				w := rest[k]
				if !strings.HasPrefix(w, "--") {
					c.chain = rest[k:]
					break
				}
				name, value, ok := strings.Cut(strings.TrimPrefix(w, "--"), "=")
				if !ok && k+1 < len(rest) && !strings.HasPrefix(rest[k+1], "--") && !boolFlags[name] {
					value = rest[k+1]
					k++
				}
				c.flags[name] = value
			}
			calls = append(calls, c)
		}
	}
	return calls
}

// boolFlags are the module's boolean arguments (they take no value).
var boolFlags = map[string]bool{"gpu": true, "allow-overwrite": true}

// shellWords splits a line into words the way bash would for simple
// commands: quotes removed, variables left as written, > | ; split off.
func shellWords(line string) []string {
	var words []string
	var b strings.Builder
	inWord := false
	var quote rune
	flush := func() {
		if inWord {
			words = append(words, b.String())
		}
		b.Reset()
		inWord = false
	}
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				b.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '#' && !inWord:
			flush()
			return words
		case unicode.IsSpace(r):
			flush()
		case r == '>' || r == '|' || r == ';':
			flush()
			words = append(words, string(r))
		default:
			b.WriteRune(r)
			inWord = true
		}
	}
	flush()
	return words
}

// moduleAPI is the Dagger module's functions as `dagger call` spells them:
// each function's arguments, and the fields of the objects it returns.
type moduleAPI struct {
	args   map[string]map[string]bool // function → argument → true
	fields map[string]map[string]bool // function → field of its result (when a struct of the module)
}

// kebab is dagger call's spelling of a Go name: oidcToken → oidc-token.
func kebab(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) && i > 0 && (unicode.IsLower(rs[i-1]) || unicode.IsDigit(rs[i-1])) {
			b.WriteByte('-')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

func loadModuleAPI(t *testing.T) moduleAPI {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("../ci/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("the Dagger module's source in ../ci: %v", err)
	}
	structs := map[string]map[string]bool{}
	var funcs []*ast.FuncDecl
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || strings.HasSuffix(f, "dagger.gen.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv != nil && d.Name.IsExported() && recvName(d) == "Modelci" {
					funcs = append(funcs, d)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					ts, ok := s.(*ast.TypeSpec)
					if !ok {
						continue
					}
					st, ok := ts.Type.(*ast.StructType)
					if !ok {
						continue
					}
					fs := map[string]bool{}
					for _, fl := range st.Fields.List {
						for _, n := range fl.Names {
							if n.IsExported() {
								fs[kebab(n.Name)] = true
							}
						}
					}
					structs[ts.Name.Name] = fs
				}
			}
		}
	}
	api := moduleAPI{args: map[string]map[string]bool{}, fields: map[string]map[string]bool{}}
	for _, d := range funcs {
		fn := kebab(d.Name.Name)
		args := map[string]bool{}
		for _, p := range d.Type.Params.List {
			if sel, ok := p.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Context" {
				continue
			}
			for _, n := range p.Names {
				args[kebab(n.Name)] = true
			}
		}
		api.args[fn] = args
		if d.Type.Results != nil && len(d.Type.Results.List) > 0 {
			if star, ok := d.Type.Results.List[0].Type.(*ast.StarExpr); ok {
				if id, ok := star.X.(*ast.Ident); ok && structs[id.Name] != nil {
					api.fields[fn] = structs[id.Name]
				}
			}
		}
	}
	return api
}

func recvName(d *ast.FuncDecl) string {
	t := d.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// awaiting is what the workflows use that the Dagger module does not have
// yet. The test fails once the module has one, so that it leaves this list.
var awaiting = map[string]bool{}

// TestWorkflowsMatchTheDaggerModule checks every `dagger call` in the
// workflows against the module's source: the function exists, takes each
// flag, and returns an object with the field selected.
func TestWorkflowsMatchTheDaggerModule(t *testing.T) {
	api := loadModuleAPI(t)
	used := map[string]bool{}
	calls := 0
	for _, name := range workflowFiles {
		w := loadWorkflow(t, name)
		for id, j := range w.Jobs {
			for _, s := range j.Steps {
				for _, c := range daggerCalls(s.Run) {
					calls++
					where := name + " job " + id + ": dagger call " + c.fn
					args, ok := api.args[c.fn]
					if !ok {
						t.Errorf("%s: the module has no function %s", where, c.fn)
						continue
					}
					for f := range c.flags {
						key := c.fn + " --" + f
						used[key] = true
						if !args[f] && !awaiting[key] {
							t.Errorf("%s: no argument --%s (has %v)", where, f, slices.Sorted(maps.Keys(args)))
						}
					}
					if fields := api.fields[c.fn]; fields != nil && len(c.chain) > 0 {
						key := c.fn + " ." + c.chain[0]
						used[key] = true
						if !fields[c.chain[0]] && !awaiting[key] {
							t.Errorf("%s: its result has no field %s (has %v)", where, c.chain[0], slices.Sorted(maps.Keys(fields)))
						}
					}
				}
			}
		}
	}
	if calls == 0 {
		t.Fatal("no dagger call found in the workflows")
	}
	for key := range awaiting {
		fn, what, _ := strings.Cut(key, " ")
		has := api.args[fn][strings.TrimPrefix(what, "--")]
		if strings.HasPrefix(what, ".") {
			has = api.fields[fn][strings.TrimPrefix(what, ".")]
		}
		switch {
		case has:
			t.Errorf("the module now has %s: remove it from awaiting", key)
		case !used[key]:
			t.Errorf("awaiting lists %s, which no workflow uses", key)
		default:
			t.Logf("awaiting the module: %s", key)
		}
	}
}
