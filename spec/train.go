package spec

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/oci"
)

// Runners of train.runner.
const (
	RunnerLocal      = "local"
	RunnerKubernetes = "kubernetes"
)

// Kinds of train.kubernetes.kind.
const (
	KindJob      = "Job"
	KindTrainJob = "TrainJob"
)

// DefaultTrainNamespace is train.kubernetes.namespace's default.
const DefaultTrainNamespace = "default"

// TrainKubernetes is train.kubernetes: where and how training runs as a
// Kubernetes Job (train.runner: kubernetes). modelci submits to the
// cluster's scheduler and queues; it schedules nothing itself.
type TrainKubernetes struct {
	// Context is the kubeconfig context, named explicitly: never the
	// current one (`modelci run --context` over it).
	Context   string `yaml:"context" json:"context,omitempty"`
	Namespace string `yaml:"namespace" json:"namespace,omitempty"`
	// Image is the trainer image (default train.image); the built-in
	// trainer runs in modelci's own CLI image.
	Image string `yaml:"image" json:"image,omitempty"`
	// GPU is the count of nvidia.com/gpu; 1 when train.gpu and unset.
	GPU            *int64              `yaml:"gpu" json:"gpu,omitempty"`
	Resources      deploy.Resources    `yaml:"resources" json:"resources"`
	NodeSelector   map[string]string   `yaml:"node_selector" json:"node_selector,omitempty"`
	Tolerations    []deploy.Toleration `yaml:"tolerations" json:"tolerations,omitempty"`
	ServiceAccount string              `yaml:"service_account" json:"service_account,omitempty"`
	// Queue is Kueue's LocalQueue: the Job carries the
	// kueue.x-k8s.io/queue-name label and is created suspended for Kueue
	// to admit.
	Queue string `yaml:"queue" json:"queue,omitempty"`
	// Kind is Job (the default) or TrainJob (Kubeflow Trainer
	// trainer.kubeflow.org/v1alpha1, with RuntimeRef and NumNodes).
	Kind       string `yaml:"kind" json:"kind,omitempty"`
	RuntimeRef string `yaml:"runtime_ref" json:"runtime_ref,omitempty"`
	NumNodes   int32  `yaml:"num_nodes" json:"num_nodes,omitempty"`
	// Timeout bounds the Job (its activeDeadlineSeconds); default
	// train.timeout.
	Timeout string `yaml:"timeout" json:"timeout,omitempty"`
	// BackoffLimit is the Job's retries; default 0 (a trainer that failed
	// once fails again on the same inputs).
	BackoffLimit *int32 `yaml:"backoff_limit" json:"backoff_limit,omitempty"`
	// Repository is where the training's artifacts go (its input, its
	// output, modelci's CLI image), reachable from the cluster; default
	// image.repository.
	Repository string `yaml:"repository" json:"repository,omitempty"`
	// RegistrySecret names a kubernetes.io/dockerconfigjson Secret in the
	// namespace: mounted for the steps that pull and push the artifacts,
	// and used as the pods' image pull secret. Credentials never go into
	// the Job's arguments or environment.
	RegistrySecret string `yaml:"registry_secret" json:"registry_secret,omitempty"`
	// ModelciImage is modelci's CLI image for those steps; default: built
	// from modelci's source (like the runtime) and pushed to Repository.
	ModelciImage string `yaml:"modelci_image" json:"modelci_image,omitempty"`
}

