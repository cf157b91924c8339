package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/internal/ocitest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/sign"
)

// signedWorld is a namespace of the real control plane and a registry
// holding releases of diabetes signed with keys, verified as deploy does.
type signedWorld struct {
	c      *k8stest.Cluster
	ns     string
	tg     *deploy.Target
	reg    string
	repo   string
	keys   ocitest.Keys
	verify deploy.Verifier
}

func newSignedWorld(t *testing.T) *signedWorld {
	t.Helper()
	c := k8stest.Start(t)
	w := &signedWorld{c: c, ns: c.Namespace(t), tg: target(t, c), reg: ocitest.Registry(t), keys: ocitest.NewKeys(t, "pw")}
	w.repo = w.reg + "/models/diabetes"
	w.verify = pipeline.Verifier(sign.VerifyPolicy{KeyPath: w.keys.PubPath, RequireGate: true})
	return w
}

// publish pushes name@version to repo as modelci run does and returns it by digest.
func (w *signedWorld) publish(t *testing.T, repo, name, version string, keys ocitest.Keys, p ocitest.Published) string {
	t.Helper()
	return repo + "@" + ocitest.Publish(t, repo, name, version, keys, p)
}

var pass = ocitest.Published{Verdict: modelgate.Pass}

// deploy rolls version out verified, with cfg.
func (w *signedWorld) deploy(t *testing.T, cfg deploy.Config, version, ref string) (*deploy.Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	return w.tg.Deploy(ctx, deploy.Input{Config: cfg, Release: deploy.Release{Name: "diabetes", Version: version, Image: ref, Who: "tester"}, Namespace: w.ns, Verifier: w.verify})
}

