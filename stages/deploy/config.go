package deploy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/modelci/modelci/internal/strictyaml"
)

// Strategies.
const (
	Rolling = "rolling"
	Canary  = "canary"
)

// Model sources: where the pods find the model.
const (
	// ModelFromImage runs the serving image, the model baked in under
	// /model.
	ModelFromImage = "image"
	// ModelFromVolume runs the runtime image and mounts the model's CNCF
	// ModelPack artifact at /model as a Kubernetes image volume, so that a
	// retrain changes only the volume's reference.
	ModelFromVolume = "volume"
)

// Service roles (the --role of `modelci serve`).
const (
	RolePredict    = "predict"
	RolePreprocess = "preprocess"
)

// Config is the deploy: section of modelci.yaml. It is stored with every release in the
// cluster's history, so that a rollback re-creates exactly what was running.
type Config struct {
	Enabled        bool              `yaml:"enabled" json:"enabled,omitempty"`
	Context        string            `yaml:"context" json:"context,omitempty"`
	Namespace      string            `yaml:"namespace" json:"namespace,omitempty"`
	Replicas       int32             `yaml:"replicas" json:"replicas"`
	Strategy       string            `yaml:"strategy" json:"strategy"`
	Steps          []int             `yaml:"steps" json:"steps,omitempty"`
	Services       []string          `yaml:"services" json:"services"`
	ServiceType    string            `yaml:"service_type" json:"service_type"`
	GPU            int64             `yaml:"gpu" json:"gpu,omitempty"`
	Resources      Resources         `yaml:"resources" json:"resources"`
	NodeSelector   map[string]string `yaml:"node_selector" json:"node_selector,omitempty"`
	Tolerations    []Toleration      `yaml:"tolerations" json:"tolerations,omitempty"`
	PodAnnotations map[string]string `yaml:"pod_annotations" json:"pod_annotations,omitempty"`
	PodLabels      map[string]string `yaml:"pod_labels" json:"pod_labels,omitempty"`
	// ModelSource is ModelFromImage (the default) or ModelFromVolume.
	ModelSource string         `yaml:"model_source" json:"model_source,omitempty"`
	HPA         HPA            `yaml:"hpa" json:"hpa"`
	PDB         PDB            `yaml:"pdb" json:"pdb"`
	Analysis    AnalysisConfig `yaml:"analysis" json:"analysis"`
	// ProgressDeadlineSeconds bounds each rollout (the Deployment's progressDeadlineSeconds).
	ProgressDeadlineSeconds int32 `yaml:"progress_deadline_seconds" json:"progress_deadline_seconds"`
	// Pause is the wait at each canary step before the analysis, e.g. "2m".
	Pause string `yaml:"pause" json:"pause,omitempty"`
}

// Resources are the container's requests and limits (Kubernetes quantities).
type Resources struct {
	CPU         string `yaml:"cpu" json:"cpu,omitempty"`
	Memory      string `yaml:"memory" json:"memory,omitempty"`
	CPULimit    string `yaml:"cpu_limit" json:"cpu_limit,omitempty"`
	MemoryLimit string `yaml:"memory_limit" json:"memory_limit,omitempty"`
}

// Toleration is a pod toleration (for GPU node taints, typically).
type Toleration struct {
	Key      string `yaml:"key" json:"key,omitempty"`
	Operator string `yaml:"operator" json:"operator,omitempty"`
	Value    string `yaml:"value" json:"value,omitempty"`
	Effect   string `yaml:"effect" json:"effect,omitempty"`
}

// HPA is an autoscaling/v2 HorizontalPodAutoscaler on CPU; zero Max means none.
type HPA struct {
	Min        int32 `yaml:"min" json:"min,omitempty"`
	Max        int32 `yaml:"max" json:"max,omitempty"`
	CPUPercent int32 `yaml:"cpu_percent" json:"cpu_percent,omitempty"`
}

// PDB is a PodDisruptionBudget; zero MinAvailable means none.
type PDB struct {
	MinAvailable int32 `yaml:"min_available" json:"min_available,omitempty"`
}

