package examples_test

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// torchPackages are what examples/pytorch's trainer and evaluator import, from Debian: the
// trainer image is built here from them (cached by this list).
var torchPackages = []string{"python3-torch", "python3-onnx"}

// `modelci run -C examples/pytorch --runner kubernetes`: the PyTorch trainer and evaluator run
// as Jobs on the real node, in a trainer image built here from Debian's python3-torch, and the
// model, hence the image, is the one a local run of the same torch builds.
func TestPyTorchExampleOnNode(t *testing.T) {
	torchPython(t)
	n := k8stest.StartNode(t)
	torch := k8stest.DebianImage(t, n, torchPackages...)
	ns := n.Namespace(t)
	rt, err := image.Runtime(t.Context(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(".."))
	if err != nil {
		t.Fatal(err)
	}
	run := func(dir string) *pipeline.Result {
		t.Helper()
		sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		res, err := pipeline.Run(t.Context(), sp, pipeline.WithRuntime("linux/amd64", rt), pipeline.WithLog(&log),
			pipeline.WithKubeconfig(n.Kubeconfig), pipeline.WithAccess(oci.Access{Insecure: true}))
		if err != nil {
			t.Fatalf("modelci run: %v\n%s", err, log.String())
		}
		if res.Verdict != modelgate.Pass {
			t.Fatalf("verdict %s\n%s", res.Verdict, log.String())
		}
		return res
	}
	local := run(copyExample(t))

	dir := copyExample(t)
	b, err := os.ReadFile(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	block := "  runner: kubernetes\n  kubernetes:\n    context: " + k8stest.Context + "\n    namespace: " + ns +
		"\n    repository: " + n.PodRegistry + "/" + ns + "/training\n    image: " + torch + "\n"
	src := strings.Replace(string(b), "\ntrain:\n", "\ntrain:\n"+block, 1)
	if err := os.WriteFile(filepath.Join(dir, "modelci.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got := run(dir)
	cl := got.Record.Inputs.Cluster
	if cl == nil || cl.Train == nil || cl.Evaluate == nil {
		t.Fatalf("the record names no training and evaluation Jobs: %+v", cl)
	}
	if cl.Train.Image != torch || cl.Evaluate.Image != torch {
		t.Errorf("trainer image %s, evaluator image %s; want %s", cl.Train.Image, cl.Evaluate.Image, torch)
	}
	// The served model is the same file; model.pt is too but for TorchScript's debug records,
	// which name the trainer's source path (the staging directory: random locally, /modelci/in/src
	// in the Job), so the example's model directory, and its image, differ between any two runs.
	// The built-in trainer, which writes nothing of the sort, gives the same image digest
	// (pipeline's TestNodeTrainJobBuiltin).
	read := func(res *pipeline.Result, f string) []byte {
		b, err := os.ReadFile(filepath.Join(res.RunDir, "model", f))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(got, "model.onnx"), read(local, "model.onnx")) {
		t.Errorf("model.onnx differs between the cluster and here")
	}
	if d := zipDiff(t, read(got, "model.pt"), read(local, "model.pt")); len(d) > 0 {
		t.Errorf("model.pt differs beyond its debug records: %v", d)
	}
	if got.Record.Figures.EvalLoss != local.Record.Figures.EvalLoss {
		t.Errorf("eval loss on the cluster %v, locally %v", got.Record.Figures.EvalLoss, local.Record.Figures.EvalLoss)
	}
	jobs, err := n.Client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 0 {
		t.Errorf("jobs left: %d %v", len(jobs.Items), err)
	}
}

// zipDiff lists the entries of two zip files (TorchScript archives) that differ, leaving out
// TorchScript's debug records (*.debug_pkl: source paths and lines).
func zipDiff(t *testing.T, a, b []byte) []string {
	t.Helper()
	read := func(z []byte) map[string][]byte {
		r, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string][]byte{}
		for _, f := range r.File {
			if strings.HasSuffix(f.Name, ".debug_pkl") {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			m[f.Name], err = io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	ma, mb := read(a), read(b)
	var diff []string
	for name, x := range ma {
		if y, ok := mb[name]; !ok || !bytes.Equal(x, y) {
			diff = append(diff, name)
		}
	}
	for name := range mb {
		if _, ok := ma[name]; !ok {
			diff = append(diff, name)
		}
	}
	if len(ma) == 0 {
		diff = append(diff, "(no entries)")
	}
	return diff
}
