package kubejob

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/modelci/modelci/stages/oci"
)

// Errors of a step on the cluster, for errors.Is; each comes in a
// *Failure naming the Job, the pod, the container and its last lines.
var (
	// ErrFailed: the step (or fetch, or put) exited non-zero.
	ErrFailed = errors.New("job step failed")
	// ErrOOMKilled: a container went over its memory limit.
	ErrOOMKilled = errors.New("killed for memory (OOMKilled)")
	// ErrDeadlineExceeded: the Job ran past its activeDeadlineSeconds.
	ErrDeadlineExceeded = errors.New("job deadline exceeded")
	// ErrEvicted: the node evicted the pod.
	ErrEvicted = errors.New("pod evicted")
	// ErrImage: an image cannot be pulled or a container cannot be made.
	ErrImage = errors.New("container cannot start")
	// ErrBadOutput: the output the pod reported is not an artifact by
	// digest in the step's output repository.
	ErrBadOutput = errors.New("job output refused")
	// ErrDeleted: someone else deleted the Job while it ran.
	ErrDeleted = errors.New("job deleted while running")
)

// Failure is a step that failed on the cluster.
type Failure struct {
	Job       string // namespace/name
	Pod       string
	Container string
	// Reason is the container's (OOMKilled, Error), the pod's (Evicted) or
	// the Job's (DeadlineExceeded, BackoffLimitExceeded).
	Reason   string
	ExitCode int32
	Message  string
	// Last are the container's last log lines.
	Last []string
	err  error
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %s", f.Job)
	if f.Pod != "" {
		fmt.Fprintf(&b, ": pod %s", f.Pod)
	}
	if f.Container != "" {
		fmt.Fprintf(&b, ": container %s", f.Container)
	}
	fmt.Fprintf(&b, ": %v", f.err)
	if f.Reason != "" {
		fmt.Fprintf(&b, " (reason %s", f.Reason)
		if f.ExitCode != 0 {
			fmt.Fprintf(&b, ", exit code %d", f.ExitCode)
		}
		b.WriteString(")")
	}
	if m := strings.TrimSpace(f.Message); m != "" && !strings.Contains(strings.Join(f.Last, "\n"), m) {
		fmt.Fprintf(&b, ": %s", m)
	}
	if len(f.Last) > 0 {
		fmt.Fprintf(&b, "; its last lines:\n    %s", strings.Join(f.Last, "\n    "))
	}
	return b.String()
}

func (f *Failure) Unwrap() error { return f.err }

// Result is a step that succeeded on the cluster.
type Result struct {
	Namespace string
	Job       string
	UID       string
	Pod       string
	// Output is the artifact put pushed: the step's output repository by
	// digest (checked).
	Output string
	// StepImage is the image the step ran, as the node resolved it
	// (the container status' imageID: by digest).
	StepImage string
	// Admission is how long the Job waited suspended (for Kueue).
	Admission time.Duration
	// Adopted says the Job was a killed run's, of the same inputs.
	Adopted bool
}

// Option configures Run.
type Option func(*options)

type options struct {
	log      io.Writer
	tail     int
	deleteBy time.Duration
	now      func() time.Time
}

// WithLog receives progress lines and the step's log lines, each prefixed
// with its pod; nil discards them.
func WithLog(w io.Writer) Option {
	return func(o *options) {
		if w != nil {
			o.log = w
		}
	}
}

// WithTail sets how many of the failed container's last lines an error
// carries (default 20).
func WithTail(n int) Option { return func(o *options) { o.tail = n } }

