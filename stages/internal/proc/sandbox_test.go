package proc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelci/modelci/stages/internal/proc"
)

// envOf runs env under Run and returns what it printed, by name.
func envOf(t *testing.T, c proc.Cmd) map[string]string {
	t.Helper()
	var log bytes.Buffer
	c.Argv, c.Log = []string{"env"}, &log
	if err := proc.Run(context.Background(), c); err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	env := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("env printed %q", line)
		}
		env[k] = v
	}
	return env
}

// The child's environment is PATH, HOME, LANG, TMPDIR, the passed names and
// the set variables, and nothing else of the parent's.
func TestRunCleanEnvironment(t *testing.T) {
	secrets := map[string]string{
		"MODELCI_KEY_PASSWORD": "key-pw-1", "COSIGN_PASSWORD": "cosign-pw-2",
		"MODELCI_REGISTRY_PASSWORD": "reg-pw-3", "SIGSTORE_ID_TOKEN": "oidc-4",
		"GITHUB_TOKEN": "gh-5", "AWS_SECRET_ACCESS_KEY": "aws-6",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("PASSED", "passed value")
	t.Setenv("LANG", "de_DE.UTF-8")
	t.Setenv("PROC_TEST_UNSET", "")
	os.Unsetenv("PROC_TEST_UNSET")
	env := envOf(t, proc.Cmd{PassEnv: []string{"PASSED", "PROC_TEST_UNSET"}, SetEnv: []string{"MODELCI_OUT=/out"}})
	var names []string
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"HOME", "LANG", "MODELCI_OUT", "PASSED", "PATH", "TMPDIR"}; !slices.Equal(names, want) {
		t.Errorf("child environment %v, want exactly %v", names, want)
	}
	if env["PATH"] != os.Getenv("PATH") || env["LANG"] != "de_DE.UTF-8" || env["PASSED"] != "passed value" || env["MODELCI_OUT"] != "/out" {
		t.Errorf("child environment %v", env)
	}
	if env["HOME"] == os.Getenv("HOME") || env["HOME"] == "" || env["TMPDIR"] == "" || env["TMPDIR"] == env["HOME"] {
		t.Errorf("HOME %q TMPDIR %q, want fresh directories", env["HOME"], env["TMPDIR"])
	}
	for _, d := range []string{env["HOME"], env["TMPDIR"]} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", d, err)
		}
	}

	t.Setenv("LANG", "")
	os.Unsetenv("LANG")
	if env := envOf(t, proc.Cmd{}); env["LANG"] != "C.UTF-8" {
		t.Errorf("LANG %q without one in the parent, want C.UTF-8", env["LANG"])
	}
	// A passed name replaces the fresh HOME: the escape hatch for
	// pip install --user and caches under the home directory.
	if env := envOf(t, proc.Cmd{PassEnv: []string{"HOME"}}); env["HOME"] != os.Getenv("HOME") {
		t.Errorf("HOME %q with HOME passed, want %q", env["HOME"], os.Getenv("HOME"))
	}
}

func TestCheckPassEnv(t *testing.T) {
	for _, name := range append(slices.Clone(proc.SecretEnv), "MODELCI_SEED", "MODELCI_ANYTHING", "modelci_key_password", "Cosign_Password") {
		if err := proc.CheckPassEnv(name); !errors.Is(err, proc.ErrSecretEnv) || !strings.Contains(err.Error(), name) {
			t.Errorf("CheckPassEnv(%q) = %v, want ErrSecretEnv naming it", name, err)
		}
	}
	for _, name := range []string{"", "A-B", "1X", "A=B", "A B"} {
		if err := proc.CheckPassEnv(name); !errors.Is(err, proc.ErrEnvName) {
			t.Errorf("CheckPassEnv(%q) = %v, want ErrEnvName", name, err)
		}
	}
	for _, name := range []string{"HF_TOKEN", "CUDA_VISIBLE_DEVICES", "HOME", "_X1"} {
		if err := proc.CheckPassEnv(name); err != nil {
			t.Errorf("CheckPassEnv(%q) = %v", name, err)
		}
	}
	t.Setenv("MODELCI_KEY_PASSWORD", "secret")
	err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"true"}, PassEnv: []string{"MODELCI_KEY_PASSWORD"}})
	if !errors.Is(err, proc.ErrSecretEnv) {
		t.Errorf("Run with a secret passed: %v, want ErrSecretEnv", err)
	}
}

