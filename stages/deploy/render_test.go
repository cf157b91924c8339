package deploy_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/modelci/modelci/internal/strictyaml"
	"github.com/modelci/modelci/stages/deploy"
)

const testDigest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func release(version string) deploy.Release {
	return deploy.Release{Name: "diabetes", Version: version, Image: "registry.test:5000/models/diabetes@" + testDigest}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		n              int32
		percent        int
		canary, stable int32
	}{
		{10, 10, 1, 9},
		{10, 50, 5, 5},
		{10, 100, 10, 0},
		{3, 10, 1, 2}, // max(1, ceil(0.3))
		{3, 50, 2, 1}, // ceil(1.5)
		{3, 34, 2, 1}, // ceil(1.02)
		{3, 33, 1, 2}, // ceil(0.99)
		{1, 10, 1, 0}, // a single replica is all canary
		{7, 1, 1, 6},  // at least one
		{200, 1, 2, 198},
		{4, 25, 1, 3}, // exact
		{4, 26, 2, 2}, // ceil(1.04)
		{0, 50, 0, 0}, // nothing to split
		{5, 0, 0, 5},  // no canary
	}
	for _, tt := range tests {
		c, s := deploy.Split(tt.n, tt.percent)
		if c != tt.canary || s != tt.stable {
			t.Errorf("Split(%d, %d%%) = %d canary, %d stable; want %d, %d", tt.n, tt.percent, c, s, tt.canary, tt.stable)
		}
		if tt.n > 0 && c+s != tt.n {
			t.Errorf("Split(%d, %d%%): %d + %d ≠ %d", tt.n, tt.percent, c, s, tt.n)
		}
	}
}

