package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/modelci/modelci/stages/oci"
)

// Labels and annotations modelci sets.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelVersion   = "app.kubernetes.io/version"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelTrack is stable or canary; it is part of each Deployment's selector and not of the
	// Service's, so that both tracks serve behind one Service.
	LabelTrack = "modelci.dev/track"
	// AnnotationVersion carries the model version unabridged (a label value cannot hold "+").
	AnnotationVersion = "modelci.dev/version"

	ManagedBy   = "modelci"
	TrackStable = "stable"
	TrackCanary = "canary"

	// Port is the serving port of `modelci serve` in the image.
	Port = 8080
	// PreStopSeconds is how long a terminating pod keeps serving before it is sent SIGTERM:
	// the Service's endpoints drop it asynchronously (kube-proxy, ingresses and clients that
	// follow EndpointSlices see the change a moment later), and requests sent in that moment
	// must still be answered. The server then drains in-flight requests on SIGTERM.
	PreStopSeconds = 5
	// TerminationGraceSeconds covers the pre-stop wait and the server's drain (25 s by default).
	TerminationGraceSeconds = PreStopSeconds + 30
	// User is the image's non-root user.
	User = 65532
	// ResourceGPU is the extended resource GPUs are requested by.
	ResourceGPU = corev1.ResourceName("nvidia.com/gpu")

	// ModelVolume is the image volume holding the model's ModelPack
	// artifact (model_source: volume), mounted read-only at ModelMountPath:
	// the artifact's ModelSubPath directory, where its layers hold the
	// model (they are the serving image's /model layers), is what the
	// runtime finds at /model.
	ModelVolume    = "model"
	ModelMountPath = "/model"
	ModelSubPath   = "model"
)

// Release is one version of an app: what is deployed, and by whom.
type Release struct {
	// Name is the app's name (a DNS-1123 label): the Deployment, Service and history names.
	Name    string `json:"name"`
	Version string `json:"version"`
	// Image is a registry reference by digest (HOST/REPO@sha256:…): the
	// serving image, or with Model the runtime image.
	Image string `json:"image"`
	// Model is the model's ModelPack artifact by digest when it is mounted
	// as an image volume (model_source: volume); empty when Image holds it.
	Model string `json:"model,omitempty"`
	// Verdict is what verification said of the image (the gate verdict), or UNVERIFIED.
	Verdict string `json:"verdict,omitempty"`
	RunID   string `json:"run_id,omitempty"`
	Who     string `json:"who,omitempty"`
}

// CheckImage accepts only a registry reference by digest: a tag can move under a running
// Deployment and an oci-layout:// reference cannot be pulled by a cluster.
func CheckImage(ref string) error {
	r, err := oci.ParseRef(ref)
	if err != nil {
		return fmt.Errorf("image %q: %w: %w", ref, ErrNotDigest, err)
	}
	if err := r.RequireRegistry(); err != nil {
		return fmt.Errorf("image %q cannot be deployed: %w: push it to a registry first", ref, ErrLayoutRef)
	}
	if err := r.RequireDigest(); err != nil {
		return fmt.Errorf("image %q: %w: deploy HOST/REPO@sha256:… (modelci run prints it)", ref, ErrNotDigest)
	}
	return nil
}

func (r Release) check() error {
	if msgs := validation.IsDNS1123Label(r.Name); len(msgs) > 0 {
		return fmt.Errorf("app name %q: %s: %w", r.Name, strings.Join(msgs, "; "), ErrInvalidConfig)
	}
	if len(r.Name) > 40 {
		// Room for the "-preprocess-canary" suffix within a 63-character label.
		return fmt.Errorf("app name %q: longer than 40 characters: %w", r.Name, ErrInvalidConfig)
	}
	if r.Version == "" {
		return fmt.Errorf("app %s: empty version: %w", r.Name, ErrInvalidConfig)
	}
	if r.Model != "" {
		if err := CheckImage(r.Model); err != nil {
			return fmt.Errorf("model artifact: %w", err)
		}
	}
	return CheckImage(r.Image)
}

