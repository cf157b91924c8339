package ghactions_test

import (
	"encoding/json"
	"fmt"
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

	"github.com/modelci/modelci/spec"
)

// The workflows, relative to this package's directory: this
// repository's callers and the reusable workflow they call.
const workflowDir = "../.github/workflows"

const reusable = "modelci.yml"

var workflowFiles = []string{"ci.yml", "release.yml", "promote.yml", reusable}

// The sample callers of docs/adopting.md, one per mode, relative to this
// package's directory.
const callerDir = "../examples/adopting/workflows"

var callers = map[string]string{"gate": "modelci-gate.yml", "release": "modelci-release.yml", "promote": "modelci-promote.yml"}

// maxCallerLines is the most lines a sample caller may have.
const maxCallerLines = 30

// localReusable is how a caller names the reusable workflow.
const localReusable = "./.github/workflows/" + reusable

type workflow struct {
	On          yaml.Node      `yaml:"on"`
	Permissions yaml.Node      `yaml:"permissions"`
	Concurrency *concurrency   `yaml:"concurrency"`
	Jobs        map[string]job `yaml:"jobs"`
}

type concurrency struct {
	Group            string `yaml:"group"`
	CancelInProgress bool   `yaml:"cancel-in-progress"`
}

type job struct {
	Name        string            `yaml:"name"`
	If          string            `yaml:"if"`
	Uses        string            `yaml:"uses"`
	With        map[string]string `yaml:"with"`
	Secrets     yaml.Node         `yaml:"secrets"`
	Permissions yaml.Node         `yaml:"permissions"`
	Concurrency *concurrency      `yaml:"concurrency"`
	Environment yaml.Node         `yaml:"environment"`
	Env         map[string]string `yaml:"env"`
	Outputs     map[string]string `yaml:"outputs"`
	Steps       []step            `yaml:"steps"`
}