func TestParseSteps(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		err  error
	}{
		{"10,50,100", []int{10, 50, 100}, nil},
		{" 25, 100 ", []int{25, 100}, nil},
		{"100", []int{100}, nil},
		{"10,50", nil, deploy.ErrInvalidSteps},     // does not end at 100
		{"50,10,100", nil, deploy.ErrInvalidSteps}, // decreasing
		{"10,10,100", nil, deploy.ErrInvalidSteps}, // repeated
		{"0,100", nil, deploy.ErrInvalidSteps},     // zero
		{"10,150", nil, deploy.ErrInvalidSteps},    // above 100
		{"ten,100", nil, deploy.ErrInvalidSteps},   // not a number
		{"", nil, deploy.ErrInvalidSteps},          // empty
		{"10.5,100", nil, deploy.ErrInvalidSteps},  // fractional
	}
	for _, tt := range tests {
		got, err := deploy.ParseSteps(tt.in)
		if !errors.Is(err, tt.err) || (tt.err == nil && !slices.Equal(got, tt.want)) {
			t.Errorf("ParseSteps(%q) = %v, %v; want %v, %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestCheckImage(t *testing.T) {
	tests := []struct {
		ref string
		err error
	}{
		{"registry.test:5000/models/diabetes@" + testDigest, nil},
		{"127.0.0.1:5000/diabetes@" + testDigest, nil},
		{"registry.test/models/diabetes:1.0.0", deploy.ErrNotDigest},
		{"registry.test/models/diabetes", deploy.ErrNotDigest},
		{"registry.test/models/diabetes@sha256:abc", deploy.ErrNotDigest},
		{"oci-layout:///tmp/oci@" + testDigest, deploy.ErrLayoutRef},
	}
	for _, tt := range tests {
		if err := deploy.CheckImage(tt.ref); !errors.Is(err, tt.err) {
			t.Errorf("CheckImage(%q) = %v; want %v", tt.ref, err, tt.err)
		}
	}
}

func TestRenderRefusesTag(t *testing.T) {
	rel := release("1.0.0")
	rel.Image = "registry.test/models/diabetes:1.0.0"
	_, err := deploy.Render(deploy.Defaults(), rel, "models")
	if !errors.Is(err, deploy.ErrNotDigest) {
		t.Fatalf("Render with a tag: %v; want ErrNotDigest", err)
	}
}

func TestRenderDeployment(t *testing.T) {
	cfg := deploy.Defaults()
	cfg.GPU = 1
	cfg.NodeSelector = map[string]string{"accelerator": "nvidia"}
	cfg.Tolerations = []deploy.Toleration{{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"}}
	cfg.PodAnnotations = map[string]string{"team": "ml"}
	cfg.PodLabels = map[string]string{"cost-center": "42"}
	m, err := deploy.Render(cfg, release("1.2.0+build.7"), "models")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Deployments) != 1 || len(m.Services) != 1 || len(m.HPAs) != 0 || len(m.PDBs) != 0 {
		t.Fatalf("objects: %d deployments, %d services, %d hpas, %d pdbs; want 1, 1, 0, 0", len(m.Deployments), len(m.Services), len(m.HPAs), len(m.PDBs))
	}
	d := m.Deployments[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"name", d.Name, "diabetes"},
		{"namespace", d.Namespace, "models"},
		{"replicas", *d.Spec.Replicas, int32(3)},
		{"max unavailable", d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue(), 0},
		{"label name", d.Labels["app.kubernetes.io/name"], "diabetes"},
		{"label managed-by", d.Labels["app.kubernetes.io/managed-by"], "modelci"},
		{"label version", d.Labels["app.kubernetes.io/version"], "1.2.0_build.7"},
		{"version annotation", d.Annotations["modelci.dev/version"], "1.2.0+build.7"},
		{"selector track", d.Spec.Selector.MatchLabels["modelci.dev/track"], "stable"},
		{"pod label", d.Spec.Template.Labels["cost-center"], "42"},
		{"pod label version", d.Spec.Template.Labels["app.kubernetes.io/version"], "1.2.0_build.7"},
		{"pod annotation", d.Spec.Template.Annotations["team"], "ml"},
		{"scrape", d.Spec.Template.Annotations["prometheus.io/scrape"], "true"},
		{"scrape port", d.Spec.Template.Annotations["prometheus.io/port"], "8080"},
		{"node selector", d.Spec.Template.Spec.NodeSelector["accelerator"], "nvidia"},
		{"toleration", d.Spec.Template.Spec.Tolerations[0].Key, "nvidia.com/gpu"},
		{"run as non-root", *d.Spec.Template.Spec.SecurityContext.RunAsNonRoot, true},
		{"run as user", *d.Spec.Template.Spec.SecurityContext.RunAsUser, int64(65532)},
		{"seccomp", d.Spec.Template.Spec.SecurityContext.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault},
	}
	c := d.Spec.Template.Spec.Containers[0]
	gpu := c.Resources.Limits[deploy.ResourceGPU]
	checks = append(checks, []struct {
		what      string
		got, want any
	}{
		{"image", c.Image, release("").Image},
		{"args", len(c.Args), 0},
		{"readiness path", c.ReadinessProbe.HTTPGet.Path, "/readyz"},
		{"liveness path", c.LivenessProbe.HTTPGet.Path, "/healthz"},
		{"port", c.Ports[0].ContainerPort, int32(8080)},
		{"read-only root", *c.SecurityContext.ReadOnlyRootFilesystem, true},
		{"no privilege escalation", *c.SecurityContext.AllowPrivilegeEscalation, false},
		{"drop", c.SecurityContext.Capabilities.Drop[0], corev1.Capability("ALL")},
		{"gpu limit", gpu.Value(), int64(1)},
		{"cpu request", c.Resources.Requests.Cpu().String(), "100m"},
		{"memory limit", c.Resources.Limits.Memory().String(), "512Mi"},
	}...)
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v; want %v", ch.what, ch.got, ch.want)
		}
	}
	// Shutdown: the pod keeps serving through a pre-stop sleep (the kubelet's own action, no
	// shell in the image) while the endpoint is withdrawn, then drains on SIGTERM; the grace
	// period covers both, the server's default drain being 25 s.
	if l := c.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Sleep == nil || l.PreStop.Exec != nil || l.PreStop.HTTPGet != nil {
		t.Errorf("lifecycle %+v; want a pre-stop sleep action alone", l)
	} else if got := l.PreStop.Sleep.Seconds; got != 5 {
		t.Errorf("pre-stop sleep %d s; want 5", got)
	}
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 35 || *g < deploy.PreStopSeconds+25 {
		t.Errorf("terminationGracePeriodSeconds %v; want 35, the pre-stop sleep and the 25 s drain", g)
	}
	s := m.Services[0]
	if s.Spec.Type != corev1.ServiceTypeClusterIP || s.Spec.Selector["modelci.dev/track"] != "" || s.Spec.Selector["app.kubernetes.io/name"] != "diabetes" {
		t.Errorf("service %s: type %s, selector %v; want ClusterIP selecting both tracks", s.Name, s.Spec.Type, s.Spec.Selector)
	}
}

