package pipeline_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/modelgate"
)

// dumpTrainer is an external trainer that writes what it can see into its
// model directory (what the image ships): its environment, the files of its
// working directory, and where it ran; and the directories it was given to
// $RECORD_TO, which outlives a failed run. With the argument "fail" it exits
// 1 after that.
const dumpTrainer = `import json, os, sys
out = os.environ["MODELCI_OUT"]
model = os.path.join(out, "model")
os.makedirs(model)
with open(os.path.join(model, "env.txt"), "w") as f:
    for k, v in sorted(os.environ.items()):
        f.write(k + "=" + v + "\n")
with open(os.path.join(model, "listing.txt"), "w") as f:
    for root, dirs, files in os.walk("."):
        for n in dirs + files:
            f.write(os.path.normpath(os.path.join(root, n)) + "\n")
with open(os.environ["RECORD_TO"], "w") as f:
    f.write("\n".join([os.getcwd(), os.environ["HOME"], os.environ["TMPDIR"]]))
open(os.path.join(os.environ["HOME"], "written-at-home"), "w").close()
open(os.path.join(os.environ["TMPDIR"], "written-in-tmp"), "w").close()
if sys.argv[1:] == ["fail"]:
    sys.exit(1)
with open(os.path.join(out, "train.json"), "w") as f:
    json.dump({"loss": [2.0, 1.0]}, f)
open(os.path.join(model, "model.json"), "w").close()  # train.format: linear
`

// zeroEvaluator predicts 0: the losses are y², so the gate fails and the
// run builds nothing (no runtime binary needed). It checks that evaluate.env
// reaches it.
const zeroEvaluator = `import csv, json, os
assert os.environ.get("PASSED_THROUGH") == "handed over", os.environ
with open(os.path.join(os.environ["MODELCI_DATA"], "test.csv")) as f:
    rows = list(csv.reader(f))[1:]
with open(os.path.join(os.environ["MODELCI_OUT"], "predictions.json"), "w") as f:
    json.dump({"per_example_loss": [float(r[-1]) ** 2 for r in rows]}, f)
`

// externalProject is the linreg example with dumpTrainer (run by command,
// in workdir when set) and zeroEvaluator, and files the trainer must not
// see: a copy of the data set under another name, a cosign key, .git.
func externalProject(t *testing.T, command, workdir string) (dir, record string) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	record = filepath.Join(t.TempDir(), "record")
	dir = project(t, func(s string) string {
		i := strings.Index(s, "train:\n")
		j := strings.Index(s, "gate:\n")
		train := "train:\n  command: " + command + "\n  format: linear\n  env: [PASSED_THROUGH, RECORD_TO]\n"
		if workdir != "" {
			train += "  workdir: " + workdir + "\n"
		}
		train += "evaluate:\n  command: [python3, evaluator.py]\n  env: [PASSED_THROUGH]\n"
		return strings.Replace(s[:i]+train+s[j:], "threshold: 5000", "threshold: 100", 1)
	})
	csv, err := os.ReadFile(filepath.Join(dir, "data", "diabetes.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"train.py":     dumpTrainer,
		"src/train.py": dumpTrainer,
		"src/notes.md": "in place\n",
		"evaluator.py": zeroEvaluator,
		"data.txt":     string(csv),
		"cosign.key":   "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
		".git/HEAD":    "ref: refs/heads/main\n",
	} {
		write(t, filepath.Join(dir, name), content)
	}
	t.Setenv("PASSED_THROUGH", "handed over")
	t.Setenv("RECORD_TO", record)
	return dir, record
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// recorded returns the trainer's working directory, HOME and TMPDIR.
func recorded(t *testing.T, record string) []string {
	t.Helper()
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	dirs := strings.Split(string(b), "\n")
	if len(dirs) != 3 {
		t.Fatalf("record %q", b)
	}
	return dirs
}

func assertGone(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", d, err)
		}
	}
}