type step struct {
	Name string            `yaml:"name"`
	ID   string            `yaml:"id"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	With map[string]string `yaml:"with"`
	Env  map[string]string `yaml:"env"`
}

func loadWorkflow(t *testing.T, name string) workflow {
	t.Helper()
	return loadWorkflowFile(t, filepath.Join(workflowDir, name))
}

func loadWorkflowFile(t *testing.T, path string) workflow {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var w workflow
	if err := yaml.Unmarshal(b, &w); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(w.Jobs) == 0 {
		t.Fatalf("%s: no jobs", path)
	}
	return w
}

// allWorkflowFiles are the workflows and the sample callers, as paths
// relative to this package's directory.
func allWorkflowFiles() []string {
	var files []string
	for _, f := range workflowFiles {
		files = append(files, filepath.Join(workflowDir, f))
	}
	for _, mode := range slices.Sorted(maps.Keys(callers)) {
		files = append(files, filepath.Join(callerDir, callers[mode]))
	}
	return files
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
	for _, path := range allWorkflowFiles() {
		t.Run(filepath.Base(path), func(t *testing.T) {
			w := loadWorkflowFile(t, path)
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
	for _, path := range allWorkflowFiles() {
		name := filepath.Base(path)
		w := loadWorkflowFile(t, path)
		for id, j := range w.Jobs {
			if j.Uses != "" && j.Uses != localReusable && !pinned.MatchString(j.Uses) {
				t.Errorf("%s job %s: calls %s: want %s or a workflow pinned to a commit", name, id, j.Uses, localReusable)
			}
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

// daggerCall1 is the step's `dagger call FN`.
func daggerCall1(t *testing.T, s step, fn string) daggerCall {
	t.Helper()
	for _, c := range daggerCalls(s.Run) {
		if c.fn == fn {
			return c
		}
	}
	t.Fatalf("step %q does not run dagger call %s", s.Name, fn)
	return daggerCall{}
}

// workflowCall is the on.workflow_call block of the reusable workflow.
type workflowCall struct {
	Inputs map[string]struct {
		Description string `yaml:"description"`
		Required    bool   `yaml:"required"`
		Type        string `yaml:"type"`
		Default     any    `yaml:"default"`
	} `yaml:"inputs"`
	Secrets map[string]struct {
		Description string `yaml:"description"`
		Required    bool   `yaml:"required"`
	} `yaml:"secrets"`
	Outputs map[string]struct {
		Description string `yaml:"description"`
		Value       string `yaml:"value"`
	} `yaml:"outputs"`
}

func loadWorkflowCall(t *testing.T) (workflow, workflowCall) {
	t.Helper()
	w := loadWorkflow(t, reusable)
	var on struct {
		WorkflowCall *workflowCall `yaml:"workflow_call"`
	}
	if err := w.On.Decode(&on); err != nil || on.WorkflowCall == nil {
		t.Fatalf("%s: no on.workflow_call (%v)", reusable, err)
	}
	return w, *on.WorkflowCall
}

// TestReusableWorkflowInterface: the reusable workflow's inputs, secrets
// and outputs are the ones docs/adopting.md documents (each named there),
// only mode and modelci are required, no secret is (keyless signing and
// the workflow's own token are the defaults), and each is described.
func TestReusableWorkflowInterface(t *testing.T) {
	_, wc := loadWorkflowCall(t)
	wantInputs := []string{"mode", "modelci", "spec", "paths", "environment", "strategy", "from", "to", "version", "reason", "registry-username", "runs-on", "diff"}
	wantSecrets := []string{"KUBECONFIG", "REGISTRY_PASSWORD", "COSIGN_KEY", "COSIGN_PASSWORD"}
	wantOutputs := []string{"changed", "verdict", "version", "digest", "ref", "signature", "image"}
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"inputs", slices.Sorted(maps.Keys(wc.Inputs)), wantInputs},
		{"secrets", slices.Sorted(maps.Keys(wc.Secrets)), wantSecrets},
		{"outputs", slices.Sorted(maps.Keys(wc.Outputs)), wantOutputs},
	} {
		slices.Sort(c.want)
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s %v, want %v", c.what, c.got, c.want)
		}
	}
	for name, in := range wc.Inputs {
		if in.Required != (name == "mode" || name == "modelci") {
			t.Errorf("input %s: required %v", name, in.Required)
		}
		if in.Description == "" {
			t.Errorf("input %s has no description", name)
		}
	}
	for name, s := range wc.Secrets {
		if s.Required || s.Description == "" {
			t.Errorf("secret %s: required %v, description %q: want optional and described", name, s.Required, s.Description)
		}
	}
	for name, o := range wc.Outputs {
		if !strings.Contains(o.Value, "jobs.") || o.Description == "" {
			t.Errorf("output %s: value %q, description %q", name, o.Value, o.Description)
		}
	}
	doc, err := os.ReadFile("../docs/adopting.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Concat(wantInputs, wantSecrets, wantOutputs) {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/adopting.md does not document `%s`", name)
		}
	}
}

// TestReleaseSignsKeylessWithTheWorkflowIdentity: the reusable workflow's
// release job runs in the environment's GitHub Environment, one at a time
// per spec and environment, signs keyless with the job's own OIDC token
// (requested, masked, handed over as a secret) unless a COSIGN_KEY is
// given, publishes to the spec's environment repository and deploys as
// the spec says.
func TestReleaseSignsKeylessWithTheWorkflowIdentity(t *testing.T) {
	w := loadWorkflow(t, reusable)
	j, ok := w.Jobs["release"]
	if !ok {
		t.Fatalf("%s has no release job", reusable)
	}
	if j.If != "inputs.mode == 'release' && needs.check.outputs.changed == 'true'" {
		t.Errorf("release job if %q", j.If)
	}
	perms, _ := permissions(t, j.Permissions)
	if want := map[string]string{"contents": "read", "packages": "write", "id-token": "write"}; !mapsEqual(perms, want) {
		t.Errorf("release job permissions %v, want %v", perms, want)
	}
	if env := j.Environment.Value; env != "${{ inputs.environment }}" {
		t.Errorf("release job environment %q, want ${{ inputs.environment }}", env)
	}
	if j.Concurrency == nil || !strings.Contains(j.Concurrency.Group, "inputs.spec") || !strings.Contains(j.Concurrency.Group, "inputs.environment") || j.Concurrency.CancelInProgress {
		t.Errorf("release job concurrency %+v: want a group per spec and environment that never cancels a running release", j.Concurrency)
	}

	s := callStep(t, j, "release")
	run := s.Run
	request := strings.Index(run, `"$ACTIONS_ID_TOKEN_REQUEST_URL&audience=sigstore"`)
	mask := strings.Index(run, `echo "::add-mask::$OIDC_TOKEN"`)
	call := strings.Index(run, "dagger call -m \"$MODULE\" release")
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
	c := daggerCall1(t, s, "release")
	for flag, want := range map[string]string{
		"oidc-token": "env:OIDC_TOKEN", "key": "env:COSIGN_KEY", "key-password": "env:COSIGN_PASSWORD",
		"password": "env:REGISTRY_PASSWORD", "address": "$ADDRESS", "spec": "$SPEC", "source": ".",
		"source-uri": "$GITHUB_SERVER_URL/$GITHUB_REPOSITORY", "source-revision": "$GITHUB_SHA",
	} {
		if got := c.flags[flag]; got != want {
			t.Errorf("release --%s %q, want %q", flag, got, want)
		}
	}
	for k, want := range map[string]string{
		"ADDRESS":           "${{ steps.spec.outputs.repository }}",
		"REGISTRY_PASSWORD": "${{ secrets.REGISTRY_PASSWORD || github.token }}",
		"KUBECONFIG_DATA":   "${{ secrets.KUBECONFIG }}",
		"COSIGN_KEY":        "${{ secrets.COSIGN_KEY }}",
	} {
		if s.Env[k] != want {
			t.Errorf("release step env %s %q, want %q", k, s.Env[k], want)
		}
	}
	// Keyless unless a key is given: the token is requested only then.
	if i := strings.Index(run, `if [[ -n "$COSIGN_KEY" ]]; then`); i < 0 || i > request || !strings.Contains(run[i:request], "else") {
		t.Error("the release step does not sign with COSIGN_KEY when given, and request the token otherwise")
	}
	if c.module != "$MODULE" || j.Env["MODULE"] != "${{ inputs.modelci == '.' && '.' || format('github.com/modelci/modelci@{0}', inputs.modelci) }}" {
		t.Errorf("dagger call -m %q, MODULE %q: want this repository's module for modelci: ., else modelci's at the release", c.module, j.Env["MODULE"])
	}
	// The token lives in that one step: no later step or action sees it.
	for _, o := range j.Steps {
		if strings.Contains(o.Run, "OIDC_TOKEN") && (strings.Contains(o.Run, "GITHUB_ENV") || strings.Contains(o.Run, "GITHUB_OUTPUT")) {
			t.Errorf("step %q may export the OIDC token", o.Name)
		}
	}

	// The deploy: the environment's context, namespace and strategy, from
	// the spec, with the environment's KUBECONFIG; only a PASS.
	d := callStep(t, j, "deploy")
	dc := daggerCall1(t, d, "deploy")
	for flag, want := range map[string]string{
		"kubeconfig": "env:KUBECONFIG_DATA", "context": "$KUBE_CONTEXT", "namespace": "$KUBE_NAMESPACE",
		"strategy": "$STRATEGY", "ref": "$REF", "spec": "$SPEC", "password": "env:REGISTRY_PASSWORD",
	} {
		if got := dc.flags[flag]; got != want {
			t.Errorf("deploy --%s %q, want %q", flag, got, want)
		}
	}
	for k, want := range map[string]string{
		"KUBE_CONTEXT": "${{ steps.spec.outputs.context }}", "KUBE_NAMESPACE": "${{ steps.spec.outputs.namespace }}",
		"STRATEGY": "${{ steps.spec.outputs.strategy }}", "REF": "${{ steps.release.outputs.ref }}",
		"KUBECONFIG_DATA": "${{ secrets.KUBECONFIG }}",
	} {
		if d.Env[k] != want {
			t.Errorf("deploy step env %s %q, want %q", k, d.Env[k], want)
		}
	}
	if !strings.Contains(d.If, "steps.release.outputs.verdict == 'PASS'") {
		t.Errorf("deploy step if %q: want a PASS only", d.If)
	}
	var spec step
	for _, o := range j.Steps {
		if o.ID == "spec" {
			spec = o
		}
	}
	for _, want := range []string{".environments[$e].repository", ".environments[$e].context", ".environments[$e].namespace // $e", ".environments[$e].strategy // \"rolling\"", "${STRATEGY:-"} {
		if !strings.Contains(spec.Run, want) {
			t.Errorf("the spec step does not read %s", want)
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

// TestPromoteUsesEnvironmentApprovals: the promote job runs in the
// target's GitHub Environment (its reviewers approve), one at a time per
// spec and environment, in the same group as a release into it.
func TestPromoteUsesEnvironmentApprovals(t *testing.T) {
	w := loadWorkflow(t, reusable)
	j := w.Jobs["promote"]
	if got := j.Environment.Value; got != "${{ inputs.to }}" {
		t.Errorf("promote job environment %q, want ${{ inputs.to }}: the target environment's rules approve", got)
	}
	if j.Concurrency == nil || j.Concurrency.CancelInProgress {
		t.Fatalf("promote concurrency %+v: want one group per spec and environment, never cancelled", j.Concurrency)
	}
	if r := w.Jobs["release"].Concurrency; r == nil || strings.ReplaceAll(r.Group, "inputs.environment", "inputs.to") != j.Concurrency.Group {
		t.Errorf("promote concurrency %q and release's %+v: a promotion and a release into one environment must share a group", j.Concurrency.Group, r)
	}
	perms, _ := permissions(t, j.Permissions)
	if want := map[string]string{"contents": "read", "packages": "write", "id-token": "write"}; !mapsEqual(perms, want) {
		t.Errorf("promote job permissions %v, want %v", perms, want)
	}
	s := callStep(t, j, "promote")
	c := daggerCall1(t, s, "promote")
	for _, f := range []string{"model", "from", "to", "reason", "kubeconfig", "spec", "source", "oidc-token", "key"} {
		if c.flags[f] == "" {
			t.Errorf("dagger call promote without --%s", f)
		}
	}
	if c.flags["model"] != "$MODEL@$VERSION" || s.Env["MODEL"] != "${{ steps.spec.outputs.model }}" {
		t.Errorf("--model %q from MODEL %q: want the spec's model.name at the version", c.flags["model"], s.Env["MODEL"])
	}
}

// TestGateJob: the reusable workflow's gate job trains the candidate and
// the pull request's base, gates in Dagger, reports on the runner (the
// module's verdict and the runner's must agree) with the metrics diff, and
// keeps one comment per model, found by its marker among the bot's own.
func TestGateJob(t *testing.T) {
	w := loadWorkflow(t, reusable)
	j := w.Jobs["gate"]
	perms, _ := permissions(t, j.Permissions)
	if want := map[string]string{"contents": "read", "pull-requests": "write"}; !mapsEqual(perms, want) {
		t.Errorf("gate job permissions %v, want %v", perms, want)
	}
	var sources []string
	for _, s := range j.Steps {
		for _, c := range daggerCalls(s.Run) {
			if c.fn == "evaluate" {
				sources = append(sources, c.flags["source"])
			}
		}
	}
	if !slices.Equal(sources, []string{".", ".modelci/base"}) {
		t.Errorf("dagger call evaluate on %v, want the candidate (.) and the base (.modelci/base)", sources)
	}
	base := false
	for _, s := range j.Steps {
		if strings.HasPrefix(s.Uses, "actions/checkout@") && s.With["path"] == ".modelci/base" {
			base = s.With["ref"] == "${{ github.event.pull_request.base.sha }}"
		}
	}
	if !base {
		t.Error("the gate job does not check out the pull request's base at .modelci/base")
	}
	var all []string
	for _, s := range j.Steps {
		all = append(all, s.Run)
	}
	script := strings.Join(all, "\n")
	for _, want := range []string{
		`dagger call -m "$MODULE" gate`, "modelci gate -C", `modelci diff -C "$dir"`, `"$out/base/metrics.json" "$out/metrics.json"`,
		"modelci-gate:", `select(.user.login == "github-actions[bot]"`, "--method PATCH", `cat "$RUNNER_TEMP/modelci/diff.md"`, "$ARTIFACT_URL",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("the gate job never runs %q", want)
		}
	}
	comment := j.Steps[len(j.Steps)-2]
	if comment.Env["ARTIFACT_URL"] != "${{ steps.upload.outputs.artifact-url }}" || comment.Env["COMMENT"] != "${{ steps.report.outputs.comment }}" {
		t.Errorf("the comment step's env %v: want the report's comment and the uploaded artifact's address", comment.Env)
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
	for _, want := range []string{"go vet ./...", "go test ./...", "tools/actionlint/build.sh", "examples/adopting/workflows/*.yml", "dagger call test"} {
		if !strings.Contains(all, want) {
			t.Errorf("ci.yml never runs %q", want)
		}
	}
	gate := w.Jobs["gate"]
	if gate.Uses != localReusable || gate.With["mode"] != "gate" || gate.If != "github.event_name == 'pull_request'" {
		t.Errorf("ci.yml's gate job: uses %q, mode %q, if %q: want the reusable workflow's gate on pull requests", gate.Uses, gate.With["mode"], gate.If)
	}
}

// callerGrant is what a job calling modelci.yml grants: GitHub holds
// every job of a called workflow to it when the workflow loads, even jobs
// that an if: skips (actions/runner#4151), so a caller of any mode grants
// what all of modelci.yml's jobs ask for, and each job takes only its own.
var callerGrant = map[string]string{"contents": "read", "pull-requests": "write", "packages": "write", "id-token": "write"}

// level orders permission values.
func level(v string) int {
	switch v {
	case "read":
		return 1
	case "write":
		return 2
	}
	return 0
}

// TestCallersGrantWhatTheReusableWorkflowAsks: what GitHub checks before
// a caller runs (and actionlint does not): no job of modelci.yml asks for
// more than any caller grants, else every run of that caller fails to
// start with "The nested job … is requesting …, but is only allowed …".
func TestCallersGrantWhatTheReusableWorkflowAsks(t *testing.T) {
	w := loadWorkflow(t, reusable)
	asks := map[string]map[string]string{}
	if top, _ := permissions(t, w.Permissions); len(top) > 0 {
		asks["(top level)"] = top
	}
	for id, j := range w.Jobs {
		p, ok := permissions(t, j.Permissions)
		if !ok {
			t.Errorf("%s job %s has no permissions: it would take the caller's whole grant", reusable, id)
		}
		asks[id] = p
	}
	paths := []string{}
	for _, f := range []string{"ci.yml", "release.yml", "promote.yml"} {
		paths = append(paths, filepath.Join(workflowDir, f))
	}
	for _, mode := range slices.Sorted(maps.Keys(callers)) {
		paths = append(paths, filepath.Join(callerDir, callers[mode]))
	}
	for _, path := range paths {
		c := loadWorkflowFile(t, path)
		for cid, cj := range c.Jobs {
			if cj.Uses != localReusable {
				continue
			}
			grant, _ := permissions(t, cj.Permissions)
			if !mapsEqual(grant, callerGrant) {
				t.Errorf("%s job %s grants %v, want %v", filepath.Base(path), cid, grant, callerGrant)
			}
			for id, p := range asks {
				for k, v := range p {
					if level(v) > level(grant[k]) {
						t.Errorf("%s job %s grants %s: %q, but %s job %s asks for %s", filepath.Base(path), cid, k, grant[k], reusable, id, v)
					}
				}
			}
		}
	}
	// Each job takes only its own share.
	for id, want := range map[string]map[string]string{
		"check":   {"contents": "read"},
		"gate":    {"contents": "read", "pull-requests": "write"},
		"release": {"contents": "read", "packages": "write", "id-token": "write"},
		"promote": {"contents": "read", "packages": "write", "id-token": "write"},
	} {
		if !mapsEqual(asks[id], want) {
			t.Errorf("%s job %s asks for %v, want %v", reusable, id, asks[id], want)
		}
	}
}

// TestThisRepositoryCallsTheReusableWorkflow: ci.yml, release.yml and
// promote.yml call modelci.yml on one spec, whose environments exist (so
// that a promotion can succeed) and are the ones the docs name; the gate
// and the release watch the same paths.
func TestThisRepositoryCallsTheReusableWorkflow(t *testing.T) {
	const specPath = "examples/adopting/modelci.yaml"
	s, err := spec.Load("../" + specPath)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for file, mode := range map[string]string{"ci.yml": "gate", "release.yml": "release", "promote.yml": "promote"} {
		w := loadWorkflow(t, file)
		var j job
		for _, c := range w.Jobs {
			if c.Uses == localReusable {
				j = c
			}
		}
		if j.Uses == "" {
			t.Errorf("%s does not call %s", file, localReusable)
			continue
		}
		if j.With["mode"] != mode || j.With["modelci"] != "." || j.With["spec"] != specPath {
			t.Errorf("%s: with %v, want mode %s, modelci . (this commit), spec %s", file, j.With, mode, specPath)
		}
		if mode != "promote" {
			paths = append(paths, j.With["paths"])
		}
		checkCallerSecrets(t, file, mode, j)
		if env := j.With["environment"]; mode == "release" {
			if _, err := s.Environment(env); err != nil {
				t.Errorf("%s releases to %q: %v", file, env, err)
			}
		}
		if mode == "promote" {
			checkPromoteChoices(t, file, w, s)
		}
	}
	if len(paths) != 2 || paths[0] != paths[1] || paths[0] == "" {
		t.Fatalf("ci.yml and release.yml watch paths %q: want the same regular expression", paths)
	}
	re := regexp.MustCompile(paths[0])
	for f, want := range map[string]bool{specPath: true, "examples/adopting/data/diabetes.csv": true, "stages/train/train.go": true, ".github/workflows/modelci.yml": true, "README.md": false, "docs/adopting.md": false, "examples/linreg/modelci.yaml": false} {
		if re.MatchString(f) != want {
			t.Errorf("paths %s matches %s: %v, want %v", paths[0], f, !want, want)
		}
	}
}

// checkPromoteChoices: a promote caller offers only environments of the
// spec, staging to prod (the docs' names; never "production").
func checkPromoteChoices(t *testing.T, file string, w workflow, s *spec.Spec) {
	t.Helper()
	var on struct {
		WorkflowDispatch struct {
			Inputs map[string]struct {
				Type    string   `yaml:"type"`
				Options []string `yaml:"options"`
			} `yaml:"inputs"`
		} `yaml:"workflow_dispatch"`
	}
	if err := w.On.Decode(&on); err != nil {
		t.Fatalf("%s: on: %v", file, err)
	}
	in := on.WorkflowDispatch.Inputs
	for name, want := range map[string][]string{"from": {"staging"}, "to": {"prod"}} {
		if in[name].Type != "choice" || !slices.Equal(in[name].Options, want) {
			t.Errorf("%s: input %s is %s %v, want a choice of %v", file, name, in[name].Type, in[name].Options, want)
		}
		for _, o := range in[name].Options {
			if _, err := s.Environment(o); err != nil {
				t.Errorf("%s: %s offers %q: %v", file, name, o, err)
			}
		}
	}
	for _, name := range []string{"version", "reason"} {
		if _, ok := in[name]; !ok {
			t.Errorf("%s: no %s input", file, name)
		}
	}
	var j job
	for _, c := range w.Jobs {
		j = c
	}
	for _, name := range []string{"from", "to", "version", "reason"} {
		if j.With[name] != "${{ inputs."+name+" }}" {
			t.Errorf("%s: with.%s %q, want ${{ inputs.%s }}", file, name, j.With[name], name)
		}
	}
}

// TestSampleCallers: each sample caller of docs/adopting.md is at most 30
// lines, one job calling the reusable workflow in its mode with a pinned
// modelci release, and passing only inputs the reusable workflow declares
// (TestCallersGrantWhatTheReusableWorkflowAsks checks its permissions). actionlint (TestActionlint)
// checks them against modelci.yml too.
func TestSampleCallers(t *testing.T) {
	_, wc := loadWorkflowCall(t)
	s, err := spec.Load("../examples/adopting/modelci.yaml")
	if err != nil {
		t.Fatal(err)
	}
	release := regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)
	doc, err := os.ReadFile("../docs/adopting.md")
	if err != nil {
		t.Fatal(err)
	}
	for mode, file := range callers {
		t.Run(file, func(t *testing.T) {
			path := filepath.Join(callerDir, file)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			n := strings.Count(string(b), "\n")
			if n > maxCallerLines || !strings.HasSuffix(string(b), "\n") {
				t.Errorf("%d lines, want at most %d", n, maxCallerLines)
			}
			if want := fmt.Sprintf("`examples/adopting/workflows/%s` (%d lines)", file, n); !strings.Contains(string(doc), want) {
				t.Errorf("docs/adopting.md does not say %s", want)
			}
			w := loadWorkflowFile(t, path)
			if len(w.Jobs) != 1 {
				t.Fatalf("%d jobs, want one", len(w.Jobs))
			}
			for _, j := range w.Jobs {
				if j.Uses != localReusable || j.With["mode"] != mode {
					t.Errorf("uses %q mode %q, want %s mode %s", j.Uses, j.With["mode"], localReusable, mode)
				}
				if !release.MatchString(j.With["modelci"]) {
					t.Errorf("modelci %q: want a release tag", j.With["modelci"])
				}
				if _, err := os.Stat(filepath.Join("../examples/adopting", j.With["spec"])); err != nil {
					t.Errorf("spec %q: %v (the sample's layout is examples/adopting/)", j.With["spec"], err)
				}
				checkCallerSecrets(t, file, mode, j)
				for k := range j.With {
					if _, ok := wc.Inputs[k]; !ok {
						t.Errorf("passes %s, which %s does not declare", k, reusable)
					}
				}
				if env := j.With["environment"]; mode == "release" {
					if _, err := s.Environment(env); err != nil {
						t.Errorf("releases to %q: %v", env, err)
					}
				}
			}
			if mode == "promote" {
				checkPromoteChoices(t, file, w, s)
			}
		})
	}
}

// checkCallerSecrets: a release or promote caller passes KUBECONFIG by
// name, which GitHub resolves to the environment's secret in the called
// job that names the environment (not passed, it is empty there); a gate
// caller passes none.
func checkCallerSecrets(t *testing.T, file, mode string, j job) {
	t.Helper()
	var got map[string]string
	if j.Secrets.Kind != 0 {
		if err := j.Secrets.Decode(&got); err != nil {
			t.Errorf("%s: secrets: %v (want a mapping, not inherit)", file, err)
			return
		}
	}
	want := map[string]string{"KUBECONFIG": "${{ secrets.KUBECONFIG }}"}
	if mode == "gate" {
		want = nil
	}
	if !mapsEqual(got, want) {
		t.Errorf("%s: secrets %v, want %v", file, got, want)
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
// scripts when it is installed) on every workflow and sample caller; it
// checks each caller's inputs and secrets against modelci.yml.
func TestActionlint(t *testing.T) {
	bin := os.Getenv("MODELCI_ACTIONLINT")
	if bin == "" {
		t.Skip("MODELCI_ACTIONLINT is not set: build actionlint with tools/actionlint/build.sh and set it to the path it prints (.ci/run does)")
	}
	args := []string{"-no-color"}
	for _, f := range allWorkflowFiles() {
		args = append(args, strings.TrimPrefix(f, "../"))
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
	fn     string
	module string            // -m's value ("" without one)
	flags  map[string]string // name → value ("" for a bool)
	chain  []string          // the words after the arguments: fields, export…
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
			// dagger call -m MODULE FN: the module (this repository's or
			// modelci's at a release) comes before the function.
			fn, module := i+2, ""
			for fn+1 < len(words) && (words[fn] == "-m" || words[fn] == "--mod") {
				module = words[fn+1]
				fn += 2
			}
			if fn >= len(words) {
				continue
			}
			var rest []string
			for _, w := range words[fn+1:] {
				if w == ">" || w == "|" || w == ";" || w == "&&" || w == "||" {
					break
				}
				if m := expand.FindStringSubmatch(w); m != nil {
					rest = append(rest, arrays[m[1]]...)
					continue
				}
				rest = append(rest, w)
			}
			c := daggerCall{fn: words[fn], module: module, flags: map[string]string{}}
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
