package kubejob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// TrainJobResource is Kubeflow Trainer's TrainJob.
var TrainJobResource = schema.GroupVersionResource{Group: "trainer.kubeflow.org", Version: "v1alpha1", Resource: "trainjobs"}

// ErrNoTrainJob means the cluster does not serve Kubeflow Trainer's
// TrainJob (its CRD is not installed).
var ErrNoTrainJob = errors.New("the cluster does not serve trainer.kubeflow.org/v1alpha1 TrainJob (install Kubeflow Trainer, or use kind: Job)")

// Paths of the TrainJob's pod: the trainer runtime owns the pod's
// containers, so modelci's CLI comes in as an image volume and wraps the
// trainer's command (`modelci stage wrap`: fetch, the command, put).
const (
	ToolVolume = "modelci-tool"
	ToolDir    = "/modelci-tool"
	// TrainJobNode is Kubeflow Trainer's trainer container and job name.
	TrainJobNode = "node"
)

// TrainJob is the Kubeflow Trainer TrainJob of s: s.RuntimeRef's
// ClusterTrainingRuntime, s.NumNodes nodes, the trainer's image with its
// command wrapped by modelci's CLI (mounted from ModelciImage as an image
// volume, Kubernetes 1.33+) so that the input and output move as
// artifacts as in a Job.
func TrainJob(s Step) (*unstructured.Unstructured, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if s.RuntimeRef == "" {
		return nil, fmt.Errorf("%w: a TrainJob needs a runtime", ErrInvalid)
	}
	wrap := []string{ToolDir + "/usr/local/bin/modelci", "stage", "wrap", "--ref", s.Input, "--dir", InputDir, "--out", OutputDir, "--tmp", TmpDir, "--to", s.Output, "--termination-log", "/dev/termination-log"}
	if s.WorkingDir != "" {
		wrap = append(wrap, "--workdir", s.WorkingDir)
	}
	if s.Insecure {
		wrap = append(wrap, "--insecure")
	}
	wrap = append(append(wrap, "--"), s.Command...)
	env := append([]corev1.EnvVar{{Name: "HOME", Value: TmpDir}, {Name: "TMPDIR", Value: TmpDir}}, s.Env...)
	volumes := []corev1.Volume{
		{Name: WorkVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: ToolVolume, VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: s.ModelciImage, PullPolicy: corev1.PullIfNotPresent}}},
	}
	mounts := []corev1.VolumeMount{{Name: WorkVolume, MountPath: WorkDir}, {Name: ToolVolume, MountPath: ToolDir, ReadOnly: true}}
	if s.RegistrySecret != "" {
		volumes = append(volumes, corev1.Volume{Name: SecretVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: s.RegistrySecret, Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: SecretVolume, MountPath: SecretDir, ReadOnly: true})
		// Read by the wrapper, which drops it from the trainer's environment.
		env = append(env, corev1.EnvVar{Name: "DOCKER_CONFIG", Value: SecretDir})
	}
	override := map[string]any{
		"targetJobs": []any{map[string]any{"name": TrainJobNode}},
		"volumes":    volumes,
		"containers": []any{map[string]any{"name": TrainJobNode, "volumeMounts": mounts}},
	}
	if s.ServiceAccount != "" {
		override["serviceAccountName"] = s.ServiceAccount
	}
	if len(s.NodeSelector) > 0 {
		override["nodeSelector"] = s.NodeSelector
	}
	if len(s.Tolerations) > 0 {
		override["tolerations"] = s.Tolerations
	}
	trainer := map[string]any{"image": s.Image, "command": wrap, "env": env}
	if s.NumNodes > 0 {
		trainer["numNodes"] = s.NumNodes
	}
	if len(s.Resources.Limits) > 0 || len(s.Resources.Requests) > 0 {
		trainer["resourcesPerNode"] = s.Resources
	}
	spec := map[string]any{
		"runtimeRef":       map[string]any{"name": s.RuntimeRef, "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime"},
		"trainer":          trainer,
		"podSpecOverrides": []any{override},
		"labels":           s.labels(),
	}
	if s.Queue != "" {
		spec["suspend"] = true
	}
	obj := map[string]any{
		"apiVersion": "trainer.kubeflow.org/v1alpha1",
		"kind":       "TrainJob",
		"metadata":   map[string]any{"name": s.JobName(), "namespace": s.Namespace, "labels": s.labels()},
		"spec":       spec,
	}
	// Through JSON: typed values (EnvVar, Volume, quantities) become plain ones.
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("trainjob %s: %w", s.JobName(), err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &u.Object); err != nil {
		return nil, fmt.Errorf("trainjob %s: %w", s.JobName(), err)
	}
	return u, nil
}

