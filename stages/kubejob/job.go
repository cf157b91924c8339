// Package kubejob runs one step of a model's pipeline (training, or an
// external evaluation) as a Kubernetes Job on the cluster that has the
// GPUs, under the scheduler and queues it already has: modelci submits a
// Job (or a Kubeflow Trainer TrainJob) and watches it; it never schedules.
//
// The Job's pod moves everything through a registry the cluster reaches,
// by digest:
//
//	init container fetch  modelci's CLI image: `modelci stage fetch` pulls the step's
//	                      input artifact (the project's staging copy, the data split)
//	                      into an emptyDir at InputDir
//	init container STEP   the trainer (or evaluator) image and command, under the
//	                      step's contract, exactly as a local run (env from the caller)
//	container put         modelci's CLI image: `modelci stage put` pushes OutputDir as
//	                      an artifact by digest and writes its reference to the
//	                      termination message, where Run reads it
//
// Building the objects is pure (Job, TrainJob); Run does the I/O.
package kubejob

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels modelci puts on its Jobs; the run id finds a killed run's Job, the
// content hash finds a Job of the same inputs to adopt.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "modelci"
	LabelModel     = "modelci.dev/model"
	LabelStep      = "modelci.dev/step"
	LabelRunID     = "modelci.dev/run-id"
	LabelContent   = "modelci.dev/content"
	// LabelQueue is Kueue's: the LocalQueue the Job waits in.
	LabelQueue = "kueue.x-k8s.io/queue-name"
)

// The pod's layout: one emptyDir holds the input and the output.
const (
	ContainerFetch = "fetch"
	ContainerPut   = "put"
	WorkVolume     = "modelci-work"
	WorkDir        = "/modelci"
	// InputDir holds the input artifact's parts (src, data, …).
	InputDir = WorkDir + "/in"
	// OutputDir is what the step writes and the put step pushes.
	OutputDir = WorkDir + "/out"
	// TmpDir is the step's HOME and TMPDIR.
	TmpDir = WorkDir + "/tmp"
	// SecretVolume and SecretDir hold the registry Secret's docker config
	// for fetch and put (DOCKER_CONFIG).
	SecretVolume = "modelci-registry"
	SecretDir    = "/modelci-registry"
)

// ResourceGPU is the GPU resource name of NVIDIA's device plugin.
const ResourceGPU corev1.ResourceName = "nvidia.com/gpu"

// ErrInvalid means a Step cannot make a Job; the error names the field.
var ErrInvalid = errors.New("invalid job step")

// Step is one step to run on the cluster.
type Step struct {
	// Name is the step (train, evaluate): the container's name and part of
	// the Job's.
	Name      string
	Model     string
	RunID     string
	Namespace string
	// Image and Command run the step; Env is its contract's environment
	// (no secrets: the caller passes names that CheckPassEnv allowed).
	Image      string
	Command    []string
	WorkingDir string
	Env        []corev1.EnvVar
	// ModelciImage runs fetch and put.
	ModelciImage string
	// Input is the input artifact, HOST/REPO@sha256:…; Output the
	// repository put pushes to.
	Input  string
	Output string
	// Insecure reaches the registry over plain HTTP from the pod.
	Insecure bool

	Resources      corev1.ResourceRequirements
	NodeSelector   map[string]string
	Tolerations    []corev1.Toleration
	ServiceAccount string
	// Queue is Kueue's LocalQueue: the Job is created suspended with its
	// label, for Kueue to admit.
	Queue string
	// RegistrySecret is a kubernetes.io/dockerconfigjson Secret: the pod's
	// image pull secret, and fetch's and put's credentials.
	RegistrySecret string
	// Timeout is the Job's activeDeadlineSeconds; 0: none.
	Timeout      time.Duration
	BackoffLimit int32

	// TrainJob: the Kubeflow Trainer ClusterTrainingRuntime and node count.
	RuntimeRef string
	NumNodes   int32
}

// check validates what every Job needs.
func (s Step) check() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"name", s.Name}, {"model", s.Model}, {"namespace", s.Namespace}, {"image", s.Image},
		{"modelci image", s.ModelciImage}, {"input", s.Input}, {"output", s.Output},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%w: %s is empty", ErrInvalid, f.name))
		}
	}
	if len(s.Command) == 0 {
		errs = append(errs, fmt.Errorf("%w: command is empty", ErrInvalid))
	}
	return errors.Join(errs...)
}

// JobName is the Job's name: the model, the step and the content hash, at
// most 63 characters (the job-name label's limit).
func (s Step) JobName() string {
	h := s.content()
	model := s.Model
	if max := 63 - len("modelci--") - len(s.Name) - 1 - len(h); len(model) > max {
		model = strings.TrimRight(model[:max], "-")
	}
	return "modelci-" + model + "-" + s.Name + "-" + h
}

