package stage

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/artifact"
)

// A TrainJob's node: `stage wrap` fetches the input, makes MODELCI_OUT and
// TMPDIR writable, runs the command without the registry's docker config
// in its environment, and pushes what it wrote; a failing command's exit
// status is the step's and nothing is pushed.
func TestWrap(t *testing.T) {
	host := authRegistry(t, "ci", "s3cret")
	dockerConfig(t, host, "ci", "s3cret")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "train.csv"), []byte("x,y\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := artifact.Push(context.Background(), host+"/ml/training", artifact.ArtifactTypeTrainingInput,
		[]artifact.Part{{Path: "data", Dir: src, MediaType: artifact.MediaTypeDataset}})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	out, tmp := filepath.Join(work, "out"), filepath.Join(work, "tmp")
	termLog := filepath.Join(work, "termination-log")
	script := `test -z "$DOCKER_CONFIG" || { echo "docker config leaked" >&2; exit 9; }; mkdir -p "$OUT/model" && cp in/data/train.csv "$OUT/model/seen.csv"`
	t.Setenv("OUT", out)
	got, err := runStep(t, "wrap", "--ref", in.Ref, "--dir", filepath.Join(work, "in"), "--out", out, "--tmp", tmp,
		"--to", host+"/ml/training", "--workdir", work+"/", "--termination-log", termLog, "--", "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(termLog); string(b) != got || !strings.HasPrefix(got, host+"/ml/training@sha256:") {
		t.Fatalf("printed %q, termination log %q", got, b)
	}
	if fi, err := os.Stat(tmp); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v %v", fi, err)
	}
	back := filepath.Join(t.TempDir(), "back")
	if _, err := artifact.Pull(context.Background(), got, back, artifact.WithArtifactType(artifact.ArtifactTypeTrainingOutput)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(back, "out", "model", "seen.csv")); err != nil || string(b) != "x,y\n1,2\n" {
		t.Errorf("pushed output: %q %v", b, err)
	}

	work2 := t.TempDir()
	_, err = runStep(t, "wrap", "--ref", in.Ref, "--dir", filepath.Join(work2, "in"), "--out", filepath.Join(work2, "out"),
		"--to", host+"/ml/training", "--termination-log", filepath.Join(work2, "log"), "--", "sh", "-c", "exit 7")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Errorf("a failing command: %v", err)
	}
	if _, err := os.Stat(filepath.Join(work2, "log")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed step wrote a termination log: %v", err)
	}
}

// fetch --writable makes the step's output and temporary directories,
// writable by any user whatever the umask.
func TestFetchWritable(t *testing.T) {
	host := authRegistry(t, "ci", "s3cret")
	dockerConfig(t, host, "ci", "s3cret")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644)
	in, err := artifact.Push(context.Background(), host+"/ml/training", artifact.ArtifactTypeTrainingInput, []artifact.Part{{Path: "data", Dir: src}})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	out := filepath.Join(work, "out")
	if _, err := runStep(t, "fetch", "--ref", in.Ref, "--dir", filepath.Join(work, "in"), "--writable", out, "--writable", filepath.Join(work, "tmp")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{out, filepath.Join(work, "tmp")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o777 {
			t.Errorf("%s: %v %v", d, fi, err)
		}
	}
}