var (
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelValue       = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

// ErrNoTrainContext means train.runner is kubernetes and no context is
// named: modelci never trains on whatever cluster is current.
var ErrNoTrainContext = errors.New("no kubeconfig context named for training")

// OnCluster says whether training runs as a Kubernetes Job.
func (t TrainSpec) OnCluster() bool { return t.Runner == RunnerKubernetes }

// ClusterTimeout is train.kubernetes.timeout, else train.timeout; 0: none.
func (t TrainSpec) ClusterTimeout() time.Duration {
	if d := duration(t.Kubernetes.Timeout); d > 0 {
		return d
	}
	return t.TimeoutDuration()
}

// ClusterGPU is the Job's nvidia.com/gpu count.
func (t TrainSpec) ClusterGPU() int64 {
	if t.Kubernetes.GPU != nil {
		return *t.Kubernetes.GPU
	}
	if t.GPU {
		return 1
	}
	return 0
}

// ClusterImage is the trainer image of a Job: train.kubernetes.image,
// else train.image; empty for the built-in trainer without one.
func (t TrainSpec) ClusterImage() string {
	if t.Kubernetes.Image != "" {
		return t.Kubernetes.Image
	}
	return t.Image
}

// TrainRepository is where a Job's artifacts go.
func (s *Spec) TrainRepository() string {
	if s.Train.Kubernetes.Repository != "" {
		return s.Train.Kubernetes.Repository
	}
	return s.Image.Repository
}

// OverrideRunner applies `modelci run --runner R --context C` over the
// spec (flags over the file; empty leaves the spec's) and checks the
// result as Load does.
func (s *Spec) OverrideRunner(runner, context string) error {
	if runner != "" {
		s.Train.Runner = runner
	}
	if context != "" {
		s.Train.Kubernetes.Context = context
	}
	s.defaultTrainKubernetes()
	return errors.Join(s.validateRunner(true)...)
}

func (s *Spec) defaultTrainKubernetes() {
	if s.Train.Runner == "" {
		s.Train.Runner = RunnerLocal
	}
	k := &s.Train.Kubernetes
	if k.Namespace == "" {
		k.Namespace = DefaultTrainNamespace
	}
	if k.Kind == "" {
		k.Kind = KindJob
	}
}

// validateRunner checks train.runner and train.kubernetes. final is false
// when the spec loads (flags may still name the context) and true once
// the flags are applied.
func (s *Spec) validateRunner(final bool) []error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w: %s", s.File, key, ErrSpec, fmt.Sprintf(format, args...)))
	}
	t, k := s.Train, s.Train.Kubernetes
	switch t.Runner {
	case RunnerLocal:
		if t.GPU {
			errs = append(errs, fmt.Errorf("%s: train.gpu: %w on a bare machine: train on a cluster (train.runner: kubernetes) or with the Dagger module", s.File, ErrNotSupported))
		}
		return errs
	case RunnerKubernetes:
	default:
		bad("train.runner", "%q: want %s or %s", t.Runner, RunnerLocal, RunnerKubernetes)
		return errs
	}
	if final && k.Context == "" {
		errs = append(errs, fmt.Errorf("%s: train.kubernetes.context: %w: name it in the spec or with --context", s.File, ErrNoTrainContext))
	}
	if t.Workdir != "" {
		bad("train.workdir", "runs a command in place on this machine; train.runner kubernetes ships a staging copy of the project")
	}
	if len(t.Command) > 0 && t.ClusterImage() == "" {
		bad("train.kubernetes.image", "an external trainer on a cluster needs its image (train.kubernetes.image or train.image)")
	}
	repo := s.TrainRepository()
	switch {
	case repo == "":
		bad("train.kubernetes.repository", "training on a cluster moves data and models through a registry the cluster reaches: set it or image.repository")
	case k.Repository != "":
		if err := oci.CheckRepository(k.Repository); err != nil {
			bad("train.kubernetes.repository", "%v", err)
		}
	}
	if !dns1123Label.MatchString(k.Namespace) {
		bad("train.kubernetes.namespace", "%q is not a DNS-1123 label", k.Namespace)
	}
	if k.GPU != nil && *k.GPU < 0 {
		bad("train.kubernetes.gpu", "%d: want 0 or more", *k.GPU)
	}
	if k.BackoffLimit != nil && *k.BackoffLimit < 0 {
		bad("train.kubernetes.backoff_limit", "%d: want 0 or more", *k.BackoffLimit)
	}
	if _, err := deploy.Requirements(k.Resources, 0); err != nil {
		bad("train.kubernetes.resources", "%v", err)
	}
	errs = append(errs, s.checkDuration("train.kubernetes.timeout", k.Timeout)...)
	switch k.Kind {
	case KindJob:
		if k.RuntimeRef != "" || k.NumNodes != 0 {
			bad("train.kubernetes.kind", "runtime_ref and num_nodes are a TrainJob's (kind: %s)", KindTrainJob)
		}
	case KindTrainJob:
		if k.RuntimeRef == "" {
			bad("train.kubernetes.runtime_ref", "a TrainJob needs the ClusterTrainingRuntime it runs under")
		}
		if k.NumNodes < 0 {
			bad("train.kubernetes.num_nodes", "%d: want 1 or more", k.NumNodes)
		}
	default:
		bad("train.kubernetes.kind", "%q: want %s or %s", k.Kind, KindJob, KindTrainJob)
	}
	for _, r := range []struct{ key, v string }{{"train.kubernetes.service_account", k.ServiceAccount}, {"train.kubernetes.registry_secret", k.RegistrySecret}, {"train.kubernetes.runtime_ref", k.RuntimeRef}} {
		if r.v != "" && (len(r.v) > 253 || !dns1123Subdomain.MatchString(r.v)) {
			bad(r.key, "%q is not a DNS-1123 subdomain", r.v)
		}
	}
	if k.Queue != "" && (len(k.Queue) > 63 || !labelValue.MatchString(k.Queue)) {
		bad("train.kubernetes.queue", "%q is not a label value (Kueue's LocalQueue name)", k.Queue)
	}
	return errs
}
