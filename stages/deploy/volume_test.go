package deploy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/stages/deploy"
)

// runtimeRef is the runtime image every volume release below runs: a
// retrain changes only the model artifact.
var runtimeRef = "registry.test:5000/models/diabetes@sha256:" + hex.EncodeToString(func() []byte { s := sha256.Sum256([]byte("runtime")); return s[:] }())

// modelRef is the ModelPack artifact of a version.
func modelRef(version string) string {
	sum := sha256.Sum256([]byte("modelpack " + version))
	return "registry.test:5000/models/diabetes@sha256:" + hex.EncodeToString(sum[:])
}

func volumeRel(version string) deploy.Release {
	return deploy.Release{Name: "diabetes", Version: version, Image: runtimeRef, Model: modelRef(version), RunID: "run-" + version, Who: "tester"}
}

func volumeConfig() deploy.Config {
	cfg := testConfig()
	cfg.ModelSource = deploy.ModelFromVolume
	return cfg
}

// modelMount is the model container's mount of the model volume and the
// volume's image source, in a pod spec.
func modelMount(t *testing.T, s corev1.PodSpec) (corev1.VolumeMount, *corev1.ImageVolumeSource) {
	t.Helper()
	var mount corev1.VolumeMount
	for _, c := range s.Containers {
		for _, m := range c.VolumeMounts {
			if c.Name == deploy.ContainerName && m.Name == deploy.ModelVolume {
				mount = m
			}
		}
	}
	for _, v := range s.Volumes {
		if v.Name == deploy.ModelVolume {
			return mount, v.Image
		}
	}
	return mount, nil
}

