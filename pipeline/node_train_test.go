package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/kubejob"
	"github.com/modelci/modelci/stages/oci"
)

// syncLog is a run's log that tests read while the run goes on, and wait on.
type syncLog struct {
	mu    sync.Mutex
	b     bytes.Buffer
	waits map[string]chan struct{}
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	for sub, ch := range l.waits {
		if bytes.Contains(l.b.Bytes(), []byte(sub)) {
			close(ch)
			delete(l.waits, sub)
		}
	}
	return len(p), nil
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// when returns a channel closed once the log holds sub.
func (l *syncLog) when(sub string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	if bytes.Contains(l.b.Bytes(), []byte(sub)) {
		close(ch)
		return ch
	}
	if l.waits == nil {
		l.waits = map[string]chan struct{}{}
	}
	l.waits[sub] = ch
	return ch
}

// clusterRun is a project set up to train on the real node: its spec's train.kubernetes names
// the node's context, a namespace of the test's own and a repository on the registry pods reach.
type clusterRun struct {
	node *k8stest.Node
	ns   string
	repo string
	dir  string
}

func newClusterRun(t *testing.T, edit func(string) string) *clusterRun {
	t.Helper()
	n := k8stest.StartNode(t)
	if n.PodRegistry == "" {
		t.Fatal("the node has no registry its pods reach")
	}
	ns := n.Namespace(t)
	c := &clusterRun{node: n, ns: ns, repo: n.PodRegistry + "/" + ns + "/training"}
	c.dir = project(t, func(s string) string {
		if edit != nil {
			s = edit(s)
		}
		return s
	})
	return c
}

// kubernetesBlock is train.kubernetes for the node, with extra keys.
func (c *clusterRun) kubernetesBlock(extra string) string {
	return "  runner: kubernetes\n  kubernetes:\n    context: " + k8stest.Context + "\n    namespace: " + c.ns +
		"\n    repository: " + c.repo + "\n" + extra
}

// run runs the project's spec with the node's kubeconfig, plain HTTP to the pods' registry
// (it is not on loopback), and the server runtime of this checkout.
func (c *clusterRun) run(t *testing.T, ctx context.Context, log *syncLog, opts ...pipeline.Option) (*pipeline.Result, error) {
	t.Helper()
	sp, err := spec.Load(filepath.Join(c.dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("run log:\n%s", log)
		}
	})
	return pipeline.Run(ctx, sp, append([]pipeline.Option{
		pipeline.WithLog(log), pipeline.WithKubeconfig(c.node.Kubeconfig),
		pipeline.WithAccess(oci.Access{Insecure: true}),
		pipeline.WithRuntime("linux/amd64", serverRuntime(t)),
	}, opts...)...)
}