// AnalysisConfig configures the analysis between canary steps. Without Prometheus, the
// analysis checks that canary pods are Ready and not restarting.
type AnalysisConfig struct {
	Prometheus      PrometheusConfig `yaml:"prometheus" json:"prometheus"`
	MaxErrorRate    float64          `yaml:"max_error_rate" json:"max_error_rate,omitempty"`
	MaxLatencyP99Ms float64          `yaml:"max_latency_p99_ms" json:"max_latency_p99_ms,omitempty"`
	// MaxPredictionShift is modelgate.CanaryPolicy's: the model-quality check on the
	// prediction distribution; 0 means none.
	MaxPredictionShift float64 `yaml:"max_prediction_shift" json:"max_prediction_shift,omitempty"`
}

// PrometheusConfig says where the canary's and stable's traffic metrics are.
type PrometheusConfig struct {
	URL string `yaml:"url" json:"url,omitempty"`
	// CanarySelector and StableSelector are PromQL label matchers, such as
	// `track="canary"`, that pick each version's series.
	CanarySelector string `yaml:"canary_selector" json:"canary_selector,omitempty"`
	StableSelector string `yaml:"stable_selector" json:"stable_selector,omitempty"`
	// Window is the range of the rate queries, e.g. "1m".
	Window string `yaml:"window" json:"window,omitempty"`
}

// Defaults are the values an empty deploy: section means.
func Defaults() Config {
	return Config{
		Namespace:               "models",
		Replicas:                3,
		Strategy:                Rolling,
		Steps:                   []int{10, 50, 100},
		Services:                []string{RolePredict},
		ServiceType:             "ClusterIP",
		Resources:               Resources{CPU: "100m", Memory: "128Mi", MemoryLimit: "512Mi"},
		ProgressDeadlineSeconds: 300,
		ModelSource:             ModelFromImage,
	}
}

// Volume says whether the model comes from an image volume.
func (c Config) Volume() bool { return c.ModelSource == ModelFromVolume }

// DecodeConfig decodes a deploy: section strictly onto Defaults and validates it. file and the
// node's position name the input in errors.
func DecodeConfig(file string, n *yaml.Node) (Config, error) {
	c := Defaults()
	if n == nil || n.Kind == 0 {
		return c, nil
	}
	var raw Config
	if err := strictyaml.DecodeNodeAt(file, "deploy", n, &raw); err != nil {
		return Config{}, err
	}
	c = merge(c, raw)
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: deploy: %w", file, err)
	}
	return c, nil
}

// merge takes every set field of over onto base.
func merge(base, over Config) Config {
	out := over
	if out.Namespace == "" {
		out.Namespace = base.Namespace
	}
	if out.Replicas == 0 {
		out.Replicas = base.Replicas
	}
	if out.Strategy == "" {
		out.Strategy = base.Strategy
	}
	if out.Steps == nil {
		out.Steps = base.Steps
	}
	if out.Services == nil {
		out.Services = base.Services
	}
	if out.ServiceType == "" {
		out.ServiceType = base.ServiceType
	}
	if out.Resources == (Resources{}) {
		out.Resources = base.Resources
	}
	if out.ProgressDeadlineSeconds == 0 {
		out.ProgressDeadlineSeconds = base.ProgressDeadlineSeconds
	}
	if out.ModelSource == "" {
		out.ModelSource = base.ModelSource
	}
	return out
}