// checkSource checks that rel fits cfg's model_source: a model artifact
// with volume, none with image.
func checkSource(cfg Config, rel Release) error {
	switch {
	case cfg.Volume() && rel.Model == "":
		return fmt.Errorf("app %s: model_source volume: %w: no model artifact to mount (deploy its ModelPack artifact, HOST/REPO@sha256:…)", rel.Name, ErrInvalidConfig)
	case !cfg.Volume() && rel.Model != "":
		return fmt.Errorf("app %s: model artifact %s given under model_source image: %w", rel.Name, rel.Model, ErrInvalidConfig)
	}
	return nil
}

// WorkloadName is the Deployment (and Service) name of role: the app's name for predict, and
// NAME-preprocess for preprocess.
func WorkloadName(app, role string) string {
	if role == RolePredict {
		return app
	}
	return app + "-" + role
}

// CanaryName is the canary Deployment's name for a workload.
func CanaryName(workload string) string { return workload + "-canary" }

// Manifests are the objects of one release.
type Manifests struct {
	Deployments []*appsv1.Deployment
	Services    []*corev1.Service
	HPAs        []*autoscalingv2.HorizontalPodAutoscaler
	PDBs        []*policyv1.PodDisruptionBudget
}

// Objects returns the manifests in apply order: Services first (so that a Service exists before
// its pods), then Deployments, PodDisruptionBudgets and HorizontalPodAutoscalers.
func (m *Manifests) Objects() []runtime.Object {
	var objs []runtime.Object
	for _, o := range m.Services {
		objs = append(objs, o)
	}
	for _, o := range m.Deployments {
		objs = append(objs, o)
	}
	for _, o := range m.PDBs {
		objs = append(objs, o)
	}
	for _, o := range m.HPAs {
		objs = append(objs, o)
	}
	return objs
}

// Render returns the objects of rel deployed with cfg in namespace ns.
func Render(cfg Config, rel Release, ns string) (*Manifests, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := rel.check(); err != nil {
		return nil, err
	}
	if err := checkSource(cfg, rel); err != nil {
		return nil, err
	}
	m := &Manifests{}
	for _, role := range cfg.Services {
		d, err := renderDeployment(cfg, rel, ns, role, TrackStable, cfg.Replicas)
		if err != nil {
			return nil, err
		}
		m.Deployments = append(m.Deployments, d)
		m.Services = append(m.Services, renderService(cfg, rel, ns, role))
		if cfg.PDB.MinAvailable > 0 {
			m.PDBs = append(m.PDBs, renderPDB(cfg, rel, ns, role))
		}
		if cfg.HPA.Max > 0 {
			m.HPAs = append(m.HPAs, renderHPA(cfg, rel, ns, role))
		}
	}
	return m, nil
}

// labelVersion makes a version a valid label value: "+" as "_" (as in image tags), cut to 63.
func labelVersion(v string) string {
	v = strings.ReplaceAll(v, "+", "_")
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-_.")
}

// selector picks a workload's pods of both tracks (the Service's selector).
func selector(app, role string) map[string]string {
	return map[string]string{LabelName: app, LabelComponent: role}
}

func objectLabels(rel Release, role string) map[string]string {
	return map[string]string{
		LabelName:      rel.Name,
		LabelInstance:  WorkloadName(rel.Name, role),
		LabelComponent: role,
		LabelVersion:   labelVersion(rel.Version),
		LabelManagedBy: ManagedBy,
	}
}