// Run submits s as a Job in its namespace (or adopts one of the same
// content that a killed run left), watches it and its pods, streams the
// step's log, and returns the output artifact's reference. Whatever
// happens — success, failure, a timeout, ctx cancelled — the Job is
// deleted with foreground propagation before Run returns, so that no
// pod is left running.
func Run(ctx context.Context, kube kubernetes.Interface, s Step, opts ...Option) (_ *Result, err error) {
	o := options{log: io.Discard, tail: 20, deleteBy: 2 * time.Minute, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	job, err := Job(s)
	if err != nil {
		return nil, err
	}
	r := &runner{kube: kube, s: s, o: o, ns: s.Namespace, name: job.Name, streams: map[string]bool{}, last: map[string]*ring{}}
	adopted, err := r.tidy(ctx, job)
	if err != nil {
		return nil, err
	}
	var created *batchv1.Job
	if adopted != nil {
		created = adopted
	} else {
		created, err = kube.BatchV1().Jobs(r.ns).Create(ctx, job, metav1.CreateOptions{FieldManager: ManagedBy})
		if apierrors.IsAlreadyExists(err) {
			// Another run of the same inputs created it a moment ago: wait on it too.
			created, err = kube.BatchV1().Jobs(r.ns).Get(ctx, job.Name, metav1.GetOptions{})
		}
		if err != nil {
			return nil, fmt.Errorf("create job %s/%s: %w", r.ns, job.Name, err)
		}
		r.logf("job %s/%s created (uid %s)", r.ns, created.Name, created.UID)
	}
	defer func() {
		if derr := r.delete(ctx); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	res, err := r.wait(ctx, created)
	if err != nil {
		if ctx.Err() != nil {
			r.logf("interrupted: deleting job %s/%s (foreground)", r.ns, r.name)
			return nil, fmt.Errorf("job %s/%s: %w; the job is deleted", r.ns, r.name, ctx.Err())
		}
		return nil, err
	}
	res.Adopted = adopted != nil
	return res, nil
}

type runner struct {
	kube kubernetes.Interface
	s    Step
	o    options
	ns   string
	name string
	uid  string

	mu      sync.Mutex
	streams map[string]bool  // pods whose step log is being streamed
	last    map[string]*ring // the step's last lines, by pod
	wg      sync.WaitGroup
}

func (r *runner) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.o.log, format+"\n", args...)
}

// tidy looks at the Jobs of the same model and step that earlier runs left:
// the one of the same content is adopted unless it failed; finished others
// are deleted; running others (another run's, maybe alive) are left alone.
func (r *runner) tidy(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelModel: r.s.Model, LabelStep: r.s.Name}).String()
	list, err := r.kube.BatchV1().Jobs(r.ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list jobs in %s: %w", r.ns, err)
	}
	var adopt *batchv1.Job
	for i := range list.Items {
		j := &list.Items[i]
		done, failed := finished(j)
		switch {
		case j.Name == job.Name && j.DeletionTimestamp == nil && !failed:
			r.logf("job %s/%s of run %s has the same inputs: adopting it", r.ns, j.Name, j.Labels[LabelRunID])
			adopt = j
		case j.Name == job.Name || done:
			r.logf("job %s/%s of run %s is finished: deleting it", r.ns, j.Name, j.Labels[LabelRunID])
			if err := r.deleteJob(ctx, j.Name); err != nil {
				return nil, err
			}
		default:
			r.logf("job %s/%s of run %s is still running: left alone", r.ns, j.Name, j.Labels[LabelRunID])
		}
	}
	return adopt, nil
}

// finished says whether a Job is over, and whether it failed.
func finished(j *batchv1.Job) (done, failed bool) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true, false
		case batchv1.JobFailed:
			return true, true
		}
	}
	return false, false
}