// noJobsLeft fails t if the namespace holds a Job or a pod.
func (c *clusterRun) noJobsLeft(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	jobs, err := c.node.Client.BatchV1().Jobs(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(jobs.Items) > 0 {
		t.Errorf("jobs left behind: %d %v", len(jobs.Items), err)
	}
	pods, err := c.node.Client.CoreV1().Pods(c.ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) > 0 {
		t.Errorf("pods left behind: %d %v", len(pods.Items), err)
	}
}

// The built-in trainer in modelci's own static image, run as a Job on the real node, trains the
// example: the image built from its model has the digest of a local run's, the record names the
// Job, its uid, the trainer image and the dataset artifact by digest, and no Job is left.
func TestNodeTrainJobBuiltin(t *testing.T) {
	c := newClusterRun(t, nil)
	sp, err := os.ReadFile(filepath.Join(c.dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	local := &syncLog{}
	want, err := c.run(t, context.Background(), local)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "modelci.yaml"), []byte(withTrain(string(sp), c.kubernetesBlock(""))), 0o644); err != nil {
		t.Fatal(err)
	}
	// modelci's own secrets are in its environment; none may reach the Job.
	secrets := map[string]string{"MODELCI_KEY_PASSWORD": "s3cret-key-pw", "COSIGN_PASSWORD": "s3cret-cosign-pw", "GITHUB_TOKEN": "s3cret-gh-token"}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	w, err := c.node.Client.BatchV1().Jobs(c.ns).Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	log := &syncLog{}
	got, err := c.run(t, context.Background(), log)
	if err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan() // the Job as created
	b, err := json.Marshal(ev.Object)
	if err != nil || !bytes.Contains(b, []byte(`"kind":"Job"`)) && !bytes.Contains(b, []byte(`"name":"modelci-diabetes-train-`)) {
		t.Fatalf("the Job's first event: %s %v", b, err)
	}
	for k, v := range secrets {
		if bytes.Contains(b, []byte(v)) {
			t.Errorf("%s reached the Job", k)
		}
	}
	if got.Ref != want.Ref || got.Ref == "" {
		t.Errorf("on the cluster %s, locally %s: want the same image", got.Ref, want.Ref)
	}
	cl := got.Record.Inputs.Cluster
	if cl == nil || cl.Train == nil {
		t.Fatalf("no cluster in the record: %+v", got.Record.Inputs)
	}
	j := cl.Train
	if cl.Context != k8stest.Context || cl.Namespace != c.ns || cl.Server == "" || j.UID == "" || !strings.HasPrefix(j.Job, "modelci-diabetes-train-") {
		t.Errorf("record: %+v %+v", cl, j)
	}
	for what, ref := range map[string]string{"input": j.Input, "output": j.Output, "modelci image": cl.ModelciImage} {
		if !strings.HasPrefix(ref, c.repo+"@sha256:") {
			t.Errorf("%s %q is not the training repository by digest", what, ref)
		}
	}
	if !strings.Contains(j.Image, "@sha256:") {
		t.Errorf("trainer image %q is not by digest", j.Image)
	}
	// The trainer's lines came through, prefixed by its pod.
	if out := log.String(); !strings.Contains(out, j.Job+"-") || !strings.Contains(out, "job "+c.ns+"/"+j.Job+" deleted") {
		t.Errorf("log:\n%s", out)
	}
	c.noJobsLeft(t)
}

// withTrain adds lines to the spec's train: section (the linreg example has one).
func withTrain(s, lines string) string {
	if !strings.Contains(s, "\ntrain:\n") {
		return s + "train:\n" + lines
	}
	return strings.Replace(s, "\ntrain:\n", "\ntrain:\n"+lines, 1)
}

// BenchmarkNodeTrainJobOverhead measures, on the real node, the same built-in training run
// locally and as a Job (the input pushed, the Job scheduled and watched, the output pulled), in
// one run: the train stage's seconds each way and their ratio, and the whole run's.
func BenchmarkNodeTrainJobOverhead(b *testing.B) {
	n := k8stest.StartNode(b)
	ns := n.Namespace(b)
	repo := n.PodRegistry + "/" + ns + "/training"
	local := benchProject(b, "")
	cluster := benchProject(b, "")
	sp, err := os.ReadFile(filepath.Join(cluster, "modelci.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	block := "  runner: kubernetes\n  kubernetes:\n    context: " + k8stest.Context + "\n    namespace: " + ns + "\n    repository: " + repo + "\n"
	if err := os.WriteFile(filepath.Join(cluster, "modelci.yaml"), []byte(withTrain(string(sp), block)), 0o644); err != nil {
		b.Fatal(err)
	}
	rt, err := image.Runtime(b.Context(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(".."))
	if err != nil {
		b.Fatal(err)
	}
	run := func(dir string) (train, total time.Duration) {
		s, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		res, err := pipeline.Run(b.Context(), s, pipeline.WithRuntime("linux/amd64", rt), pipeline.WithKubeconfig(n.Kubeconfig), pipeline.WithAccess(oci.Access{Insecure: true}))
		if err != nil {
			b.Fatal(err)
		}
		total = time.Since(start)
		for _, tm := range res.Record.Timings {
			if tm.Stage == "train" {
				train = time.Duration(tm.Seconds * float64(time.Second))
			}
		}
		return train, total
	}
	run(cluster) // modelci's image built and pushed, the node's image cache warm: what a team's second run sees
	var lt, lr, jt, jr time.Duration
	for b.Loop() {
		t1, r1 := run(local)
		t2, r2 := run(cluster)
		lt, lr, jt, jr = lt+t1, lr+r1, jt+t2, jr+r2
	}
	k := float64(b.N)
	b.ReportMetric(lt.Seconds()/k, "local-train-s")
	b.ReportMetric(jt.Seconds()/k, "job-train-s")
	b.ReportMetric(float64(jt)/float64(lt), "job/local-train")
	b.ReportMetric(lr.Seconds()/k, "local-run-s")
	b.ReportMetric(jr.Seconds()/k, "job-run-s")
	b.ReportMetric(float64(jr)/float64(lr), "job/local-run")
}

// kind: TrainJob on a cluster that does not serve Kubeflow Trainer's CRD is refused, naming it,
// before the data is read or anything is pushed.
func TestTrainJobNeedsItsCRD(t *testing.T) {
	c := k8stest.Start(t)
	dir := project(t, func(s string) string {
		return withTrain(s, "  runner: kubernetes\n  kubernetes:\n    context: "+k8stest.Context+"\n    kind: TrainJob\n    runtime_ref: torch-distributed\n    repository: 127.0.0.1:1/never/contacted\n")
	})
	_, err := runProject(t, dir, pipeline.WithKubeconfig(c.Kubeconfig))
	if !errors.Is(err, kubejob.ErrNoTrainJob) || !strings.Contains(err.Error(), "train.kubernetes.kind TrainJob") {
		t.Fatalf("got %v", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, ".modelci", "runs")); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("a refused run left a runs directory: %v", serr)
	}
}
