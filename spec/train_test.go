package spec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelci/modelci/spec"
)

const clusterSpec = validSpec + `train:
  runner: kubernetes
  gpu: true
  kubernetes:
    context: gpu-cluster
    namespace: ml
    repository: 10.0.0.1:5000/ml/training
    queue: team-a
    resources: {memory: 2Gi, memory_limit: 4Gi}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    timeout: 30m
`

func TestTrainKubernetes(t *testing.T) {
	s, err := spec.Parse("modelci.yaml", "/proj", []byte(clusterSpec))
	if err != nil {
		t.Fatal(err)
	}
	k := s.Train.Kubernetes
	if !s.Train.OnCluster() || k.Kind != spec.KindJob || k.Namespace != "ml" || s.Train.ClusterGPU() != 1 || s.Train.ClusterTimeout().Minutes() != 30 {
		t.Errorf("got %+v", k)
	}
	if s.TrainRepository() != "10.0.0.1:5000/ml/training" {
		t.Errorf("repository %q", s.TrainRepository())
	}
	// The default runner is this machine, and train.gpu there is refused.
	local, err := spec.Parse("modelci.yaml", "/proj", []byte(validSpec))
	if err != nil || local.Train.Runner != spec.RunnerLocal || local.Train.Kubernetes.Namespace != spec.DefaultTrainNamespace {
		t.Fatalf("%+v %v", local.Train, err)
	}
	_, err = spec.Parse("modelci.yaml", "/proj", []byte(validSpec+"train:\n  gpu: true\n"))
	if !errors.Is(err, spec.ErrNotSupported) || !strings.Contains(err.Error(), "train.runner: kubernetes") {
		t.Errorf("gpu on a bare machine: %v", err)
	}
}

func TestTrainKubernetesErrors(t *testing.T) {
	for _, tc := range []struct{ name, edit, want string }{
		{"runner", "runner: kubernetes\n  gpu: true", "train.runner: invalid spec: \"cluster\""},
		{"no repository", "repository: 10.0.0.1:5000/ml/training\n", "train.kubernetes.repository: invalid spec: training on a cluster moves data"},
		{"kind", "queue: team-a", "train.kubernetes.kind: invalid spec: \"CronJob\""},
		{"trainjob without runtime", "queue: team-a", "train.kubernetes.runtime_ref: invalid spec: a TrainJob needs"},
		{"runtime_ref on a Job", "queue: team-a", "runtime_ref and num_nodes are a TrainJob's"},
		{"queue", "queue: team-a", "train.kubernetes.queue: invalid spec: \"team a!\""},
		{"timeout", "timeout: 30m", "train.kubernetes.timeout: invalid spec: \"soon\""},
		{"resources", "resources: {memory: 2Gi, memory_limit: 4Gi}", "train.kubernetes.resources: invalid spec"},
		{"namespace", "namespace: ml", "train.kubernetes.namespace: invalid spec: \"ML\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := clusterSpec
			switch tc.name {
			case "runner":
				src = strings.Replace(src, tc.edit, "runner: cluster\n  gpu: true", 1)
			case "no repository":
				src = strings.Replace(src, "    "+tc.edit, "", 1)
			case "kind":
				src = strings.Replace(src, tc.edit, "queue: team-a\n    kind: CronJob", 1)
			case "trainjob without runtime":
				src = strings.Replace(src, tc.edit, "queue: team-a\n    kind: TrainJob", 1)
			case "runtime_ref on a Job":
				src = strings.Replace(src, tc.edit, "queue: team-a\n    runtime_ref: torch-distributed", 1)
			case "queue":
				src = strings.Replace(src, tc.edit, "queue: team a!", 1)
			case "timeout":
				src = strings.Replace(src, tc.edit, "timeout: soon", 1)
			case "resources":
				src = strings.Replace(src, tc.edit, "resources: {memory: lots}", 1)
			case "namespace":
				src = strings.Replace(src, tc.edit, "namespace: ML", 1)
			}
			_, err := spec.Parse("modelci.yaml", "/proj", []byte(src))
			if !errors.Is(err, spec.ErrSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

// Flags over the spec: --runner kubernetes needs a context, from the spec
// or --context, never the current one.
func TestOverrideRunner(t *testing.T) {
	src := strings.Replace(clusterSpec, "    context: gpu-cluster\n", "", 1)
	s, err := spec.Parse("modelci.yaml", "/proj", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.OverrideRunner("", ""); !errors.Is(err, spec.ErrNoTrainContext) {
		t.Errorf("no context: %v", err)
	}
	if err := s.OverrideRunner("", "lab"); err != nil || s.Train.Kubernetes.Context != "lab" {
		t.Errorf("--context lab: %v, %q", err, s.Train.Kubernetes.Context)
	}
	local, err := spec.Parse("modelci.yaml", "/proj", []byte(validSpec))
	if err != nil {
		t.Fatal(err)
	}
	err = local.OverrideRunner(spec.RunnerKubernetes, "lab")
	if !errors.Is(err, spec.ErrSpec) || !strings.Contains(err.Error(), "train.kubernetes.repository") {
		t.Errorf("--runner kubernetes without a repository: %v", err)
	}
	if err := local.OverrideRunner("elsewhere", ""); !errors.Is(err, spec.ErrSpec) {
		t.Errorf("--runner elsewhere: %v", err)
	}
}