// content hashes everything that decides what the Job computes (not the
// run id): a re-run of the same inputs finds the Job by it and adopts it.
func (s Step) content() string {
	c := s
	c.RunID = ""
	b, _ := json.Marshal(c) // plain data: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// labels are the Job's and its pods'.
func (s Step) labels() map[string]string {
	l := map[string]string{
		LabelManagedBy: ManagedBy,
		LabelModel:     s.Model,
		LabelStep:      s.Name,
		LabelContent:   s.content(),
	}
	if s.RunID != "" {
		l[LabelRunID] = s.RunID
	}
	if s.Queue != "" {
		l[LabelQueue] = s.Queue
	}
	return l
}

// Job is the batch/v1 Job of s.
func Job(s Step) (*batchv1.Job, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	pod, err := s.podSpec()
	if err != nil {
		return nil, err
	}
	backoff := s.BackoffLimit
	j := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: s.JobName(), Namespace: s.Namespace, Labels: s.labels()},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoff,
			// A Job a killed run left behind goes by itself.
			TTLSecondsAfterFinished: ptr(int32(3600)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: s.labels()},
				Spec:       pod,
			},
		},
	}
	if s.Timeout > 0 {
		j.Spec.ActiveDeadlineSeconds = ptr(int64((s.Timeout + time.Second - 1) / time.Second))
	}
	if s.Queue != "" {
		// Kueue admits a queued Job by unsuspending it.
		j.Spec.Suspend = ptr(true)
	}
	return j, nil
}

// podSpec is the pod: fetch, the step, put.
func (s Step) podSpec() (corev1.PodSpec, error) {
	work := corev1.VolumeMount{Name: WorkVolume, MountPath: WorkDir}
	// fetch runs as a user of its own and makes OutputDir and TmpDir
	// writable for the step, whichever user its image runs as.
	tool := func(name string, args ...string) corev1.Container {
		c := corev1.Container{
			Name:                     name,
			Image:                    s.ModelciImage,
			Args:                     append([]string{"stage"}, args...),
			VolumeMounts:             []corev1.VolumeMount{work},
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			SecurityContext:          restricted(),
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: mustQuantity("100m"), corev1.ResourceMemory: mustQuantity("64Mi")},
			},
		}
		if s.RegistrySecret != "" {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: SecretVolume, MountPath: SecretDir, ReadOnly: true})
			c.Env = []corev1.EnvVar{{Name: "DOCKER_CONFIG", Value: SecretDir}}
		}
		return c
	}
	insecure := func(args []string) []string {
		if s.Insecure {
			return append(args, "--insecure")
		}
		return args
	}
	env := append([]corev1.EnvVar{{Name: "HOME", Value: TmpDir}, {Name: "TMPDIR", Value: TmpDir}}, s.Env...)
	step := corev1.Container{
		Name:                     s.Name,
		Image:                    s.Image,
		Command:                  s.Command,
		WorkingDir:               s.WorkingDir,
		Env:                      env,
		VolumeMounts:             []corev1.VolumeMount{work},
		Resources:                s.Resources,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	// put reads what the step wrote, as whichever user the step's image
	// runs as: root, with only the capability to read.
	putter := tool(ContainerPut, insecure([]string{"put", "--dir", OutputDir, "--to", s.Output, "--termination-log", "/dev/termination-log"})...)
	putter.SecurityContext.RunAsNonRoot, putter.SecurityContext.RunAsUser = ptr(false), ptr(int64(0))
	putter.SecurityContext.Capabilities.Add = []corev1.Capability{"DAC_READ_SEARCH"}
	pod := corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{
			tool(ContainerFetch, insecure([]string{"fetch", "--ref", s.Input, "--dir", InputDir, "--writable", OutputDir, "--writable", TmpDir})...),
			step,
		},
		Containers:         []corev1.Container{putter},
		Volumes:            []corev1.Volume{{Name: WorkVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		NodeSelector:       s.NodeSelector,
		Tolerations:        s.Tolerations,
		ServiceAccountName: s.ServiceAccount,
		// The pod needs no API access: nothing of the cluster's reaches the trainer.
		AutomountServiceAccountToken: ptr(false),
	}
	if s.RegistrySecret != "" {
		pod.ImagePullSecrets = []corev1.LocalObjectReference{{Name: s.RegistrySecret}}
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: SecretVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: s.RegistrySecret,
			Items:      []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
		}}})
	}
	return pod, nil
}

// restricted is the tool containers' security context: modelci's own
// steps need no privilege.
func restricted() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr(false),
		RunAsNonRoot:             ptr(true),
		RunAsUser:                ptr(int64(65532)),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

func ptr[T any](v T) *T { return &v }