// Served says whether the cluster serves Kubeflow Trainer's TrainJob.
func Served(d discovery.DiscoveryInterface) error {
	list, err := d.ServerResourcesForGroupVersion(TrainJobResource.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return ErrNoTrainJob
	}
	if err != nil {
		return fmt.Errorf("discover %s: %w", TrainJobResource.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == TrainJobResource.Resource {
			return nil
		}
	}
	return ErrNoTrainJob
}

// LabelJobSet is JobSet's label on the pods of a TrainJob's JobSet, which
// Kubeflow Trainer names after the TrainJob.
const LabelJobSet = "jobset.sigs.k8s.io/jobset-name"

// RunTrainJob runs s as a TrainJob (after checking that the cluster
// serves it): created, watched until its Complete or Failed condition
// (saying when it waits suspended for Kueue), the node container's log
// streamed, the output read from node 0's termination message (stage wrap
// writes it) and checked as a Job's; deleted (foreground) whatever
// happens. Kubeflow Trainer's controller runs the pods.
func RunTrainJob(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, s Step, opts ...Option) (_ *Result, err error) {
	o := options{log: io.Discard, tail: 20, deleteBy: 2 * time.Minute, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if err := Served(kube.Discovery()); err != nil {
		return nil, err
	}
	obj, err := TrainJob(s)
	if err != nil {
		return nil, err
	}
	tj := dyn.Resource(TrainJobResource).Namespace(s.Namespace)
	created, err := tj.Create(ctx, obj, metav1.CreateOptions{FieldManager: ManagedBy})
	if err != nil {
		return nil, fmt.Errorf("create trainjob %s/%s: %w", s.Namespace, obj.GetName(), err)
	}
	name := created.GetName()
	// The runner streams and explains the node container, by its name.
	node := s
	node.Name = TrainJobNode
	r := &runner{kube: kube, s: node, o: o, ns: s.Namespace, name: name, uid: string(created.GetUID()), streams: map[string]bool{}, last: map[string]*ring{}}
	r.logf("trainjob %s/%s created (uid %s)", s.Namespace, name, created.GetUID())
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.deleteBy)
		defer cancel()
		fg := metav1.DeletePropagationForeground
		derr := tj.Delete(dctx, name, metav1.DeleteOptions{PropagationPolicy: &fg})
		if derr == nil {
			derr = gone(dctx, tj, name)
		}
		if derr != nil && !apierrors.IsNotFound(derr) {
			err = errors.Join(err, fmt.Errorf("delete trainjob %s/%s: %w", s.Namespace, name, derr))
			return
		}
		r.logf("trainjob %s/%s deleted", s.Namespace, name)
	}()
	res, err := r.waitTrainJob(ctx, tj, created)
	if err != nil && ctx.Err() != nil {
		r.logf("interrupted: deleting trainjob %s/%s (foreground)", s.Namespace, name)
		return nil, fmt.Errorf("trainjob %s/%s: %w; the trainjob is deleted", s.Namespace, name, ctx.Err())
	}
	return res, err
}