// Validate reports every problem of c, each wrapping ErrInvalidConfig or ErrInvalidSteps.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w", key, fmt.Sprintf(format, args...), ErrInvalidConfig))
	}
	if c.Namespace != "" {
		if msgs := validation.IsDNS1123Label(c.Namespace); len(msgs) > 0 {
			bad("namespace", "%q: %s", c.Namespace, strings.Join(msgs, "; "))
		}
	}
	if c.Replicas < 1 {
		bad("replicas", "%d: want at least 1", c.Replicas)
	}
	if c.Strategy != Rolling && c.Strategy != Canary {
		bad("strategy", "%q: want rolling or canary", c.Strategy)
	}
	// Empty is the default (a history entry recorded before the key was).
	if c.ModelSource != "" && c.ModelSource != ModelFromImage && c.ModelSource != ModelFromVolume {
		bad("model_source", "%q: want image or volume", c.ModelSource)
	}
	if err := ValidateSteps(c.Steps); err != nil {
		errs = append(errs, fmt.Errorf("steps: %w", err))
	}
	if len(c.Services) == 0 {
		bad("services", "empty: want predict and/or preprocess")
	}
	seen := map[string]bool{}
	for i, s := range c.Services {
		if s != RolePredict && s != RolePreprocess || seen[s] {
			bad(fmt.Sprintf("services[%d]", i), "%q: want predict or preprocess, each once", s)
		}
		seen[s] = true
	}
	if !slices.Contains([]string{"ClusterIP", "NodePort", "LoadBalancer"}, c.ServiceType) {
		bad("service_type", "%q: want ClusterIP, NodePort or LoadBalancer", c.ServiceType)
	}
	if c.GPU < 0 {
		bad("gpu", "%d: want 0 or more", c.GPU)
	}
	for key, q := range map[string]string{"resources.cpu": c.Resources.CPU, "resources.memory": c.Resources.Memory, "resources.cpu_limit": c.Resources.CPULimit, "resources.memory_limit": c.Resources.MemoryLimit} {
		if q == "" {
			continue
		}
		if _, err := resource.ParseQuantity(q); err != nil {
			bad(key, "%q is not a quantity", q)
		}
	}
	if c.HPA.Max > 0 && (c.HPA.Min < 1 || c.HPA.Min > c.HPA.Max || c.HPA.CPUPercent < 1) {
		bad("hpa", "min %d, max %d, cpu_percent %d: want 1 ≤ min ≤ max and cpu_percent ≥ 1", c.HPA.Min, c.HPA.Max, c.HPA.CPUPercent)
	}
	if c.PDB.MinAvailable < 0 || c.PDB.MinAvailable > c.Replicas {
		bad("pdb.min_available", "%d: want 0 to replicas (%d)", c.PDB.MinAvailable, c.Replicas)
	}
	if c.ProgressDeadlineSeconds < 1 {
		bad("progress_deadline_seconds", "%d: want at least 1", c.ProgressDeadlineSeconds)
	}
	if _, err := c.pause(); err != nil {
		bad("pause", "%q: %v", c.Pause, err)
	}
	for k := range c.PodLabels {
		if strings.HasPrefix(k, "app.kubernetes.io/") || strings.HasPrefix(k, "modelci.dev/") {
			bad("pod_labels", "%q: the app.kubernetes.io/ and modelci.dev/ labels are modelci's", k)
		}
	}
	return errors.Join(errs...)
}

func (c Config) pause() (time.Duration, error) {
	if c.Pause == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.Pause)
	if err == nil && d < 0 {
		err = errors.New("negative")
	}
	return d, err
}

// ParseSteps parses a comma-separated list of canary percentages, such as "10,50,100".
func ParseSteps(s string) ([]int, error) {
	var steps []int
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("steps %q: %q is not a whole percentage: %w", s, f, ErrInvalidSteps)
		}
		steps = append(steps, p)
	}
	if err := ValidateSteps(steps); err != nil {
		return nil, fmt.Errorf("steps %q: %w", s, err)
	}
	return steps, nil
}

// ValidateSteps checks that steps are strictly increasing percentages in 1..100 ending at 100.
func ValidateSteps(steps []int) error {
	if len(steps) == 0 {
		return fmt.Errorf("no steps: %w", ErrInvalidSteps)
	}
	for i, p := range steps {
		if p < 1 || p > 100 {
			return fmt.Errorf("step %d%%: want 1 to 100: %w", p, ErrInvalidSteps)
		}
		if i > 0 && p <= steps[i-1] {
			return fmt.Errorf("step %d%% after %d%%: want increasing steps: %w", p, steps[i-1], ErrInvalidSteps)
		}
	}
	if steps[len(steps)-1] != 100 {
		return fmt.Errorf("last step %d%%: want 100: %w", steps[len(steps)-1], ErrInvalidSteps)
	}
	return nil
}