func renderDeployment(cfg Config, rel Release, ns, role, track string, replicas int32) (*appsv1.Deployment, error) {
	name := WorkloadName(rel.Name, role)
	if track == TrackCanary {
		name = CanaryName(name)
	}
	sel := selector(rel.Name, role)
	sel[LabelTrack] = track
	podLabels := maps.Clone(cfg.PodLabels)
	if podLabels == nil {
		podLabels = map[string]string{}
	}
	maps.Copy(podLabels, objectLabels(rel, role))
	podLabels[LabelTrack] = track
	podAnn := map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   fmt.Sprint(Port),
		"prometheus.io/path":   "/metrics",
		AnnotationVersion:      rel.Version,
	}
	maps.Copy(podAnn, cfg.PodAnnotations)
	res, err := resources(cfg)
	if err != nil {
		return nil, err
	}
	var args []string
	if len(cfg.Services) > 1 {
		args = []string{"--role", role}
	}
	tolerations := CoreTolerations(cfg.Tolerations)
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
			PeriodSeconds:    period,
			FailureThreshold: 3,
		}
	}
	labels := objectLabels(rel, role)
	labels[LabelTrack] = track
	d := &appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   ns,
			Labels:      labels,
			Annotations: map[string]string{AnnotationVersion: rel.Version},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:                ptr(replicas),
			RevisionHistoryLimit:    ptr(int32(10)),
			ProgressDeadlineSeconds: ptr(cfg.ProgressDeadlineSeconds),
			Selector:                &metav1.LabelSelector{MatchLabels: sel},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				// Never below the desired count: the old pods stay until new ones are Ready.
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr(intstr.FromInt32(0)),
					MaxSurge:       ptr(intstr.FromString("25%")),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnn},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  ptr(false),
					TerminationGracePeriodSeconds: ptr(int64(TerminationGraceSeconds)),
					NodeSelector:                  cfg.NodeSelector,
					Tolerations:                   tolerations,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr(true),
						RunAsUser:      ptr(int64(User)),
						RunAsGroup:     ptr(int64(User)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:           "model",
						Image:          rel.Image,
						Args:           args,
						Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: Port, Protocol: corev1.ProtocolTCP}},
						ReadinessProbe: probe("/readyz", 5),
						LivenessProbe:  probe("/healthz", 10),
						// The sleep action needs no shell or sleep binary in the image.
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: PreStopSeconds}}},
						Resources: res,
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false),
							ReadOnlyRootFilesystem:   ptr(true),
							RunAsNonRoot:             ptr(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
					}},
					// A writable /tmp under the read-only root filesystem.
					Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
	setModelVolume(&d.Spec.Template.Spec, rel.Model)
	return d, nil
}

// setModelVolume mounts the ModelPack artifact model (by digest) at
// ModelMountPath of the model container as an image volume (KEP-4639),
// read-only, replacing any model volume there; an empty model removes it.
func setModelVolume(s *corev1.PodSpec, model string) {
	s.Volumes = slices.DeleteFunc(s.Volumes, func(v corev1.Volume) bool { return v.Name == ModelVolume })
	for i := range s.Containers {
		c := &s.Containers[i]
		if c.Name != ContainerName {
			continue
		}
		c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == ModelVolume })
		if model != "" {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: ModelVolume, MountPath: ModelMountPath, SubPath: ModelSubPath, ReadOnly: true})
		}
	}
	if model != "" {
		s.Volumes = append(s.Volumes, corev1.Volume{Name: ModelVolume, VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: model, PullPolicy: corev1.PullIfNotPresent},
		}})
	}
}

// modelVolume is the reference of the model's image volume in a pod spec,
// empty when the model is in the image.
func modelVolume(s corev1.PodSpec) string {
	for _, v := range s.Volumes {
		if v.Name == ModelVolume && v.Image != nil {
			return v.Image.Reference
		}
	}
	return ""
}

func resources(cfg Config) (corev1.ResourceRequirements, error) {
	return Requirements(cfg.Resources, cfg.GPU)
}

// Requirements are a container's requests and limits: res, and gpu
// nvidia.com/gpu as a limit. A value that is not a quantity is
// ErrInvalidConfig naming it.
func Requirements(res Resources, gpu int64) (corev1.ResourceRequirements, error) {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		list corev1.ResourceList
		name corev1.ResourceName
		val  string
	}{
		{r.Requests, corev1.ResourceCPU, res.CPU},
		{r.Requests, corev1.ResourceMemory, res.Memory},
		{r.Limits, corev1.ResourceCPU, res.CPULimit},
		{r.Limits, corev1.ResourceMemory, res.MemoryLimit},
	} {
		if q.val == "" {
			continue
		}
		v, err := resource.ParseQuantity(q.val)
		if err != nil {
			return r, fmt.Errorf("resource %s %q: %w", q.name, q.val, ErrInvalidConfig)
		}
		q.list[q.name] = v
	}
	if gpu > 0 {
		// Extended resources are limits only; the request defaults to the limit.
		r.Limits[ResourceGPU] = *resource.NewQuantity(gpu, resource.DecimalSI)
	}
	if len(r.Requests) == 0 {
		r.Requests = nil
	}
	if len(r.Limits) == 0 {
		r.Limits = nil
	}
	return r, nil
}