// waitTrainJob watches the TrainJob and its pods until it completes or
// fails.
func (r *runner) waitTrainJob(ctx context.Context, tj dynamic.ResourceInterface, created *unstructured.Unstructured) (*Result, error) {
	pods := r.kube.CoreV1().Pods(r.ns)
	podSel := LabelJobSet + "=" + r.name
	said := false
	state := map[string]*corev1.Pod{}
	u := created
	for {
		pl, err := pods.List(ctx, metav1.ListOptions{LabelSelector: podSel})
		if err != nil {
			return nil, fmt.Errorf("pods of trainjob %s/%s: %w", r.ns, r.name, err)
		}
		for i := range pl.Items {
			state[pl.Items[i].Name] = &pl.Items[i]
		}
		w, err := tj.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", r.name).String(), ResourceVersion: u.GetResourceVersion()})
		if err != nil {
			return nil, fmt.Errorf("watch trainjob %s/%s: %w", r.ns, r.name, err)
		}
		pw, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: podSel, ResourceVersion: pl.ResourceVersion})
		if err != nil {
			w.Stop()
			return nil, fmt.Errorf("watch pods of trainjob %s/%s: %w", r.ns, r.name, err)
		}
		res, done, err := func() (*Result, bool, error) {
			defer w.Stop()
			defer pw.Stop()
			for {
				if susp, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend"); susp && !said {
					said = true
					r.logf("trainjob %s/%s is suspended: waiting for Kueue to admit it from queue %s", r.ns, r.name, r.s.Queue)
				}
				for _, p := range state {
					r.stream(ctx, p)
				}
				if cond, ok := finalCondition(u); ok {
					r.drain()
					if cond["type"] == "Failed" {
						f := &Failure{Job: r.ns + "/" + r.name, Reason: fmt.Sprint(cond["reason"]), Message: fmt.Sprint(cond["message"]), err: ErrFailed}
						if ps := sortedPods(state); len(ps) > 0 {
							p := ps[len(ps)-1]
							f.Pod, f.Container = p.Name, TrainJobNode
							r.mu.Lock()
							if l := r.last[p.Name]; l != nil {
								f.Last = l.lines()
							}
							r.mu.Unlock()
						}
						return nil, true, f
					}
					res, err := r.trainJobResult(state)
					return res, true, err
				}
				select {
				case <-ctx.Done():
					return nil, true, ctx.Err()
				case ev, ok := <-w.ResultChan():
					if !ok || ev.Type == watch.Error {
						return nil, false, nil
					}
					if ev.Type == watch.Deleted {
						return nil, true, &Failure{Job: r.ns + "/" + r.name, err: ErrDeleted}
					}
					if nu, ok := ev.Object.(*unstructured.Unstructured); ok {
						u = nu
					}
				case ev, ok := <-pw.ResultChan():
					if !ok || ev.Type == watch.Error {
						return nil, false, nil
					}
					if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted {
						state[p.Name] = p
					}
				}
			}
		}()
		if done {
			return res, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if u, err = tj.Get(ctx, r.name, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("trainjob %s/%s: %w", r.ns, r.name, err)
		}
	}
}

// finalCondition is a TrainJob's Complete or Failed condition, when true.
func finalCondition(u *unstructured.Unstructured) (map[string]any, bool) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["status"] == "True" && (m["type"] == "Complete" || m["type"] == "Failed") {
			return m, true
		}
	}
	return nil, false
}

// trainJobResult reads the output from the node container that wrote a
// termination message: node 0's (stage wrap pushes from node 0 only).
func (r *runner) trainJobResult(state map[string]*corev1.Pod) (*Result, error) {
	for _, p := range sortedPods(state) {
		for _, cs := range p.Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name != TrainJobNode || t == nil || t.ExitCode != 0 || strings.TrimSpace(t.Message) == "" {
				continue
			}
			out, err := checkOutput(strings.TrimSpace(t.Message), r.s.Output)
			if err != nil {
				return nil, fmt.Errorf("trainjob %s/%s: pod %s: %w", r.ns, r.name, p.Name, err)
			}
			return &Result{Namespace: r.ns, Job: r.name, UID: r.uid, Pod: p.Name, Output: out, StepImage: cs.ImageID}, nil
		}
	}
	return nil, fmt.Errorf("trainjob %s/%s completed: %w: no node reported an output", r.ns, r.name, ErrBadOutput)
}

// gone waits, by watch, until the object name is deleted (foreground
// deletion keeps it until its dependents are gone).
func gone(ctx context.Context, r dynamic.ResourceInterface, name string) error {
	for {
		u, err := r.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		w, err := r.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: u.GetResourceVersion()})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Deleted {
				w.Stop()
				return nil
			}
		}
		w.Stop()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("still there: %w", err)
		}
	}
}