// wait watches the Job and its pods until the Job completes or fails.
func (r *runner) wait(ctx context.Context, job *batchv1.Job) (*Result, error) {
	r.uid = string(job.UID)
	jobs := r.kube.BatchV1().Jobs(r.ns)
	pods := r.kube.CoreV1().Pods(r.ns)
	podSel := labels.SelectorFromSet(labels.Set{"batch.kubernetes.io/controller-uid": r.uid}).String()
	var suspendedAt time.Time
	var admission time.Duration
	state := map[string]*corev1.Pod{}
	seen := map[string]string{} // pod → last reported phase
	for {
		// (Re)start both watches from a fresh read: a watch the server ended
		// (a timeout, a compacted resourceVersion) loses nothing.
		j, err := jobs.Get(ctx, r.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, &Failure{Job: r.ns + "/" + r.name, err: ErrDeleted}
		}
		if err != nil {
			return nil, fmt.Errorf("job %s/%s: %w", r.ns, r.name, err)
		}
		pl, err := pods.List(ctx, metav1.ListOptions{LabelSelector: podSel})
		if err != nil {
			return nil, fmt.Errorf("pods of job %s/%s: %w", r.ns, r.name, err)
		}
		for i := range pl.Items {
			state[pl.Items[i].Name] = &pl.Items[i]
		}
		jw, err := jobs.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", r.name).String(), ResourceVersion: j.ResourceVersion})
		if err != nil {
			return nil, fmt.Errorf("watch job %s/%s: %w", r.ns, r.name, err)
		}
		pw, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: podSel, ResourceVersion: pl.ResourceVersion})
		if err != nil {
			jw.Stop()
			return nil, fmt.Errorf("watch pods of job %s/%s: %w", r.ns, r.name, err)
		}
		res, done, err := func() (*Result, bool, error) {
			defer jw.Stop()
			defer pw.Stop()
			for {
				// What the latest objects say.
				if suspended(j) && suspendedAt.IsZero() {
					suspendedAt = r.o.now()
					q := j.Labels[LabelQueue]
					if q != "" {
						r.logf("job %s/%s is suspended: waiting for Kueue to admit it from queue %s", r.ns, r.name, q)
					} else {
						r.logf("job %s/%s is suspended: waiting for it to be resumed", r.ns, r.name)
					}
				}
				if !suspended(j) && !suspendedAt.IsZero() && admission == 0 {
					admission = r.o.now().Sub(suspendedAt)
					r.logf("job %s/%s admitted after %s", r.ns, r.name, admission.Round(100*time.Millisecond))
				}
				for name, p := range state {
					if ph := string(p.Status.Phase); seen[name] != ph {
						seen[name] = ph
						r.logf("pod %s: %s", name, ph)
					}
					r.stream(ctx, p)
					if err := imageTrouble(p); err != nil {
						f := err.(*Failure)
						f.Job = r.ns + "/" + r.name
						return nil, true, f
					}
				}
				if done, failed := finished(j); done {
					r.drain()
					if failed {
						return nil, true, r.failure(ctx, j, state)
					}
					res, err := r.result(state)
					if res != nil {
						res.Admission = admission
					}
					return res, true, err
				}
				select {
				case <-ctx.Done():
					return nil, true, ctx.Err()
				case ev, ok := <-jw.ResultChan():
					if !ok || ev.Type == watch.Error {
						return nil, false, nil
					}
					if ev.Type == watch.Deleted {
						return nil, true, &Failure{Job: r.ns + "/" + r.name, err: ErrDeleted}
					}
					if nj, ok := ev.Object.(*batchv1.Job); ok {
						j = nj
					}
				case ev, ok := <-pw.ResultChan():
					if !ok || ev.Type == watch.Error {
						return nil, false, nil
					}
					p, ok := ev.Object.(*corev1.Pod)
					if !ok {
						continue
					}
					if ev.Type == watch.Deleted {
						// Keep the last state: a failure is read from it.
						continue
					}
					state[p.Name] = p
				}
			}
		}()
		if done {
			return res, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

func suspended(j *batchv1.Job) bool { return j.Spec.Suspend != nil && *j.Spec.Suspend }

// imageTrouble is a container that cannot start and will not by waiting:
// an image that cannot be pulled, a container that cannot be made.
func imageTrouble(p *corev1.Pod) error {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		// ErrImagePull and CreateContainerError may pass on the kubelet's next
		// try; these do not.
		case "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError":
			return &Failure{Pod: p.Name, Container: cs.Name, Reason: w.Reason, Message: fmt.Sprintf("image %s: %s", cs.Image, w.Message), err: ErrImage}
		}
	}
	return nil
}

// stream follows the step container's log once it has started, a
// goroutine per pod, each line prefixed with the pod's name.
func (r *runner) stream(ctx context.Context, p *corev1.Pod) {
	started := false
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Name == r.s.Name && (cs.State.Running != nil || cs.State.Terminated != nil) {
			started = true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !started || r.streams[p.Name] {
		return
	}
	r.streams[p.Name] = true
	last := &ring{n: r.o.tail}
	r.last[p.Name] = last
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		rc, err := r.kube.CoreV1().Pods(r.ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: r.s.Name, Follow: true}).Stream(ctx)
		if err != nil {
			r.logf("%s: cannot follow the log: %v", p.Name, err)
			return
		}
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			last.add(line)
			fmt.Fprintf(r.o.log, "%s: %s\n", p.Name, line)
			r.mu.Unlock()
		}
	}()
}

// drain waits for the log streams to end (a finished container's stream
// ends by itself), briefly: the result never waits on a stuck stream.
func (r *runner) drain() {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// result reads the output reference from the succeeded pod's put
// container, and checks it: the step's output repository, by digest.
func (r *runner) result(state map[string]*corev1.Pod) (*Result, error) {
	for _, p := range sortedPods(state) {
		if p.Status.Phase != corev1.PodSucceeded {
			continue
		}
		res := &Result{Namespace: r.ns, Job: r.name, UID: r.uid, Pod: p.Name}
		for _, cs := range p.Status.InitContainerStatuses {
			if cs.Name == r.s.Name {
				res.StepImage = cs.ImageID
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == ContainerPut && cs.State.Terminated != nil {
				out, err := checkOutput(strings.TrimSpace(cs.State.Terminated.Message), r.s.Output)
				if err != nil {
					return nil, fmt.Errorf("job %s/%s: pod %s: %w", r.ns, r.name, p.Name, err)
				}
				res.Output = out
				return res, nil
			}
		}
		return nil, fmt.Errorf("job %s/%s: pod %s: %w: no %s container status", r.ns, r.name, p.Name, ErrBadOutput, ContainerPut)
	}
	return nil, fmt.Errorf("job %s/%s completed: %w: no succeeded pod is left to read the output from", r.ns, r.name, ErrBadOutput)
}

// checkOutput accepts only the output repository by digest: a pod says
// what it pushed, and modelci pulls nothing else.
func checkOutput(msg, repo string) (string, error) {
	ref, err := oci.ParseRef(msg)
	if err == nil {
		err = ref.RequireDigest()
	}
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrBadOutput, msg, err)
	}
	want, err := oci.ParseRepository(repo)
	if err != nil {
		return "", fmt.Errorf("%w: output repository: %w", ErrBadOutput, err)
	}
	if ref.Repository() != want.String() {
		return "", fmt.Errorf("%w: %q is not in %s", ErrBadOutput, msg, want)
	}
	return ref.Repository() + "@" + ref.Digest().String(), nil
}