// TestExternalTrainerSeesNoSecrets: an external trainer that ships its
// environment and its working directory's listing in the model finds none
// of modelci's secrets, no data file, key, .git or output directory; the
// contract's variables and train.env's are there; its staging directory,
// HOME and TMPDIR are gone after the run.
func TestExternalTrainerSeesNoSecrets(t *testing.T) {
	dir, record := externalProject(t, "[python3, train.py]", "")
	secrets := map[string]string{
		"MODELCI_KEY_PASSWORD":           "secret-key-password",
		"COSIGN_PASSWORD":                "secret-cosign-password",
		"MODELCI_REGISTRY_PASSWORD":      "secret-registry-password",
		"SIGSTORE_ID_TOKEN":              "secret-sigstore-token",
		"ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret-actions-token",
		"GITHUB_TOKEN":                   "secret-github-token",
		"AWS_SECRET_ACCESS_KEY":          "secret-aws-key",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	res, err := runProject(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != modelgate.Fail {
		t.Fatalf("verdict %s, want FAIL (nothing built)", res.Verdict)
	}
	model := filepath.Join(res.RunDir, "model")
	b, err := os.ReadFile(filepath.Join(model, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	for name, value := range secrets {
		if strings.Contains(env, value) || strings.Contains(env, name+"=") {
			t.Errorf("the trainer saw %s:\n%s", name, env)
		}
	}
	for _, want := range []string{"MODELCI_DATA=", "MODELCI_OUT=", "MODELCI_PARAMS={}", "MODELCI_SEED=42", "PASSED_THROUGH=handed over\n", "LANG="} {
		if !strings.Contains(env, want) {
			t.Errorf("the trainer's environment lacks %q:\n%s", want, env)
		}
	}

	b, err = os.ReadFile(filepath.Join(model, "listing.txt"))
	if err != nil {
		t.Fatal(err)
	}
	listing := strings.Fields(string(b))
	for _, want := range []string{"train.py", "evaluator.py", "modelci.yaml", "src/notes.md", "data"} {
		if !slices.Contains(listing, want) {
			t.Errorf("the working directory lacks %s: %v", want, listing)
		}
	}
	for _, name := range listing {
		if strings.HasSuffix(name, ".csv") || name == "data.txt" || strings.HasSuffix(name, ".key") ||
			name == ".git" || strings.HasPrefix(name, ".git/") || name == ".modelci" || strings.HasPrefix(name, ".modelci/") {
			t.Errorf("the working directory holds %s: %v", name, listing)
		}
	}

	dirs := recorded(t, record)
	if real, _ := filepath.EvalSymlinks(dir); strings.HasPrefix(dirs[0], real) {
		t.Errorf("the trainer ran in the project (%s), not a staging copy", dirs[0])
	}
	assertGone(t, dirs...)
}

// TestExternalTrainerWorkdir: train.workdir runs the trainer in that
// directory itself, unstaged.
func TestExternalTrainerWorkdir(t *testing.T) {
	dir, record := externalProject(t, "[python3, train.py]", "src")
	write(t, filepath.Join(dir, "src", "local.csv"), "a\n1\n")
	res, err := runProject(t, dir)
	if err != nil {
		t.Fatal(err)
	}
	dirs := recorded(t, record)
	src, _ := filepath.EvalSymlinks(filepath.Join(dir, "src"))
	if dirs[0] != src {
		t.Errorf("the trainer ran in %s, want %s", dirs[0], src)
	}
	b, err := os.ReadFile(filepath.Join(res.RunDir, "model", "listing.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if listing := strings.Fields(string(b)); !slices.Contains(listing, "local.csv") || !slices.Contains(listing, "notes.md") {
		t.Errorf("in place, the trainer sees %v, want src's files, local.csv included", listing)
	}
	assertGone(t, dirs[1:]...)
}

// A failed trainer leaves no staging directory, HOME or TMPDIR behind.
func TestExternalTrainerFailureCleansUp(t *testing.T) {
	dir, record := externalProject(t, "[python3, train.py, fail]", "")
	if _, err := runProject(t, dir); err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("run: %v, want the trainer's failure", err)
	}
	assertGone(t, recorded(t, record)...)
}
