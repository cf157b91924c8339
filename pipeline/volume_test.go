package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/sign"
)

// liveTemplate is what the app's predict Deployment in ns runs now: its
// model container's image and the reference of its model image volume
// (nil when it mounts none).
func liveTemplate(t *testing.T, c *k8stest.Cluster, ns string) (string, *corev1.ImageVolumeSource, corev1.PodSpec) {
	t.Helper()
	d, err := c.Client.AppsV1().Deployments(ns).Get(context.Background(), deploy.WorkloadName("diabetes", deploy.RolePredict), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := d.Spec.Template.Spec
	var img string
	for _, ct := range s.Containers {
		if ct.Name == deploy.ContainerName {
			img = ct.Image
		}
	}
	for _, v := range s.Volumes {
		if v.Name == deploy.ModelVolume {
			return img, v.Image, s
		}
	}
	return img, nil, s
}

// TestRunDeploysModelVolume: with deploy.model_source volume, modelci run
// rolls out the runtime image with the run's ModelPack artifact mounted as
// an image volume, both verified; a retrain is a new artifact under the
// same runtime image, a release of its own; the serving image's referrer
// finds its artifact; a rollback mounts the earlier artifact again; and
// an artifact signed by someone else is refused before anything changes.
func TestRunDeploysModelVolume(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	reg := newCountingRegistry(t)
	priv, pub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	dir := project(t, func(s string) string {
		return s + "sign: {key: cosign.key}\nverify: {key: cosign.pub}\n" +
			"deploy:\n  enabled: true\n  context: " + k8stest.Context + "\n  namespace: " + ns + "\n  replicas: 2\n  model_source: volume\n" +
			"environments:\n  prod:\n    repository: " + reg.repo() + "\n    context: " + k8stest.Context + "\n    namespace: " + ns + "\n"
	})
	os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600)
	os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o644)
	t.Setenv("MODELCI_KEY_PASSWORD", "pw")
	opts := []pipeline.Option{pipeline.WithRuntime("linux/amd64", serverRuntime(t)), pipeline.WithRepository(reg.repo()), pipeline.WithKubeconfig(c.Kubeconfig)}

	first, err := runProject(t, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p1 := first.Record.Outputs.Push
	if p1 == nil || p1.ModelPack == "" || p1.Runtime == "" {
		t.Fatalf("record push = %+v; want the ModelPack artifact and the runtime image pushed", p1)
	}
	img, vol, s := liveTemplate(t, c, ns)
	if img != p1.Runtime || img == first.Ref {
		t.Errorf("deployment runs %s; want the runtime image %s, not the serving image %s", img, p1.Runtime, first.Ref)
	}
	if vol == nil || vol.Reference != p1.ModelPack || vol.PullPolicy != corev1.PullIfNotPresent {
		t.Fatalf("model volume %+v; want %s, IfNotPresent", vol, p1.ModelPack)
	}
	var mounted bool
	for _, m := range s.Containers[0].VolumeMounts {
		mounted = mounted || (m.Name == deploy.ModelVolume && m.MountPath == "/model" && m.ReadOnly)
	}
	if !mounted {
		t.Errorf("the model container mounts %+v; want the model volume read-only at /model", s.Containers[0].VolumeMounts)
	}
	if d := first.Record.Outputs.Deploy; d == nil || d.Namespace != ns {
		t.Errorf("record deploy = %+v", d)
	}

	// A retrain: another model, another version, on another split, gated
	// against what prod runs. Only the volume changes.
	setSpec(t, dir, [2]string{"version: 1.0.0", "version: 1.1.0"}, [2]string{"epochs: 300", "epochs: 310"},
		[2]string{"seed: 42", "seed: 7"}, [2]string{"  method: t\n", "  method: t\n  baseline: {from: prod, max_regression: 1}\n"})
	second, err := runProject(t, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// The champion is the artifact prod mounts; scored on another split, its
	// model was taken out of the artifact's layers and scored again.
	if b := second.Record.Inputs.Baseline; b == nil || b.Image != p1.ModelPack || b.Version != "1.0.0" || !b.Rescored {
		t.Errorf("baseline %+v; want prod's 1.0.0 artifact %s, re-scored", b, p1.ModelPack)
	}
	p2 := second.Record.Outputs.Push
	if p2.Runtime != p1.Runtime {
		t.Errorf("runtime image %s → %s; a retrain must not change it", p1.Runtime, p2.Runtime)
	}
	if p2.ModelPack == p1.ModelPack {
		t.Fatalf("the retrained model's artifact is the first one's (%s)", p2.ModelPack)
	}
	img, vol, _ = liveTemplate(t, c, ns)
	if img != p1.Runtime || vol == nil || vol.Reference != p2.ModelPack {
		t.Fatalf("after the retrain: image %s, volume %+v; want %s with %s", img, vol, p1.Runtime, p2.ModelPack)
	}
	tg, err := deploy.NewTarget(c.Kubeconfig, k8stest.Context)
	if err != nil {
		t.Fatal(err)
	}
	h, err := tg.History(context.Background(), "diabetes", ns)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.History); n != 2 || h.History[0].Model != p1.ModelPack || h.History[1].Model != p2.ModelPack || h.History[1].Image != p1.Runtime || h.History[1].Version != "1.1.0" {
		t.Fatalf("history %+v; want 1.0.0 then 1.1.0, each with its artifact", h.History)
	}

	sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := pipeline.EnvironmentsStatus(context.Background(), sp, "diabetes", c.Kubeconfig, "")
	if err != nil {
		t.Fatal(err)
	}
	if row := st.Environments[0]; row.Version != "1.1.0" || row.Model != p2.ModelPack || !strings.HasSuffix(p2.ModelPack, "@"+row.ModelDigest) || row.Image != p1.Runtime {
		t.Errorf("status row %+v; want 1.1.0 with its artifact", row)
	}

	// Someone else's signature: refused, nothing applied.
	_, otherPub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	stranger := sign.VerifyPolicy{Key: otherPub}
	_, err = pipeline.Deploy(context.Background(), tg, pipeline.DeployInput{Ref: p1.ModelPack, Config: sp.Deploy, Namespace: ns, Policy: &stranger})
	if !errors.Is(err, deploy.ErrNotVerified) {
		t.Fatalf("deploying an artifact signed with another key: %v; want %v", err, deploy.ErrNotVerified)
	}
	if _, vol, _ = liveTemplate(t, c, ns); vol == nil || vol.Reference != p2.ModelPack {
		t.Fatalf("a refused deploy changed the volume to %+v", vol)
	}

	// Rollback: 1.0.0's artifact is mounted again, verified (under the
	// verify: block alone: 1.0.0 was gated before baseline.from was set).
	policy := sp.Verify.Policy()
	rep, err := pipeline.Rollback(context.Background(), tg, pipeline.RollbackInput{Name: "diabetes", Namespace: ns, Policy: &policy, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Current == nil || rep.Current.Version != "1.0.0" || rep.Current.Model != p1.ModelPack || rep.Current.Verdict != "PASS" || rep.Previous == nil || rep.Previous.Model != p2.ModelPack {
		t.Errorf("rolled back to %+v; want 1.0.0 with its artifact, verified PASS", rep.Current)
	}
	img, vol, _ = liveTemplate(t, c, ns)
	if img != p1.Runtime || vol == nil || vol.Reference != p1.ModelPack {
		t.Fatalf("after the rollback: image %s, volume %+v; want %s with %s", img, vol, p1.Runtime, p1.ModelPack)
	}

	// modelci deploy of the retrained serving image: its ModelPack referrer
	// is what gets mounted, as a canary of the stable 1.0.0.
	cfg := sp.Deploy
	cfg.Strategy, cfg.Steps, cfg.Pause = deploy.Canary, []int{50, 100}, ""
	rep, err = pipeline.Deploy(context.Background(), tg, pipeline.DeployInput{Ref: second.Ref, Config: cfg, Namespace: ns, Policy: &policy})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Current == nil || rep.Current.Model != p2.ModelPack || rep.Current.Image != p1.Runtime || rep.Current.Version != "1.1.0" || rep.Current.Strategy != deploy.Canary {
		t.Errorf("deploying the serving image %s released %+v; want its artifact %s", second.Ref, rep.Current, p2.ModelPack)
	}
	if _, vol, _ = liveTemplate(t, c, ns); vol == nil || vol.Reference != p2.ModelPack {
		t.Fatalf("after the canary: volume %+v; want %s", vol, p2.ModelPack)
	}
}

// TestPromoteRefusesModelVolume: promotion copies and attests the serving
// image only, so a spec whose releases mount their model is refused before
// any cluster or registry is touched.
func TestPromoteRefusesModelVolume(t *testing.T) {
	_, pub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	dir := project(t, func(s string) string {
		return s + "verify: {key: cosign.pub}\ndeploy:\n  model_source: volume\n" +
			"environments:\n  staging: {repository: registry.test/models/diabetes, context: staging}\n  prod: {repository: registry.test/models/diabetes, context: prod}\n"
	})
	os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o644)
	sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pipeline.Promote(context.Background(), sp, pipeline.PromoteInput{Name: "diabetes", Version: "1.0.0", From: "staging", To: "prod", Kubeconfig: filepath.Join(dir, "no-kubeconfig")})
	if !errors.Is(err, spec.ErrSpec) || !strings.Contains(err.Error(), "model_source") {
		t.Fatalf("promote under model_source volume: %v; want a spec error naming model_source", err)
	}
}