// failure explains a failed Job from its last pod.
func (r *runner) failure(ctx context.Context, j *batchv1.Job, state map[string]*corev1.Pod) error {
	f := &Failure{Job: r.ns + "/" + r.name, err: ErrFailed}
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			f.Reason, f.Message = c.Reason, c.Message
			if c.Reason == batchv1.JobReasonDeadlineExceeded {
				f.err = ErrDeadlineExceeded
			}
		}
	}
	pods := sortedPods(state)
	if len(pods) == 0 {
		return f
	}
	p := pods[len(pods)-1]
	f.Pod = p.Name
	if p.Status.Reason == "Evicted" {
		f.Reason, f.Message, f.err = p.Status.Reason, p.Status.Message, ErrEvicted
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		t := cs.State.Terminated
		if t == nil || (t.ExitCode == 0 && t.Reason != "OOMKilled") {
			continue
		}
		f.Container, f.ExitCode = cs.Name, t.ExitCode
		if f.err != ErrDeadlineExceeded && f.err != ErrEvicted {
			f.Reason, f.Message = t.Reason, t.Message
			if t.Reason == "OOMKilled" {
				f.err = ErrOOMKilled
			}
		}
		break
	}
	container := f.Container
	if container == "" {
		container = r.s.Name
	}
	r.mu.Lock()
	last := r.last[p.Name]
	r.mu.Unlock()
	if container == r.s.Name && last != nil {
		f.Last = last.lines()
	} else if lines, err := r.tailLog(ctx, p.Name, container); err == nil {
		f.Last = lines
	}
	return f
}

// tailLog reads a container's last lines.
func (r *runner) tailLog(ctx context.Context, pod, container string) ([]string, error) {
	n := int64(r.o.tail)
	b, err := r.kube.CoreV1().Pods(r.ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, TailLines: &n}).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return nil, nil
	}
	return strings.Split(s, "\n"), nil
}

// delete removes the Job and its pods (foreground) and waits until it is
// gone, even when ctx has ended.
func (r *runner) delete(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.deleteBy)
	defer cancel()
	if err := r.deleteJob(dctx, r.name); err != nil {
		return err
	}
	r.logf("job %s/%s deleted", r.ns, r.name)
	return nil
}

// deleteJob deletes a Job with foreground propagation and waits, by
// watch, until it is gone.
func (r *runner) deleteJob(ctx context.Context, name string) error {
	jobs := r.kube.BatchV1().Jobs(r.ns)
	fg := metav1.DeletePropagationForeground
	err := jobs.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete job %s/%s: %w", r.ns, name, err)
	}
	for {
		j, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete job %s/%s: %w", r.ns, name, err)
		}
		w, err := jobs.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: j.ResourceVersion})
		if err != nil {
			return fmt.Errorf("delete job %s/%s: %w", r.ns, name, err)
		}
		gone := func() bool {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return false
				case ev, ok := <-w.ResultChan():
					if !ok {
						return false
					}
					if ev.Type == watch.Deleted {
						return true
					}
				}
			}
		}()
		if gone {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("delete job %s/%s: still there: %w", r.ns, name, err)
		}
	}
}

func sortedPods(state map[string]*corev1.Pod) []*corev1.Pod {
	var ps []*corev1.Pod
	for _, p := range state {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, k int) bool {
		a, b := ps[i].CreationTimestamp, ps[k].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return ps[i].Name < ps[k].Name
	})
	return ps
}

// ring keeps the last n lines.
type ring struct {
	n int
	l []string
}

func (r *ring) add(s string) {
	r.l = append(r.l, s)
	if len(r.l) > r.n {
		r.l = r.l[len(r.l)-r.n:]
	}
}

func (r *ring) lines() []string { return append([]string(nil), r.l...) }