// CoreTolerations are ts as Kubernetes' type.
func CoreTolerations(ts []Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range ts {
		out = append(out, corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	return out
}

func renderService(cfg Config, rel Release, ns, role string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: WorkloadName(rel.Name, role), Namespace: ns, Labels: objectLabels(rel, role)},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceType(cfg.ServiceType),
			Selector: selector(rel.Name, role),
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}},
		},
	}
}

func renderPDB(cfg Config, rel Release, ns, role string) *policyv1.PodDisruptionBudget {
	sel := selector(rel.Name, role)
	sel[LabelTrack] = TrackStable
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: metav1.ObjectMeta{Name: WorkloadName(rel.Name, role), Namespace: ns, Labels: objectLabels(rel, role)},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr(intstr.FromInt32(cfg.PDB.MinAvailable)),
			Selector:     &metav1.LabelSelector{MatchLabels: sel},
		},
	}
}

// renderHPA targets the stable Deployment only (ARCHITECTURE.md).
func renderHPA(cfg Config, rel Release, ns, role string) *autoscalingv2.HorizontalPodAutoscaler {
	name := WorkloadName(rel.Name, role)
	return &autoscalingv2.HorizontalPodAutoscaler{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: objectLabels(rel, role)},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name},
			MinReplicas:    ptr(cfg.HPA.Min),
			MaxReplicas:    cfg.HPA.Max,
			Metrics: []autoscalingv2.MetricSpec{{
				Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{
					Name:   corev1.ResourceCPU,
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(cfg.HPA.CPUPercent)},
				},
			}},
		},
	}
}

// applyJSON is the server-side apply body of obj: its JSON without status and
// creationTimestamp, which an applier must not claim.
func applyJSON(obj runtime.Object) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if spec, ok := m["spec"].(map[string]any); ok {
		if tmpl, ok := spec["template"].(map[string]any); ok {
			if md, ok := tmpl["metadata"].(map[string]any); ok {
				delete(md, "creationTimestamp")
			}
		}
	}
	return json.Marshal(m)
}

// YAML returns the manifests as one multi-document YAML stream.
func (m *Manifests) YAML() ([]byte, error) {
	var out []byte
	for i, o := range m.Objects() {
		j, err := applyJSON(o)
		if err != nil {
			return nil, err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return nil, fmt.Errorf("encode yaml: %w", err)
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, y...)
	}
	return out, nil
}

// WriteDir writes one YAML file per object into dir (created if needed), named
// KIND-NAME.yaml, and returns the paths written.
func (m *Manifests) WriteDir(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("manifests directory %s: %w", dir, err)
	}
	var paths []string
	for _, o := range m.Objects() {
		j, err := applyJSON(o)
		if err != nil {
			return nil, err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return nil, fmt.Errorf("encode yaml: %w", err)
		}
		kind := o.GetObjectKind().GroupVersionKind().Kind
		meta, err := metaOf(o)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, strings.ToLower(kind)+"-"+meta.GetName()+".yaml")
		if err := os.WriteFile(p, y, 0o644); err != nil {
			return nil, fmt.Errorf("write manifest: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func metaOf(o runtime.Object) (metav1.Object, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", o)
	}
	return m, nil
}

func ptr[T any](v T) *T { return &v }

// Split is the canary arithmetic of ARCHITECTURE.md: at step percent of n replicas the canary
// runs max(1, ceil(n·percent/100)) (at most n) and stable the rest.
func Split(n int32, percent int) (canary, stable int32) {
	if n <= 0 || percent <= 0 {
		return 0, max(n, 0)
	}
	c := (int64(n)*int64(percent) + 99) / 100
	c = min(max(c, 1), int64(n))
	return int32(c), n - int32(c)
}