func write(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// The child runs in a copy of the project without data files, keys, git's
// metadata, the excluded paths and copies of the data set; relative program
// paths resolve in it, and modes are kept.
func TestRunStaging(t *testing.T) {
	project, outside := t.TempDir(), t.TempDir()
	const dataset = "age,target\n1,2\n3,4\n"
	files := map[string]string{
		"train.sh":            "#!/bin/sh\nfind . -printf '%p %m %y %l\\n' | sort > \"$LISTING\"\npwd > \"$LISTING.pwd\"\n",
		"helper.py":           "print(1)\n",
		"private.txt":         "0600\n",
		"data/diabetes.csv":   dataset,
		"data.txt":            dataset, // the data set under another name
		"same-size.txt":       strings.Repeat("x", len(dataset)),
		"UPPER.CSV":           "a\n",
		"x.tsv":               "a\n",
		"y.parquet":           "a\n",
		"cosign.key":          "key\n",
		"tls/cert.PEM":        "pem\n",
		"signing-key":         "key without a .key name\n",
		".git/config":         "[core]\n",
		".modelci/runs/r/x":   "old run\n",
		"src/model/layers.py": "x = 1\n",
	}
	for name, content := range files {
		perm := os.FileMode(0o644)
		switch name {
		case "train.sh":
			perm = 0o750
		case "private.txt":
			perm = 0o600
		}
		write(t, filepath.Join(project, name), content, perm)
	}
	write(t, filepath.Join(outside, "secret"), "outside\n", 0o644)
	for link, target := range map[string]string{
		"inside":        "src/model/layers.py",
		"inside-dir":    "src",
		"abs-inside":    filepath.Join(project, "helper.py"),
		"outside":       filepath.Join(outside, "secret"),
		"to-key":        "cosign.key",
		"to-data":       "data/diabetes.csv",
		"dangling":      "nowhere",
		"src/up":        "../helper.py",
		"src/escape":    "../../" + filepath.Base(outside) + "/secret",
		"to-git-config": ".git/config",
	} {
		if err := os.Symlink(target, filepath.Join(project, link)); err != nil {
			t.Fatal(err)
		}
	}
	listing := filepath.Join(outside, "listing")
	var log bytes.Buffer
	err := proc.Run(context.Background(), proc.Cmd{
		Argv: []string{"./train.sh"}, Project: project,
		Exclude:        []string{".modelci", filepath.Join(project, "signing-key")},
		ExcludeContent: []string{filepath.Join(project, "data", "diabetes.csv")},
		SetEnv:         []string{"LISTING=" + listing},
		Log:            &log,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	b, err := os.ReadFile(listing)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{} // path → "mode type [target]"
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, " ", 2)
		got[strings.TrimPrefix(f[0], "./")] = strings.TrimSpace(f[1])
	}
	want := map[string]string{
		".":                   "",
		"train.sh":            "750 f",
		"helper.py":           "644 f",
		"private.txt":         "600 f",
		"same-size.txt":       "644 f",
		"src":                 "",
		"data":                "", // its one file is left out
		"tls":                 "",
		"src/model":           "",
		"src/model/layers.py": "644 f",
		"inside":              "777 l src/model/layers.py",
		"inside-dir":          "777 l src",
		"abs-inside":          "777 l helper.py",
		"src/up":              "777 l ../helper.py",
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("staging directory lacks %s", name)
			continue
		}
		if w != "" && g != w {
			t.Errorf("%s: %q, want %q", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("staging directory holds %s (%s)", name, got[name])
		}
	}
	for _, want := range []string{"left out outside", "left out src/escape", "left out to-key", "left out to-data", "left out dangling", "left out to-git-config", "data.txt (the same bytes as"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	pwd, err := os.ReadFile(listing + ".pwd")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(strings.TrimSpace(string(pwd))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging directory %s left behind: %v", pwd, err)
	}
}

// A project over the bound is refused before anything runs.
func TestRunStagingTooLarge(t *testing.T) {
	defer proc.SetMaxStageBytes(1000)()
	project := t.TempDir()
	write(t, filepath.Join(project, "a.bin"), strings.Repeat("x", 600), 0o644)
	write(t, filepath.Join(project, "b.bin"), strings.Repeat("x", 600), 0o644)
	marker := filepath.Join(t.TempDir(), "ran")
	err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"/bin/sh", "-c", "touch " + marker}, Project: project})
	if !errors.Is(err, proc.ErrProjectTooLarge) || !strings.Contains(err.Error(), "train.workdir") {
		t.Fatalf("Run: %v, want ErrProjectTooLarge pointing at train.workdir", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the program ran: %v", err)
	}
	// Large data files are left out, so they do not count.
	write(t, filepath.Join(project, "b.bin"), "x", 0o644)
	write(t, filepath.Join(project, "big.csv"), strings.Repeat("x", 2000), 0o644)
	if err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"true"}, Project: project}); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// The staging directory, HOME and TMPDIR are removed after a success and a
