package kubejob_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/stages/kubejob"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// lines is a log that tells waiters when a line with a substring comes.
type lines struct {
	mu    sync.Mutex
	b     strings.Builder
	waits []wait
}

type wait struct {
	sub string
	ch  chan struct{}
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	s := l.b.String()
	kept := l.waits[:0]
	for _, w := range l.waits {
		if strings.Contains(s, w.sub) {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	l.waits = kept
	return len(p), nil
}

// when returns a channel closed once the log holds sub.
func (l *lines) when(sub string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	ch := make(chan struct{})
	if strings.Contains(l.b.String(), sub) {
		close(ch)
		return ch
	}
	l.waits = append(l.waits, wait{sub, ch})
	return ch
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func await(t *testing.T, ch <-chan struct{}, what string, log *lines) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Minute):
		t.Fatalf("no %q within a minute; log:\n%s", what, log)
	}
}

func kwokStep(ns string) kubejob.Step {
	s := step()
	s.Namespace, s.RegistrySecret, s.Timeout = ns, "", 0
	return s
}

// A queued Job waits suspended until Kueue (here: the test) admits it, and
// modelci says that it waits; on kwok the pod "completes" without a
// termination message, which is refused; the Job is gone afterwards.
func TestQueuedJobWaitsForAdmission(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	s := kwokStep(ns)
	log := &lines{}
	waiting := log.when("waiting for Kueue to admit it from queue team-a")
	type result struct {
		res *kubejob.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := kubejob.Run(context.Background(), c.Client, s, kubejob.WithLog(log))
		done <- result{res, err}
	}()
	await(t, waiting, "waiting line", log)
	ctx := context.Background()
	j, err := c.Client.BatchV1().Jobs(ns).Get(ctx, s.JobName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !*j.Spec.Suspend || j.Labels[kubejob.LabelQueue] != "team-a" {
		t.Fatalf("suspend %v, labels %v", *j.Spec.Suspend, j.Labels)
	}
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(pods.Items) != 0 {
		t.Fatalf("a suspended Job has no pods: %d, %v", len(pods.Items), err)
	}
	// Kueue admits by unsuspending.
	patch := []byte(`{"spec":{"suspend":false}}`)
	if _, err := c.Client.BatchV1().Jobs(ns).Patch(ctx, s.JobName(), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("Run did not end; log:\n%s", log)
	}
	if !errors.Is(r.err, kubejob.ErrBadOutput) {
		t.Fatalf("kwok's pod reports no output: want ErrBadOutput, got %v; log:\n%s", r.err, log)
	}
	if !strings.Contains(log.String(), "admitted after") {
		t.Errorf("no admission line:\n%s", log)
	}
	if _, err := c.Client.BatchV1().Jobs(ns).Get(ctx, s.JobName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Job is left behind: %v", err)
	}
}

// Ctrl-C (ctx cancelled) deletes the Job, foreground, before Run returns.
func TestInterruptDeletesJob(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	s := kwokStep(ns) // queued: it stays suspended until the interrupt
	log := &lines{}
	created := log.when("created")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := kubejob.Run(ctx, c.Client, s, kubejob.WithLog(log))
		done <- err
	}()
	await(t, created, "created line", log)
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("Run did not end; log:\n%s", log)
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "the job is deleted") {
		t.Errorf("got %v", err)
	}
	if _, err := c.Client.BatchV1().Jobs(ns).Get(context.Background(), s.JobName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Job is left behind: %v", err)
	}
	if !strings.Contains(log.String(), "interrupted: deleting job") {
		t.Errorf("no interruption line:\n%s", log)
	}
}

// A re-run after a kill adopts the Job of the same inputs, and leaves a
// running Job of other inputs (another run's) alone.
func TestRerunAdoptsJobOfSameInputs(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	s := kwokStep(ns)
	killed, other := s, s
	killed.RunID = "killed-run"
	other.RunID, other.Input = "other-run", strings.Replace(s.Input, "c", "e", 1)
	for _, st := range []kubejob.Step{killed, other} {
		j, err := kubejob.Job(st)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	log := &lines{}
	waiting := log.when("waiting for Kueue")
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := kubejob.Run(rctx, c.Client, s, kubejob.WithLog(log))
		done <- err
	}()
	await(t, waiting, "waiting line", log)
	cancel()
	<-done
	out := log.String()
	if !strings.Contains(out, "of run killed-run has the same inputs: adopting it") || strings.Contains(out, "created (uid") {
		t.Errorf("the killed run's Job is not adopted:\n%s", out)
	}
	if !strings.Contains(out, other.JobName()+" of run other-run is still running: left alone") {
		t.Errorf("the other run's Job:\n%s", out)
	}
	if _, err := c.Client.BatchV1().Jobs(ns).Get(ctx, other.JobName(), metav1.GetOptions{}); err != nil {
		t.Errorf("the other run's Job was touched: %v", err)
	}
}

// trainerModule publishes Kubeflow Trainer's API types and CRDs.
const trainerModule = "github.com/kubeflow/trainer/v2@v2.0.0"

// A TrainJob is refused, naming the CRD, where it is not served; where it
// is, modelci submits it in Kubeflow Trainer's shape, waits while Kueue
// holds it, and deletes it on Ctrl-C. Kubeflow Trainer's controller does
// not run here: the object is what is checked.
func TestTrainJob(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	s := kwokStep(ns)
	s.RuntimeRef, s.NumNodes = "torch-distributed", 2
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	disc := c.Client.Discovery()
	if err := kubejob.Served(disc); !errors.Is(err, kubejob.ErrNoTrainJob) {
		if err == nil {
			t.Log("the CRD is already installed (another test did it)")
		} else {
			t.Fatalf("before the CRD: %v", err)
		}
	}
	c.InstallCRDs(t, trainerModule, "manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml")
	log := &lines{}
	waiting := log.when("waiting for Kueue to admit it from queue team-a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := kubejob.RunTrainJob(ctx, c.Client, dyn, s, kubejob.WithLog(log))
		done <- err
	}()
	await(t, waiting, "waiting line", log)
	u, err := dyn.Resource(kubejob.TrainJobResource).Namespace(ns).Get(context.Background(), s.JobName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path ...string) any {
		v, _, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
		return v
	}
	if get("spec", "runtimeRef", "name") != "torch-distributed" || get("spec", "trainer", "numNodes") != int64(2) || get("spec", "suspend") != true {
		t.Errorf("spec: %v", u.Object["spec"])
	}
	cmd, _ := get("spec", "trainer", "command").([]any)
	if len(cmd) < 3 || cmd[0] != kubejob.ToolDir+"/usr/local/bin/modelci" || cmd[len(cmd)-2] != "python3" || cmd[len(cmd)-1] != "train.py" {
		t.Errorf("the trainer's command is wrapped by modelci's: %v", cmd)
	}
	if get("spec", "trainer", "image") != s.Image || u.GetLabels()[kubejob.LabelQueue] != "team-a" {
		t.Errorf("image %v, labels %v", get("spec", "trainer", "image"), u.GetLabels())
	}
	ov, _ := get("spec", "podSpecOverrides").([]any)
	if len(ov) != 1 || !strings.Contains(fmt.Sprint(ov[0]), "reference:"+s.ModelciImage) {
		t.Errorf("overrides: %v", ov)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("got %v", err)
	}
	if _, err := dyn.Resource(kubejob.TrainJobResource).Namespace(ns).Get(context.Background(), s.JobName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the TrainJob is left behind: %v", err)
	}
}
