package pipeline_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/modelci/modelci/pipeline"
)

// bigModelSize is the weights file bigTrainer writes: 256 MiB.
const bigModelSize = 256 << 20

// bigTrainer ships the linear model document it was given (model.json.in)
// and 256 MiB of random bytes beside it, which the server never reads.
const bigTrainer = `set -e
mkdir -p "$MODELCI_OUT/model"
cp model.json.in "$MODELCI_OUT/model/model.json"
head -c 268435456 /dev/urandom > "$MODELCI_OUT/model/weights.bin"
echo '{"loss": [4.5, 4.0]}' > "$MODELCI_OUT/train.json"
`

// spreadEvaluator reports losses 1–7 for the test rows (no predictions:
// the smoke test checks the answers are finite).
const spreadEvaluator = `awk 'BEGIN { printf "{\"per_example_loss\": [" } NR > 1 { printf "%s%d", (NR > 2 ? "," : ""), NR % 7 + 1 } END { print "]}" }' "$MODELCI_DATA/test.csv" > "$MODELCI_OUT/predictions.json"
`

// diabetesModel is a linear/v1 model of the diabetes features.
const diabetesModel = `{"schema":"modelci.dev/model/linear/v1","name":"diabetes","version":"1.0.0",
"features":["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"],"target":"target",
"mean":[48.5,1.46,26.37,94.64,189.14,115.43,49.78,4.07,4.64,91.26],
"scale":[13.1,0.49,4.41,13.83,34.6,30.41,12.92,1.29,0.52,11.48],
"weights":[-0.48,-11.41,24.73,15.42,-37.68,22.67,4.81,8.42,35.73,3.22],
"bias":152.13}
`

// diskUsage is what du counts under dir: allocated blocks, each inode once.
func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	seen := map[uint64]bool{}
	var n int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		if !seen[st.Ino] {
			seen[st.Ino] = true
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLargeModelDiskUse: a run whose model is 256 MiB of incompressible
// weights keeps one copy of them in the output directory, the image's
// uncompressed layer in the OCI layout, which run.json names; the run
// directory has no model/; the output directory is at most 1.1 × the
// model's size on disk.
func TestLargeModelDiskUse(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 256 MiB")
	}
	if _, err := exec.LookPath("awk"); err != nil {
		t.Skip("awk is not installed")
	}
	dir := project(t, func(s string) string {
		i, j := strings.Index(s, "train:\n"), strings.Index(s, "gate:\n")
		return s[:i] + "train:\n  command: [sh, train.sh]\n  format: linear\nevaluate:\n  command: [sh, evaluate.sh]\n" + s[j:]
	})
	write(t, filepath.Join(dir, "train.sh"), bigTrainer)
	write(t, filepath.Join(dir, "evaluate.sh"), spreadEvaluator)
	write(t, filepath.Join(dir, "model.json.in"), diabetesModel)
	res, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, ".modelci")
	if res.Record.Outputs.Image == nil {
		t.Fatalf("nothing built: verdict %s, decision %s", res.Verdict, res.Decision)
	}
	m := res.Record.Outputs.Model
	if m.Path != "" || m.Size < bigModelSize {
		t.Fatalf("record model %+v: want no copy in the run directory, %d bytes or more", m, bigModelSize)
	}
	if _, err := os.Stat(filepath.Join(res.RunDir, "model")); !os.IsNotExist(err) {
		t.Fatalf("the run directory keeps model/: %v", err)
	}
	var big bool
	for _, l := range m.Layers {
		if l.Size >= bigModelSize && l.MediaType == "application/vnd.oci.image.layer.v1.tar" && blobExists(out, l.Digest) {
			big = true
		}
	}
	if !big {
		t.Fatalf("no uncompressed layer of the weights in the layout among %+v", m.Layers)
	}
	used := diskUsage(t, out)
	t.Logf("output directory: %d bytes on disk (%.3f × the %d-byte weights file); run directory %d bytes; layout %d bytes",
		used, float64(used)/bigModelSize, bigModelSize, diskUsage(t, res.RunDir), diskUsage(t, pipeline.LayoutDir(out)))
	if limit := int64(bigModelSize) * 11 / 10; used > limit {
		t.Fatalf("output directory uses %d bytes, over 1.1 × %d", used, bigModelSize)
	}
}