// failure, even when the child leaves read-only directories in them; a
// workdir is left alone.
func TestRunRemovesTemporaryDirectories(t *testing.T) {
	script := `echo "$(pwd) $HOME $TMPDIR" > "$RECORD"
mkdir -p "$HOME/.cache/x" "$TMPDIR/ro" scratch && touch "$HOME/.cache/x/f" "$TMPDIR/ro/f" scratch/f
chmod 500 "$TMPDIR/ro" scratch
exit $CODE
`
	for _, tt := range []struct {
		name    string
		code    int
		inPlace bool
	}{{"success", 0, false}, {"failure", 3, false}, {"workdir", 0, true}} {
		t.Run(tt.name, func(t *testing.T) {
			project := t.TempDir()
			write(t, filepath.Join(project, "run.sh"), script, 0o755)
			record := filepath.Join(t.TempDir(), "record")
			c := proc.Cmd{Argv: []string{"./run.sh"}, Project: project, SetEnv: []string{"RECORD=" + record, "CODE=" + strconv.Itoa(tt.code)}}
			if tt.inPlace {
				c.Workdir = project
				t.Cleanup(func() { os.Chmod(filepath.Join(project, "scratch"), 0o700) })
			}
			err := proc.Run(context.Background(), c)
			if (tt.code == 0) != (err == nil) {
				t.Fatalf("Run: %v", err)
			}
			b, rerr := os.ReadFile(record)
			if rerr != nil {
				t.Fatal(rerr)
			}
			dirs := strings.Fields(string(b))
			if len(dirs) != 3 {
				t.Fatalf("record %q", b)
			}
			for i, d := range dirs {
				_, err := os.Stat(d)
				if i == 0 && tt.inPlace {
					if real, _ := filepath.EvalSymlinks(project); d != real || err != nil {
						t.Errorf("ran in %s (%v), want the workdir %s kept", d, err, real)
					}
					continue
				}
				if !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind: %v", d, err)
				}
			}
		})
	}
}

// alive says whether pid is a process that has not exited: not gone from
// /proc, and not a zombie waiting for a parent that does not reap it.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// waitGone polls until none of pids is alive, or the deadline.
func waitGone(t *testing.T, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: pids %v still running 10s later", what, left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && strings.HasSuffix(string(b), "\n") {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s after 20s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killOnFailure kills pids should the test fail with them running.
func killOnFailure(t *testing.T, pids ...int) {
	t.Cleanup(func() {
		if t.Failed() {
			for _, pid := range pids {
				if alive(pid) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	})
}

const helperEnv = "MODELCI_PROC_TEST_HELPER_DIR"

// TestHelperRun is not a test: run by TestRunDiesWithParent as a separate
// process (the test binary itself), it runs a shell under proc.Run whose
// background child sleeps, and waits to be killed.
func TestHelperRun(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("a helper process for TestRunDiesWithParent")
	}
	script := fmt.Sprintf("echo $$ > %[1]s/child.tmp && mv %[1]s/child.tmp %[1]s/child.pid; sleep 300 & echo $! > %[1]s/grandchild.tmp && mv %[1]s/grandchild.tmp %[1]s/grandchild.pid; wait", dir)
	err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"/bin/sh", "-c", script}, Workdir: dir})
	t.Fatalf("Run returned (%v); the helper should have been killed first", err)
}

// kill -9 of modelci kills the trainer (Pdeathsig) and the trainer's own
// children (the watcher kills its process group).
func TestRunDiesWithParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig and /proc are Linux's")
	}
	dir := t.TempDir()
	helper := exec.Command(os.Args[0], "-test.run=^TestHelperRun$", "-test.count=1")
	helper.Env = append(os.Environ(), helperEnv+"="+dir)
	var out bytes.Buffer
	helper.Stdout, helper.Stderr = &out, &out
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	child := readPid(t, filepath.Join(dir, "child.pid"))
	grandchild := readPid(t, filepath.Join(dir, "grandchild.pid"))
	killOnFailure(t, child, grandchild)
	if !alive(child) || !alive(grandchild) {
		t.Fatalf("child %d or grandchild %d not running before the kill\n%s", child, grandchild, out.String())
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	helper.Wait()
	waitGone(t, "after kill -9 of the process that ran them", child, grandchild)
}

// When the program exits, what it left running in the background is killed.
func TestRunKillsLeftovers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	dir := t.TempDir()
	script := fmt.Sprintf("sleep 300 >/dev/null 2>&1 & echo $! > %s/left.pid", dir)
	if err := proc.Run(context.Background(), proc.Cmd{Argv: []string{"/bin/sh", "-c", script}}); err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, filepath.Join(dir, "left.pid"))
	killOnFailure(t, pid)
	waitGone(t, "after the program exited", pid)
}
