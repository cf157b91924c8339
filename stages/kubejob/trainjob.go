package kubejob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// SubmitTrainJob creates s as a TrainJob (after checking that the cluster
// serves it), waits until its Complete or Failed condition, saying when it
// waits suspended (Kueue), and deletes it (foreground) whatever happens.
// Kubeflow Trainer's controller runs the pods; the output is read by the
// caller from the trainer's termination message (stage wrap writes it).
func SubmitTrainJob(ctx context.Context, d discovery.DiscoveryInterface, dyn dynamic.Interface, s Step, log io.Writer) (uid string, err error) {
	if log == nil {
		log = io.Discard
	}
	if err := Served(d); err != nil {
		return "", err
	}
	obj, err := TrainJob(s)
	if err != nil {
		return "", err
	}
	tj := dyn.Resource(TrainJobResource).Namespace(s.Namespace)
	created, err := tj.Create(ctx, obj, metav1.CreateOptions{FieldManager: ManagedBy})
	if err != nil {
		return "", fmt.Errorf("create trainjob %s/%s: %w", s.Namespace, obj.GetName(), err)
	}
	name := created.GetName()
	fmt.Fprintf(log, "trainjob %s/%s created (uid %s)\n", s.Namespace, name, created.GetUID())
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
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
		fmt.Fprintf(log, "trainjob %s/%s deleted\n", s.Namespace, name)
	}()
	w, err := tj.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: created.GetResourceVersion()})
	if err != nil {
		return "", fmt.Errorf("watch trainjob %s/%s: %w", s.Namespace, name, err)
	}
	defer w.Stop()
	said := false
	check := func(u *unstructured.Unstructured) (bool, error) {
		if susp, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend"); susp && !said {
			said = true
			fmt.Fprintf(log, "trainjob %s/%s is suspended: waiting for Kueue to admit it from queue %s\n", s.Namespace, name, s.Queue)
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["status"] != "True" {
				continue
			}
			switch m["type"] {
			case "Complete":
				return true, nil
			case "Failed":
				return true, &Failure{Job: s.Namespace + "/" + name, Reason: fmt.Sprint(m["reason"]), Message: fmt.Sprint(m["message"]), err: ErrFailed}
			}
		}
		return false, nil
	}
	if done, err := check(created); done {
		return string(created.GetUID()), err
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(log, "interrupted: deleting trainjob %s/%s (foreground)\n", s.Namespace, name)
			return "", fmt.Errorf("trainjob %s/%s: %w; the trainjob is deleted", s.Namespace, name, ctx.Err())
		case ev, ok := <-w.ResultChan():
			if !ok {
				return "", fmt.Errorf("trainjob %s/%s: the watch ended", s.Namespace, name)
			}
			switch ev.Type {
			case watch.Deleted:
				return "", &Failure{Job: s.Namespace + "/" + name, err: ErrDeleted}
			case watch.Added, watch.Modified:
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				if done, err := check(u); done {
					return string(created.GetUID()), err
				}
			}
		}
	}
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