// history reads the app's history ConfigMap as stored.
func (w *signedWorld) history(t *testing.T) string {
	t.Helper()
	cm, err := w.c.Client.CoreV1().ConfigMaps(w.ns).Get(t.Context(), deploy.HistoryName("diabetes"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data["history.json"]
}

// forge rewrites the stored history with edit, as someone with write
// access to the ConfigMap could.
func (w *signedWorld) forge(t *testing.T, raw string, edit func([]deploy.Entry)) string {
	t.Helper()
	var entries []deploy.Entry
	if err := json.Unmarshal([]byte(raw), &entries); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(entries)
	}
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	cms := w.c.Client.CoreV1().ConfigMaps(w.ns)
	cm, err := cms.Get(t.Context(), deploy.HistoryName("diabetes"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["history.json"] = string(b)
	if _, err := cms.Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (w *signedWorld) deployment(t *testing.T) *appsv1.Deployment {
	t.Helper()
	return getDeployment(t, w.c, w.ns, "diabetes")
}

// entry is the history entry of version.
func entry(entries []deploy.Entry, version string) *deploy.Entry {
	for i := range entries {
		if entries[i].Version == version {
			return &entries[i]
		}
	}
	return nil
}

// TestRollbackVerifiesTheRecordedRelease: the history names the release a
// rollback restores, but only a release that verifies as deploy verifies
// it is restored; each forgery is refused with the history and the
// Deployment unchanged.
func TestRollbackVerifiesTheRecordedRelease(t *testing.T) {
	w := newSignedWorld(t)
	cfg := testConfig()
	v1 := w.publish(t, w.repo, "diabetes", "1.0.0", w.keys, pass)
	v2 := w.publish(t, w.repo, "diabetes", "1.1.0", w.keys, pass)
	for _, d := range []struct{ v, ref string }{{"1.0.0", v1}, {"1.1.0", v2}} {
		if _, err := w.deploy(t, cfg, d.v, d.ref); err != nil {
			t.Fatalf("deploy %s: %v", d.v, err)
		}
	}
	original := w.history(t)
	other := ocitest.NewKeys(t, "other")
	forgeries := []struct {
		name  string
		image string
		edit  func(e *deploy.Entry)
		want  error
	}{
		{"unsigned", w.publish(t, w.repo, "diabetes", "0.9.0", w.keys, ocitest.Published{Verdict: modelgate.Pass, Unsigned: true}), nil, sign.ErrRefused},
		{"signed by another key", w.publish(t, w.repo, "diabetes", "0.9.1", other, pass), nil, sign.ErrRefused},
		{"gate verdict FAIL", w.publish(t, w.repo, "diabetes", "0.9.2", w.keys, ocitest.Published{Verdict: modelgate.Fail}), nil, sign.ErrRefused},
		{"no gate attestation", w.publish(t, w.repo, "diabetes", "0.9.3", w.keys, ocitest.Published{}), nil, sign.ErrRefused},
		{"a tag, not a digest", w.repo + ":1.0.0", nil, deploy.ErrUntrusted},
		{"another repository", w.publish(t, w.reg+"/staging/diabetes", "diabetes", "1.0.0", w.keys, pass), nil, deploy.ErrUntrusted},
		{"another model", w.publish(t, w.repo, "housing", "1.0.0", w.keys, pass), nil, deploy.ErrReleaseMismatch},
		{"another version", w.publish(t, w.repo, "diabetes", "1.2.0", w.keys, pass), nil, deploy.ErrReleaseMismatch},
		{"deployed unverified", v1, func(e *deploy.Entry) { e.Verdict = deploy.Unverified }, deploy.ErrUntrusted},
	}
	for _, f := range forgeries {
		t.Run(f.name, func(t *testing.T) {
			forged := w.forge(t, original, func(es []deploy.Entry) {
				e := entry(es, "1.0.0")
				e.Image, e.Verdict = f.image, "PASS"
				if f.edit != nil {
					f.edit(e)
				}
			})
			before := w.deployment(t)
			_, err := w.tg.Rollback(t.Context(), deploy.RollbackInput{Name: "diabetes", Namespace: w.ns, To: "1.0.0", Trust: deploy.Trust{Verifier: w.verify}})
			if !errors.Is(err, deploy.ErrNotVerified) || !errors.Is(err, f.want) {
				t.Fatalf("rollback to a forged release: %v, want ErrNotVerified and %v", err, f.want)
			}
			if got := w.history(t); got != forged {
				t.Errorf("the refused rollback changed the history:\n%s\nwant\n%s", got, forged)
			}
			after := w.deployment(t)
			if after.Generation != before.Generation || after.Spec.Template.Spec.Containers[0].Image != v2 {
				t.Errorf("the refused rollback changed the Deployment: generation %d → %d, image %s", before.Generation, after.Generation, after.Spec.Template.Spec.Containers[0].Image)
			}
		})
	}

	t.Run("deployed unverified, restored with the same flag", func(t *testing.T) {
		w.forge(t, original, func(es []deploy.Entry) { entry(es, "1.0.0").Verdict = deploy.Unverified })
		rep, err := w.tg.Rollback(t.Context(), deploy.RollbackInput{Name: "diabetes", Namespace: w.ns, To: "1.0.0", Trust: deploy.Trust{InsecureSkipVerify: true}})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Current.Verdict != deploy.Unverified || w.deployment(t).Spec.Template.Spec.Containers[0].Image != v1 {
			t.Fatalf("restored %+v", rep.Current)
		}
	})

	t.Run("verified", func(t *testing.T) {
		// The history's verdict is not taken: the signature's is.
		w.forge(t, w.history(t), func(es []deploy.Entry) { entry(es, "1.1.0").Verdict = "FAIL" })
		rep, err := w.tg.Rollback(t.Context(), deploy.RollbackInput{Name: "diabetes", Namespace: w.ns, To: "1.1.0", Trust: deploy.Trust{Verifier: w.verify, Repository: w.repo}})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Current.Verdict != "PASS" || rep.Current.Image != v2 || w.deployment(t).Spec.Template.Spec.Containers[0].Image != v2 {
			t.Fatalf("restored %+v", rep.Current)
		}
	})
}

// TestAutomaticRollbackVerifiesItsTarget: a release that fails is rolled
// back only to a release that verifies; a forged "current" entry leaves
// the failed release as it is, and the error names both.
func TestAutomaticRollbackVerifiesItsTarget(t *testing.T) {
	w := newSignedWorld(t)
	cfg := testConfig()
	v1 := w.publish(t, w.repo, "diabetes", "1.0.0", w.keys, pass)
	if _, err := w.deploy(t, cfg, "1.0.0", v1); err != nil {
		t.Fatal(err)
	}
	original := w.history(t)
	unsigned := w.publish(t, w.repo, "diabetes", "0.9.0", w.keys, ocitest.Published{Verdict: modelgate.Pass, Unsigned: true})
	w.forge(t, original, func(es []deploy.Entry) { es[0].Image, es[0].Version = unsigned, "0.9.0" })

	broken := cfg
	broken.ProgressDeadlineSeconds = 3
	broken.PodAnnotations = map[string]string{k8stest.NeverReadyAnnotation: "true"}
	v2 := w.publish(t, w.repo, "diabetes", "1.1.0", w.keys, pass)
	rep, err := w.deploy(t, broken, "1.1.0", v2)
	if !errors.Is(err, deploy.ErrProgressDeadline) || !errors.Is(err, deploy.ErrNotVerified) || !errors.Is(err, sign.ErrRefused) || errors.Is(err, deploy.ErrRolledBack) {
		t.Fatalf("broken deploy over a forged history: %v, want ErrProgressDeadline and a refused rollback", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "1.1.0") || !strings.Contains(msg, "0.9.0") {
		t.Errorf("the error names not both releases: %v", err)
	}
	if rep.Result != deploy.ResultFailed {
		t.Errorf("result %s, want %s", rep.Result, deploy.ResultFailed)
	}
	if img := w.deployment(t).Spec.Template.Spec.Containers[0].Image; img != v2 {
		t.Errorf("the Deployment runs %s, want the failed release %s left as it is", img, v2)
	}
	if h := w.history(t); strings.Contains(h, deploy.ActionAutoRollback) {
		t.Errorf("history records an automatic rollback: %s", h)
	}

	// With the history as it was, the same failure restores 1.0.0, verified.
	w.forge(t, original, nil)
	v3 := w.publish(t, w.repo, "diabetes", "1.2.0", w.keys, pass)
	rep, err = w.deploy(t, broken, "1.2.0", v3)
	if !errors.Is(err, deploy.ErrRolledBack) {
		t.Fatalf("broken deploy: %v, want ErrRolledBack", err)
	}
	if rep.Current == nil || rep.Current.Image != v1 || rep.Current.Verdict != "PASS" || w.deployment(t).Spec.Template.Spec.Containers[0].Image != v1 {
		t.Fatalf("after the rollback: current %+v", rep.Current)
	}
	if a := w.deployment(t).Spec.Template.Annotations[k8stest.NeverReadyAnnotation]; a != "" {
		t.Errorf("the restored template carries the failed release's annotation")
	}
}

// TestRollbackNeverAppliesTheRecordedConfig: the pod template comes from
// the ReplicaSet that ran the restored image or, when it is gone, from the
// live Deployment with only the image and version changed; never from the
// configuration the history records.
func TestRollbackNeverAppliesTheRecordedConfig(t *testing.T) {
	c := k8stest.Start(t)
	ns := c.Namespace(t)
	tg := target(t, c)
	cfg := testConfig()
	for _, v := range []string{"1.0.0", "1.1.0"} {
		deployOK(t, tg, ns, cfg, rel(v))
	}
	w := &signedWorld{c: c, ns: ns, tg: tg}
	inject := func(es []deploy.Entry) {
		for i := range es {
			es[i].Config.PodAnnotations = map[string]string{"injected": "annotation"}
			es[i].Config.PodLabels = map[string]string{"injected": "label"}
			es[i].Config.Replicas = 7
		}
	}
	check := func(t *testing.T, version string) {
		t.Helper()
		d := w.deployment(t)
		tmpl := d.Spec.Template
		if tmpl.Annotations["injected"] != "" || tmpl.Labels["injected"] != "" || *d.Spec.Replicas != cfg.Replicas {
			t.Errorf("the recorded config reached the Deployment: annotations %v, labels %v, replicas %d", tmpl.Annotations, tmpl.Labels, *d.Spec.Replicas)
		}
		if tmpl.Spec.Containers[0].Image != image(version) || tmpl.Annotations[deploy.AnnotationVersion] != version || d.Annotations[deploy.AnnotationVersion] != version {
			t.Errorf("restored image %s, version marks %q/%q; want %s", tmpl.Spec.Containers[0].Image, tmpl.Annotations[deploy.AnnotationVersion], d.Annotations[deploy.AnnotationVersion], version)
		}
	}

	t.Run("from the replica set", func(t *testing.T) {
		w.forge(t, w.history(t), inject)
		if _, err := tg.Rollback(t.Context(), deploy.RollbackInput{Name: "diabetes", Namespace: ns, To: "1.0.0", Trust: insecure}); err != nil {
			t.Fatal(err)
		}
		check(t, "1.0.0")
	})

	t.Run("from the live template", func(t *testing.T) {
		rss, err := c.Client.AppsV1().ReplicaSets(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range rss.Items {
			if rs.Spec.Template.Spec.Containers[0].Image == image("1.1.0") {
				if err := c.Client.AppsV1().ReplicaSets(ns).Delete(t.Context(), rs.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		w.forge(t, w.history(t), inject)
		if _, err := tg.Rollback(t.Context(), deploy.RollbackInput{Name: "diabetes", Namespace: ns, To: "1.1.0", Trust: insecure}); err != nil {
			t.Fatal(err)
		}
		check(t, "1.1.0")
	})
}