func TestRenderOptions(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*deploy.Config)
		check func(*testing.T, *deploy.Manifests)
	}{
		{"two services", func(c *deploy.Config) { c.Services = []string{"predict", "preprocess"} }, func(t *testing.T, m *deploy.Manifests) {
			var names, args []string
			for _, d := range m.Deployments {
				names = append(names, d.Name)
				args = append(args, strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "))
			}
			if !slices.Equal(names, []string{"diabetes", "diabetes-preprocess"}) || !slices.Equal(args, []string{"--role predict", "--role preprocess"}) {
				t.Errorf("deployments %v with args %v", names, args)
			}
			if len(m.Services) != 2 || m.Services[1].Spec.Selector["app.kubernetes.io/component"] != "preprocess" {
				t.Errorf("services: %d, second selects %v", len(m.Services), m.Services[len(m.Services)-1].Spec.Selector)
			}
		}},
		{"node port", func(c *deploy.Config) { c.ServiceType = "NodePort" }, func(t *testing.T, m *deploy.Manifests) {
			if m.Services[0].Spec.Type != corev1.ServiceTypeNodePort {
				t.Errorf("service type %s", m.Services[0].Spec.Type)
			}
		}},
		{"load balancer", func(c *deploy.Config) { c.ServiceType = "LoadBalancer" }, func(t *testing.T, m *deploy.Manifests) {
			if m.Services[0].Spec.Type != corev1.ServiceTypeLoadBalancer {
				t.Errorf("service type %s", m.Services[0].Spec.Type)
			}
		}},
		{"hpa and pdb", func(c *deploy.Config) {
			c.HPA = deploy.HPA{Min: 2, Max: 10, CPUPercent: 70}
			c.PDB = deploy.PDB{MinAvailable: 2}
		}, func(t *testing.T, m *deploy.Manifests) {
			if len(m.HPAs) != 1 || len(m.PDBs) != 1 {
				t.Fatalf("%d hpas, %d pdbs", len(m.HPAs), len(m.PDBs))
			}
			h := m.HPAs[0]
			if h.Spec.ScaleTargetRef.Name != "diabetes" || *h.Spec.MinReplicas != 2 || h.Spec.MaxReplicas != 10 || *h.Spec.Metrics[0].Resource.Target.AverageUtilization != 70 {
				t.Errorf("hpa %+v", h.Spec)
			}
			if p := m.PDBs[0]; p.Spec.MinAvailable.IntValue() != 2 || p.Spec.Selector.MatchLabels["modelci.dev/track"] != "stable" {
				t.Errorf("pdb %+v", p.Spec)
			}
		}},
		{"no gpu", func(c *deploy.Config) {}, func(t *testing.T, m *deploy.Manifests) {
			if _, ok := m.Deployments[0].Spec.Template.Spec.Containers[0].Resources.Limits[deploy.ResourceGPU]; ok {
				t.Error("gpu limit without gpu")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := deploy.Defaults()
			tt.edit(&cfg)
			m, err := deploy.Render(cfg, release("1.0.0"), "models")
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, m)
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*deploy.Config)
		err  error
	}{
		{"defaults", func(c *deploy.Config) {}, nil},
		{"zero replicas", func(c *deploy.Config) { c.Replicas = 0 }, deploy.ErrInvalidConfig},
		{"bad strategy", func(c *deploy.Config) { c.Strategy = "blue-green" }, deploy.ErrInvalidConfig},
		{"bad steps", func(c *deploy.Config) { c.Steps = []int{50, 10} }, deploy.ErrInvalidSteps},
		{"bad service", func(c *deploy.Config) { c.Services = []string{"train"} }, deploy.ErrInvalidConfig},
		{"repeated service", func(c *deploy.Config) { c.Services = []string{"predict", "predict"} }, deploy.ErrInvalidConfig},
		{"bad service type", func(c *deploy.Config) { c.ServiceType = "ExternalName" }, deploy.ErrInvalidConfig},
		{"bad quantity", func(c *deploy.Config) { c.Resources.CPU = "lots" }, deploy.ErrInvalidConfig},
		{"bad hpa", func(c *deploy.Config) { c.HPA = deploy.HPA{Min: 5, Max: 2, CPUPercent: 50} }, deploy.ErrInvalidConfig},
		{"pdb above replicas", func(c *deploy.Config) { c.PDB.MinAvailable = 4 }, deploy.ErrInvalidConfig},
		{"bad pause", func(c *deploy.Config) { c.Pause = "soon" }, deploy.ErrInvalidConfig},
		{"reserved pod label", func(c *deploy.Config) { c.PodLabels = map[string]string{"app.kubernetes.io/name": "x"} }, deploy.ErrInvalidConfig},
		{"bad namespace", func(c *deploy.Config) { c.Namespace = "Models" }, deploy.ErrInvalidConfig},
	}
	for _, tt := range tests {
		cfg := deploy.Defaults()
		tt.edit(&cfg)
		if err := cfg.Validate(); !errors.Is(err, tt.err) {
			t.Errorf("%s: Validate() = %v; want %v", tt.name, err, tt.err)
		}
	}
}

func TestDecodeConfig(t *testing.T) {
	src := "deploy:\n  namespace: prod\n  replicas: 5\n  strategy: canary\n  steps: [20, 100]\n  pod_annotations: {a: b}\n"
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	node := doc.Content[0].Content[1]
	cfg, err := deploy.DecodeConfig("modelci.yaml", node)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "prod" || cfg.Replicas != 5 || cfg.Strategy != "canary" || !slices.Equal(cfg.Steps, []int{20, 100}) || cfg.PodAnnotations["a"] != "b" || cfg.ServiceType != "ClusterIP" {
		t.Errorf("decoded %+v", cfg)
	}
	bad := []struct {
		src string
		err error
	}{
		{"deploy:\n  replicas: three\n", strictyaml.ErrType},
		{"deploy:\n  replica: 3\n", strictyaml.ErrUnknownKey},
		{"deploy:\n  steps: [10, 5]\n", deploy.ErrInvalidSteps},
	}
	for _, b := range bad {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(b.src), &doc); err != nil {
			t.Fatal(err)
		}
		_, err := deploy.DecodeConfig("modelci.yaml", doc.Content[0].Content[1])
		if !errors.Is(err, b.err) || !strings.Contains(err.Error(), "modelci.yaml") {
			t.Errorf("DecodeConfig(%q) = %v; want %v naming the file", b.src, err, b.err)
		}
	}
}