// The Deployment of a volume release runs the runtime image and mounts
// the ModelPack artifact at /model as a read-only image volume (its model
// directory, subPath model).
func TestRenderModelVolume(t *testing.T) {
	m, err := deploy.Render(volumeConfig(), volumeRel("1.0.0"), "models")
	if err != nil {
		t.Fatal(err)
	}
	s := m.Deployments[0].Spec.Template.Spec
	if s.Containers[0].Image != runtimeRef {
		t.Errorf("image %s; want the runtime image %s", s.Containers[0].Image, runtimeRef)
	}
	mount, src := modelMount(t, s)
	if src == nil || src.Reference != modelRef("1.0.0") || src.PullPolicy != corev1.PullIfNotPresent {
		t.Fatalf("model volume %+v; want image %s, IfNotPresent", src, modelRef("1.0.0"))
	}
	if mount.MountPath != "/model" || mount.SubPath != "model" || !mount.ReadOnly {
		t.Errorf("model mount %+v; want /model, subPath model, read-only", mount)
	}
	y, err := m.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Spec struct {
			Template struct {
				Spec struct {
					Volumes []map[string]any `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	// The Service comes first in the stream; the Deployment second.
	dec := yaml.NewDecoder(bytesReader(y))
	for range 2 {
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]any{"name": "model", "image": map[string]any{"reference": modelRef("1.0.0"), "pullPolicy": "IfNotPresent"}}
	if vs := doc.Spec.Template.Spec.Volumes; len(vs) != 2 || fmt.Sprint(vs[1]) != fmt.Sprint(want) {
		t.Errorf("rendered volumes %v; want tmp and %v", vs, want)
	}

	// The image source renders none.
	m, err = deploy.Render(testConfig(), rel("1.0.0"), "models")
	if err != nil {
		t.Fatal(err)
	}
	if _, src := modelMount(t, m.Deployments[0].Spec.Template.Spec); src != nil {
		t.Errorf("model_source image mounts %+v", src)
	}

	tag := volumeRel("1.0.0")
	tag.Model = "registry.test:5000/models/diabetes:1.0.0"
	for _, tt := range []struct {
		name string
		cfg  deploy.Config
		rel  deploy.Release
		err  error
	}{
		{"volume without an artifact", volumeConfig(), rel("1.0.0"), deploy.ErrInvalidConfig},
		{"an artifact under image", testConfig(), volumeRel("1.0.0"), deploy.ErrInvalidConfig},
		{"an artifact by tag", volumeConfig(), tag, deploy.ErrNotDigest},
	} {
		if _, err := deploy.Render(tt.cfg, tt.rel, "models"); !errors.Is(err, tt.err) {
			t.Errorf("%s: %v; want %v", tt.name, err, tt.err)
		}
	}
}

func TestModelSourceConfig(t *testing.T) {
	if got := deploy.Defaults().ModelSource; got != deploy.ModelFromImage {
		t.Errorf("default model_source %q; want image", got)
	}
	for src, want := range map[string]error{"image": nil, "volume": nil, "disk": deploy.ErrInvalidConfig} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte("deploy:\n  model_source: "+src+"\n"), &doc); err != nil {
			t.Fatal(err)
		}
		cfg, err := deploy.DecodeConfig("modelci.yaml", doc.Content[0].Content[1])
		if !errors.Is(err, want) || (want == nil && cfg.ModelSource != src) {
			t.Errorf("model_source %s: %q, %v; want %v", src, cfg.ModelSource, err, want)
		}
	}
}

// recordingVerifier answers as a signed, gated model (or a runtime image)
// and records what it was asked.
type recordingVerifier struct {
	mu   sync.Mutex
	refs []string
	err  error
}

func (v *recordingVerifier) Verify(_ context.Context, ref string) (deploy.Verification, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.refs = append(v.refs, ref)
	return deploy.Verification{Verdict: "PASS", Name: "diabetes", Version: "1.0.0"}, v.err
}

// A volume release verifies the artifact as the model (its signed name
// and version name the release) and the runtime image as signed; either
// refusal, or no runtime verifier, changes nothing.
func TestVolumeVerification(t *testing.T) {
	tg, err := deploy.NewTargetForConfig(&rest.Config{Host: "https://127.0.0.1:1", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := volumeRel("1.0.0")
	model, runtime := &recordingVerifier{}, &recordingVerifier{err: errors.New("no signature")}
	_, err = tg.Deploy(ctx, deploy.Input{Config: volumeConfig(), Release: r, Verifier: model, RuntimeVerifier: runtime})
	if !errors.Is(err, deploy.ErrNotVerified) {
		t.Errorf("unsigned runtime image: %v; want ErrNotVerified", err)
	}
	if !slices.Equal(model.refs, []string{r.Model}) || !slices.Equal(runtime.refs, []string{r.Image}) {
		t.Errorf("verified %v as the model and %v as the runtime; want %s and %s", model.refs, runtime.refs, r.Model, r.Image)
	}
	if _, err := tg.Deploy(ctx, deploy.Input{Config: volumeConfig(), Release: r, Verifier: model}); !errors.Is(err, deploy.ErrNoVerifier) {
		t.Errorf("no runtime verifier: %v; want ErrNoVerifier", err)
	}
	if _, err := tg.Deploy(ctx, deploy.Input{Config: volumeConfig(), Release: r, Verifier: &recordingVerifier{err: errors.New("no gate")}, RuntimeVerifier: &recordingVerifier{}}); !errors.Is(err, deploy.ErrNotVerified) {
		t.Errorf("unverified model: %v; want ErrNotVerified", err)
	}
}

// replicaSets are the ReplicaSets of Deployment ns/name, by revision.
func replicaSets(t *testing.T, c *k8stest.Cluster, ns, name string) map[int]*appsv1.ReplicaSet {
	t.Helper()
	d := getDeployment(t, c, ns, name)
	list, err := c.Client.AppsV1().ReplicaSets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]*appsv1.ReplicaSet{}
	for i := range list.Items {
		rs := &list.Items[i]
		rev, _ := strconv.Atoi(rs.Annotations["deployment.kubernetes.io/revision"])
		out[rev] = rs
	}
	return out
}

// assertMounted checks that the app's stable Deployment and its pods, as
// the API server stored them, run the runtime image with version's model
// artifact mounted, and that the newest ReplicaSet holds every replica.
func assertMounted(t *testing.T, c *k8stest.Cluster, ns, version string, replicas int32) {
	t.Helper()
	d := getDeployment(t, c, ns, "diabetes")
	if img := d.Spec.Template.Spec.Containers[0].Image; img != runtimeRef {
		t.Errorf("deployment image %s; want the runtime image", img)
	}
	if _, src := modelMount(t, d.Spec.Template.Spec); src == nil || src.Reference != modelRef(version) {
		t.Errorf("deployment model volume %+v; want %s (%s)", src, modelRef(version), version)
	}
	if d.Status.AvailableReplicas != replicas || d.Status.UpdatedReplicas != replicas {
		t.Errorf("available %d, updated %d; want %d", d.Status.AvailableReplicas, d.Status.UpdatedReplicas, replicas)
	}
	pods, err := c.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: labels.SelectorFromSet(d.Spec.Selector.MatchLabels).String()})
	if err != nil {
		t.Fatal(err)
	}
	mounted := 0
	for _, p := range pods.Items {
		if _, src := modelMount(t, p.Spec); p.DeletionTimestamp == nil && src != nil && src.Reference == modelRef(version) {
			mounted++
		}
	}
	if mounted != int(replicas) {
		t.Errorf("%d pods mount %s; want %d", mounted, version, replicas)
	}
}

// A volume release on the real control plane: the API server keeps the
// image volume (KEP-4639; GA in the control plane's version), a new
// artifact with the same runtime image is a new ReplicaSet rolled out,
// a canary mounts the new artifact beside stable's old one, history and
// status record both references, and a rollback restores the previous
// artifact from the ReplicaSet that mounted it.
func TestVolumeReleases(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg := target(t, c)
	cfg := volumeConfig()

	rep := deployOK(t, tg, ns, cfg, volumeRel("1.0.0"))
	if rep.Current.Model != modelRef("1.0.0") || rep.Current.Image != runtimeRef {
		t.Errorf("current %+v; want the runtime image and the 1.0.0 artifact", rep.Current)
	}
	assertMounted(t, c, ns, "1.0.0", 3)
	first := replicaSets(t, c, ns, "diabetes")

	// A retrain: same runtime image, new artifact.
	rep = deployOK(t, tg, ns, cfg, volumeRel("1.1.0"))
	if rep.Previous == nil || rep.Previous.Model != modelRef("1.0.0") {
		t.Errorf("previous %+v; want 1.0.0's artifact", rep.Previous)
	}
	assertMounted(t, c, ns, "1.1.0", 3)
	second := replicaSets(t, c, ns, "diabetes")
	if len(second) != len(first)+1 {
		t.Fatalf("replica sets %d → %d; a new artifact wants a new one", len(first), len(second))
	}
	if _, src := modelMount(t, second[2].Spec.Template.Spec); src == nil || src.Reference != modelRef("1.1.0") || *second[2].Spec.Replicas != 3 || *second[1].Spec.Replicas != 0 {
		t.Errorf("revision 2 mounts %+v with %d replicas, revision 1 keeps %d", src, *second[2].Spec.Replicas, *second[1].Spec.Replicas)
	}

	// A canary of the next artifact: the canary mounts it, stable the old one.
	canary := cfg
	canary.Replicas, canary.Strategy, canary.Steps = 3, deploy.Canary, []int{50, 100}
	var seen []string
	analysis := deploy.AnalysisFunc(func(ctx context.Context, s deploy.Step) error {
		for _, name := range []string{s.Canary, s.Stable} {
			_, src := modelMount(t, getDeployment(t, c, s.Namespace, name).Spec.Template.Spec)
			if src != nil {
				seen = append(seen, src.Reference)
			}
		}
		return deploy.PodsReady{Client: c.Client}.Analyze(ctx, s)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := tg.Deploy(ctx, deploy.Input{Config: canary, Release: volumeRel("1.2.0"), Namespace: ns, InsecureSkipVerify: true, Analysis: analysis}); err != nil {
		t.Fatal(err)
	}
	if want := []string{modelRef("1.2.0"), modelRef("1.1.0")}; !slices.Equal(seen, want) {
		t.Errorf("canary, stable mounted %v; want %v", seen, want)
	}
	assertMounted(t, c, ns, "1.2.0", 3)

	st, err := tg.Status(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}
	if st.Current.Model != modelRef("1.2.0") || len(st.Workloads) != 1 || st.Workloads[0].Model != modelRef("1.2.0") || st.Workloads[0].Image != runtimeRef {
		t.Errorf("status: current %+v, workloads %+v", st.Current, st.Workloads)
	}
	if live, err := tg.LiveModel(context.Background(), ns, "diabetes"); err != nil || live != modelRef("1.2.0") {
		t.Errorf("live model %q, %v", live, err)
	}
	h, err := tg.History(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range h.History {
		if e.Image != runtimeRef || e.Model != modelRef(e.Version) || e.Config.ModelSource != deploy.ModelFromVolume {
			t.Errorf("history entry %d (%s): image %s, model %s, model_source %s", e.Revision, e.Version, e.Image, e.Model, e.Config.ModelSource)
		}
	}

	// Rollback: the image is the same in every ReplicaSet; the artifact
	// tells them apart. 1.1.0's ReplicaSet (revision 2) comes back.
	before := replicaSets(t, c, ns, "diabetes")
	rep, err = tg.Rollback(ctx, deploy.RollbackInput{Name: "diabetes", Namespace: ns, Trust: insecure})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Current.Version != "1.1.0" || rep.Current.Model != modelRef("1.1.0") {
		t.Errorf("rolled back to %+v; want 1.1.0 and its artifact", rep.Current)
	}
	assertMounted(t, c, ns, "1.1.0", 3)
	after := replicaSets(t, c, ns, "diabetes")
	if len(after) != len(before) {
		t.Errorf("replica sets %d → %d; the rollback should reuse 1.1.0's", len(before), len(after))
	}
	newest := slices.Max(slices.Collect(func(yield func(int) bool) {
		for rev := range after {
			if !yield(rev) {
				return
			}
		}
	}))
	if _, src := modelMount(t, after[newest].Spec.Template.Spec); src == nil || src.Reference != modelRef("1.1.0") || after[newest].Spec.Template.Labels[deploy.LabelVersion] != "1.1.0" {
		t.Errorf("newest replica set (revision %d) mounts %+v", newest, src)
	}

	// Back to a model in its image: the volume goes.
	deployOK(t, tg, ns, testConfig(), rel("2.0.0"))
	if _, src := modelMount(t, getDeployment(t, c, ns, "diabetes").Spec.Template.Spec); src != nil {
		t.Errorf("model_source image still mounts %+v", src)
	}
	assertServing(t, c, ns, "2.0.0", 3)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
