package kubejob_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/modelci/modelci/stages/kubejob"
)

func step() kubejob.Step {
	return kubejob.Step{
		Name: "train", Model: "diabetes", RunID: "20261207-120000.000000-abcdef", Namespace: "ml",
		Image: "registry.test:5000/trainers/torch@sha256:" + strings.Repeat("a", 64), Command: []string{"python3", "train.py"},
		WorkingDir:   kubejob.InputDir + "/src",
		Env:          []corev1.EnvVar{{Name: "MODELCI_OUT", Value: kubejob.OutputDir}},
		ModelciImage: "registry.test:5000/ml/diabetes@sha256:" + strings.Repeat("b", 64),
		Input:        "registry.test:5000/ml/diabetes@sha256:" + strings.Repeat("c", 64),
		Output:       "registry.test:5000/ml/diabetes",
		Resources:    corev1.ResourceRequirements{Limits: corev1.ResourceList{kubejob.ResourceGPU: resource.MustParse("2")}},
		Queue:        "team-a", RegistrySecret: "pull", Timeout: 90 * time.Second, BackoffLimit: 1,
	}
}

func TestJobShape(t *testing.T) {
	s := step()
	j, err := kubejob.Job(s)
	if err != nil {
		t.Fatal(err)
	}
	if j.Name != s.JobName() || len(j.Name) > 63 || !strings.HasPrefix(j.Name, "modelci-diabetes-train-") {
		t.Errorf("name %q", j.Name)
	}
	if j.Labels[kubejob.LabelQueue] != "team-a" || j.Spec.Suspend == nil || !*j.Spec.Suspend {
		t.Errorf("a queued Job is created suspended with Kueue's label: labels %v, suspend %v", j.Labels, j.Spec.Suspend)
	}
	if j.Labels[kubejob.LabelRunID] != s.RunID || j.Spec.Template.Labels[kubejob.LabelModel] != "diabetes" {
		t.Errorf("labels %v, pod labels %v", j.Labels, j.Spec.Template.Labels)
	}
	if *j.Spec.ActiveDeadlineSeconds != 90 || *j.Spec.BackoffLimit != 1 {
		t.Errorf("deadline %d, backoff %d", *j.Spec.ActiveDeadlineSeconds, *j.Spec.BackoffLimit)
	}
	pod := j.Spec.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever || *pod.AutomountServiceAccountToken {
		t.Errorf("restart policy %s, token %v", pod.RestartPolicy, *pod.AutomountServiceAccountToken)
	}
	var names []string
	for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "fetch,train,put" {
		t.Fatalf("containers %v; want fetch, train (init), put", names)
	}
	fetch, tr, put := pod.InitContainers[0], pod.InitContainers[1], pod.Containers[0]
	if fetch.Image != s.ModelciImage || put.Image != s.ModelciImage || tr.Image != s.Image {
		t.Errorf("images %s %s %s", fetch.Image, tr.Image, put.Image)
	}
	if !strings.Contains(strings.Join(fetch.Args, " "), "fetch --ref "+s.Input) || !strings.Contains(strings.Join(put.Args, " "), "put --dir "+kubejob.OutputDir+" --to "+s.Output) {
		t.Errorf("fetch %v, put %v", fetch.Args, put.Args)
	}
	if q := tr.Resources.Limits[kubejob.ResourceGPU]; q.Value() != 2 {
		t.Errorf("GPU limit %v", q)
	}
	if pod.ImagePullSecrets[0].Name != "pull" || fetch.Env[0].Name != "DOCKER_CONFIG" || tr.Env[0].Name == "DOCKER_CONFIG" {
		t.Errorf("the registry Secret is fetch's and put's, not the trainer's: %v %v %v", pod.ImagePullSecrets, fetch.Env, tr.Env)
	}
	if *fetch.SecurityContext.RunAsNonRoot != true || *put.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("tool containers are restricted: %+v %+v", fetch.SecurityContext, put.SecurityContext)
	}
}

// The content hash names the Job: the same inputs under another run id
// are the same Job (adopted); other inputs another.
func TestJobNameIsContent(t *testing.T) {
	a, b := step(), step()
	b.RunID = "another"
	if a.JobName() != b.JobName() {
		t.Errorf("run id changed the name: %s %s", a.JobName(), b.JobName())
	}
	b.Input = strings.Replace(b.Input, "c", "d", 1)
	if a.JobName() == b.JobName() {
		t.Errorf("another input kept the name %s", a.JobName())
	}
	long := step()
	long.Model = strings.Repeat("m", 63)
	if n := long.JobName(); len(n) > 63 {
		t.Errorf("%q is %d characters", n, len(n))
	}
}

func TestJobRefusesIncompleteStep(t *testing.T) {
	s := step()
	s.Image, s.Command = "", nil
	_, err := kubejob.Job(s)
	if !errors.Is(err, kubejob.ErrInvalid) || !strings.Contains(err.Error(), "image is empty") || !strings.Contains(err.Error(), "command is empty") {
		t.Errorf("got %v", err)
	}
}

// Nothing but what the caller put in the step reaches the Job: no value of
// modelci's own environment.
func TestJobCarriesNoEnvironment(t *testing.T) {
	t.Setenv("MODELCI_REGISTRY_PASSWORD", "hunter2-registry")
	t.Setenv("MODELCI_KEY_PASSWORD", "hunter2-key")
	j, err := kubejob.Job(step())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	for _, secret := range []string{"hunter2-registry", "hunter2-key"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the Job carries %q", secret)
		}
	}
}