func TestWriteDir(t *testing.T) {
	cfg := deploy.Defaults()
	cfg.PDB.MinAvailable = 1
	m, err := deploy.Render(cfg, release("1.0.0"), "models")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	paths, err := m.WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"service-diabetes.yaml", "deployment-diabetes.yaml", "poddisruptionbudget-diabetes.yaml"}
	var got []string
	for _, p := range paths {
		got = append(got, filepath.Base(p))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("files %v; want %v", got, want)
	}
	b, err := os.ReadFile(filepath.Join(dir, "deployment-diabetes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := sigyaml.UnmarshalStrict(b, &d); err != nil {
		t.Fatalf("written deployment does not decode: %v", err)
	}
	if d.Kind != "Deployment" || d.APIVersion != "apps/v1" || d.Spec.Template.Spec.Containers[0].Image != release("").Image {
		t.Errorf("written deployment %s %s image %s", d.APIVersion, d.Kind, d.Spec.Template.Spec.Containers[0].Image)
	}
	if strings.Contains(string(b), "status:") || strings.Contains(string(b), "creationTimestamp") {
		t.Errorf("written deployment carries status or creationTimestamp:\n%s", b)
	}
}

func TestRolloutStatus(t *testing.T) {
	dep := func(gen, observed int64, replicas, updated, total, available int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "d", Generation: gen},
			Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
			Status:     appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, Replicas: total, AvailableReplicas: available, Conditions: conds},
		}
	}
	deadline := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded", Message: "too slow"}
	tests := []struct {
		name string
		d    *appsv1.Deployment
		done bool
		msg  string
		err  error
	}{
		{"not observed", dep(2, 1, 3, 3, 3, 3), false, "observe generation 2", nil},
		{"updating", dep(2, 2, 3, 1, 4, 3), false, "1 of 3 new replicas updated", nil},
		{"old pending", dep(2, 2, 3, 3, 4, 3), false, "1 old replicas pending termination", nil},
		{"unavailable", dep(2, 2, 3, 3, 3, 2), false, "2 of 3 updated replicas available", nil},
		{"done", dep(2, 2, 3, 3, 3, 3), true, "rolled out", nil},
		{"scaled to zero", dep(3, 3, 0, 0, 0, 0), true, "rolled out", nil},
		{"scaling down", dep(3, 3, 2, 3, 3, 3), false, "3 of 2 replicas still running", nil},
		{"deadline", dep(2, 2, 3, 1, 4, 3, deadline), false, "", deploy.ErrProgressDeadline},
	}
	for _, tt := range tests {
		done, msg, err := deploy.RolloutStatus(tt.d)
		if done != tt.done || !strings.Contains(msg, tt.msg) || !errors.Is(err, tt.err) {
			t.Errorf("%s: RolloutStatus = %v, %q, %v; want %v, %q, %v", tt.name, done, msg, err, tt.done, tt.msg, tt.err)
		}
	}
}
