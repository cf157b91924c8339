package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/promote"
	"github.com/modelci/modelci/stages/registry"
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

// TestPromoteModelVolume: under deploy.model_source volume, promote
// carries a release from staging to prod as the release it is: prod's
// Deployment runs the same runtime image and mounts the same ModelPack
// artifact, by digest from prod's repository, each with its signatures and
// attestations, and prod's history names the artifact with its promotion.
// An artifact whose signature or gate attestation is not its own is
// refused before anything is copied or applied.
func TestPromoteModelVolume(t *testing.T) {
	c := k8stest.Start(t)
	stagingNS, prodNS := c.Namespace(t), c.Namespace(t)
	staging, prod := newCountingRegistry(t).repo(), newCountingRegistry(t).repo()
	priv, pub, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	dir := project(t, func(s string) string {
		return s + "sign: {key: cosign.key}\nverify: {key: cosign.pub}\n" +
			"deploy:\n  enabled: true\n  context: " + k8stest.Context + "\n  namespace: " + stagingNS + "\n  replicas: 2\n  model_source: volume\n" +
			"environments:\n" +
			"  staging: {repository: " + staging + ", context: " + k8stest.Context + ", namespace: " + stagingNS + "}\n" +
			"  prod: {repository: " + prod + ", context: " + k8stest.Context + ", namespace: " + prodNS + "}\n"
	})
	os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600)
	os.WriteFile(filepath.Join(dir, "cosign.pub"), pub, 0o644)
	t.Setenv("MODELCI_KEY_PASSWORD", "pw")
	opts := []pipeline.Option{pipeline.WithRuntime("linux/amd64", serverRuntime(t)), pipeline.WithRepository(staging), pipeline.WithKubeconfig(c.Kubeconfig)}
	signer, err := pipeline.Signer(pipeline.SignerConfig{Key: filepath.Join(dir, "cosign.key")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	promoteTo := func(version string) (*promote.Result, error) {
		sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return pipeline.Promote(ctx, sp, pipeline.PromoteInput{Name: "diabetes", Version: version, From: "staging", To: "prod",
			Reason: "release " + version, Signer: signer, Kubeconfig: c.Kubeconfig})
	}
	// inProd is ref (HOST/REPO@sha256:…) by digest in prod's repository.
	inProd := func(ref string) string { return prod + ref[strings.LastIndex(ref, "@"):] }

	first, err := runProject(t, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p1 := first.Record.Outputs.Push
	res, err := promoteTo("1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if res.Model != inProd(p1.ModelPack) || res.Runtime != inProd(p1.Runtime) || res.Image != inProd(first.Ref) {
		t.Fatalf("promoted model %s, runtime %s, image %s; want %s, %s and %s in prod", res.Model, res.Runtime, res.Image, inProd(p1.ModelPack), inProd(p1.Runtime), inProd(first.Ref))
	}
	img, vol, _ := liveTemplate(t, c, prodNS)
	if img != inProd(p1.Runtime) || vol == nil || vol.Reference != inProd(p1.ModelPack) {
		t.Fatalf("prod runs %s with volume %+v; want staging's runtime image and artifact from prod's repository: %s with %s", img, vol, inProd(p1.Runtime), inProd(p1.ModelPack))
	}
	// What prod runs verifies there on its own: the copies carry their
	// signatures and the artifact its PASS gate attestation.
	policy := sign.VerifyPolicy{KeyPath: filepath.Join(dir, "cosign.pub")}
	if v, err := sign.Verify(ctx, res.Model, sign.VerifyPolicy{KeyPath: policy.KeyPath, RequireGate: true}); err != nil || v.Verdict != "PASS" || v.Model.Version != "1.0.0" {
		t.Fatalf("the artifact in prod: %+v, %v; want a PASS 1.0.0", v, err)
	}
	if _, err := sign.Verify(ctx, res.Runtime, policy); err != nil {
		t.Fatalf("the runtime image in prod: %v", err)
	}
	if d, err := registry.Resolve(ctx, prod+":1.0.0"); err != nil || prod+"@"+d.String() != res.Image {
		t.Fatalf("prod's 1.0.0 tag: %v, %v; want the serving image %s", d, err, res.Image)
	}
	tg, err := deploy.NewTarget(c.Kubeconfig, k8stest.Context)
	if err != nil {
		t.Fatal(err)
	}
	h, err := pipeline.History(ctx, tg, pipeline.HistoryInput{Name: "diabetes", Namespace: prodNS, Env: "prod", Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.History) != 1 || h.History[0].Model != res.Model || h.History[0].Image != res.Runtime || h.History[0].Verdict != "PASS" ||
		h.History[0].Promotion == nil || h.History[0].Promotion.From != "staging" {
		t.Fatalf("prod's history %+v; want 1.0.0's artifact, verified, promoted from staging", h.History)
	}

	// 1.1.0, whose artifact then wears the serving image's signature, then
	// its gate attestation: each is refused, and prod is left as it was.
	setSpec(t, dir, [2]string{"version: 1.0.0", "version: 1.1.0"})
	second, err := runProject(t, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	p2 := second.Record.Outputs.Push
	cosignTag := func(ref, suffix string) string {
		return strings.Replace(ref[strings.LastIndex(ref, "@")+1:], ":", "-", 1) + suffix
	}
	for _, suffix := range []string{".sig", ".att"} {
		own, err := registry.Resolve(ctx, staging+":"+cosignTag(p2.ModelPack, suffix))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := registry.Copy(ctx, staging+":"+cosignTag(second.Ref, suffix), staging, registry.WithTags(cosignTag(p2.ModelPack, suffix)), registry.WithAllowOverwrite()); err != nil {
			t.Fatal(err)
		}
		_, err = promoteTo("1.1.0")
		if !errors.Is(err, promote.ErrNotVerified) || !promote.Refused(err) {
			t.Fatalf("promoting an artifact with the image's %s: %v; want %v, a refusal", suffix, err, promote.ErrNotVerified)
		}
		if img, vol, _ := liveTemplate(t, c, prodNS); img != res.Runtime || vol == nil || vol.Reference != res.Model {
			t.Fatalf("after a refusal prod runs %s with %+v", img, vol)
		}
		if h, err := tg.History(ctx, "diabetes", prodNS); err != nil || len(h.History) != 1 {
			t.Fatalf("after a refusal prod's history is %+v, %v", h, err)
		}
		tags, err := registry.ListTags(ctx, prod)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(tags, "1.1.0") || slices.Contains(tags, cosignTag(p2.ModelPack, ".sig")) {
			t.Fatalf("a refused promotion wrote prod's tags %v", tags)
		}
		if _, err := registry.Resolve(ctx, inProd(p2.ModelPack)); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("a refused promotion copied its artifact to prod: %v", err)
		}
		// The artifact's own tag back, by digest.
		if _, err := registry.Copy(ctx, staging+"@"+own.String(), staging, registry.WithTags(cosignTag(p2.ModelPack, suffix)), registry.WithAllowOverwrite()); err != nil {
			t.Fatal(err)
		}
	}

	// Untampered, 1.1.0 is a new release in prod: the same runtime image,
	// its own artifact.
	res2, err := promoteTo("1.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if res2.Runtime != res.Runtime || res2.Model != inProd(p2.ModelPack) || res2.Previous == nil || res2.Previous.Model != res.Model {
		t.Fatalf("promoted 1.1.0 as %+v; want %s with %s, after 1.0.0's %s", res2, res.Runtime, inProd(p2.ModelPack), res.Model)
	}
	if img, vol, _ := liveTemplate(t, c, prodNS); img != res.Runtime || vol == nil || vol.Reference != res2.Model {
		t.Fatalf("prod runs %s with %+v; want %s with %s", img, vol, res.Runtime, res2.Model)
	}
}
