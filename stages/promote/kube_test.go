package promote_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/modelci/modelci/internal/k8stest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/promote"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// kubeWorld is a world whose prod environment is a namespace of a real control plane.
type kubeWorld struct {
	*world
	c      *k8stest.Cluster
	tg     *deploy.Target
	prodNS string
}

func newKubeWorld(t *testing.T) *kubeWorld {
	t.Helper()
	c := k8stest.Start(t)
	tg, err := deploy.NewTarget(c.Kubeconfig, k8stest.Context)
	if err != nil {
		t.Fatal(err)
	}
	w := &kubeWorld{world: newWorld(t), c: c, tg: tg, prodNS: c.Namespace(t)}
	// The staging namespace exists as in a real setup, though promote only reads the registry.
	w.staging.Name = c.Namespace(t)
	return w
}

func (w *kubeWorld) in(version string) promote.In {
	cfg := deploy.Defaults()
	cfg.Replicas = 2
	cfg.ProgressDeadlineSeconds = 30
	return w.inWith(version, cfg)
}

// inWith deploys with cfg; an automatic rollback verifies its target with
// the world's key, in prod's repository.
func (w *kubeWorld) inWith(version string, cfg deploy.Config) promote.In {
	in := w.world.in(version)
	in.Cluster = promote.NewKubeCluster(w.tg, w.prodNS, cfg, w.trust())
	return in
}

// trust is prod's verification of a release its history names.
func (w *kubeWorld) trust() deploy.Trust {
	return deploy.Trust{Verifier: pipeline.Verifier(sign.VerifyPolicy{KeyPath: w.key.pubPath, RequireGate: true}), Repository: w.prod.Repository}
}

// prodImage is the image of prod's predict Deployment, "" when there is none.
func (w *kubeWorld) prodImage(t *testing.T) string {
	t.Helper()
	d, err := w.c.Client.AppsV1().Deployments(w.prodNS).Get(t.Context(), deploy.WorkloadName("diabetes", deploy.RolePredict), metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

func (w *kubeWorld) history(t *testing.T) []deploy.Entry {
	t.Helper()
	rep, err := w.tg.History(t.Context(), "diabetes", w.prodNS)
	if errors.Is(err, deploy.ErrNoRelease) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep.History
}

func promoteCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestKubePromote(t *testing.T) {
	w := newKubeWorld(t)
	d1 := w.publish(t, "1.0.0", modelgate.Pass, true)
	w.publish(t, "1.1.0", modelgate.Inconclusive, true)
	ctx := promoteCtx(t)

	res, err := promote.Promote(ctx, w.in("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	want := w.prod.Repository + "@" + d1
	if res.Image != want || w.prodImage(t) != want {
		t.Fatalf("result image %s, prod Deployment runs %q; want %s", res.Image, w.prodImage(t), want)
	}
	h := w.history(t)
	if len(h) != 1 || h[0].Version != "1.0.0" || h[0].Reason != "release 1.0.0" || h[0].Who != "tester" || h[0].Verdict != "PASS" || h[0].Status != deploy.StatusDeployed {
		t.Fatalf("history = %+v", h)
	}
	if _, err := w.c.Client.CoordinationV1().Leases(w.prodNS).Get(ctx, deploy.LeaseName("diabetes"), metav1.GetOptions{}); err == nil {
		t.Fatal("the lease is still held after the promotion")
	}

	// A refusal (INCONCLUSIVE without approval) changes nothing in prod.
	_, err = promote.Promote(ctx, w.in("1.1.0"))
	if !errors.Is(err, promote.ErrNeedsApproval) || !promote.Refused(err) {
		t.Fatalf("promote 1.1.0: %v, want ErrNeedsApproval", err)
	}
	if w.prodImage(t) != want || len(w.history(t)) != 1 || slices.Contains(w.prodTags(t), "1.1.0") {
		t.Fatalf("after a refusal prod runs %s with %d history entries and tags %v", w.prodImage(t), len(w.history(t)), w.prodTags(t))
	}
}

// blockingCluster holds the real lease at the deploy step until gate closes,
// so that a second promotion meets a held lease at a known point.
type blockingCluster struct {
	promote.Cluster
	entered, gate chan struct{}
}

func (b blockingCluster) Lock(ctx context.Context, app, who string) (promote.Locked, error) {
	l, err := b.Cluster.Lock(ctx, app, who)
	if err != nil {
		return nil, err
	}
	return blockingLocked{Locked: l, b: b}, nil
}

type blockingLocked struct {
	promote.Locked
	b blockingCluster
}

func (l blockingLocked) Deploy(ctx context.Context, rel promote.Release, strategy string) error {
	close(l.b.entered)
	select {
	case <-l.b.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.Locked.Deploy(ctx, rel, strategy)
}

func TestKubePromoteRace(t *testing.T) {
	w := newKubeWorld(t)
	d1 := w.publish(t, "1.0.0", modelgate.Pass, true)
	w.publish(t, "1.1.0", modelgate.Pass, true)
	ctx := promoteCtx(t)

	first := w.in("1.0.0")
	b := blockingCluster{Cluster: first.Cluster, entered: make(chan struct{}), gate: make(chan struct{})}
	first.Cluster = b
	done := make(chan error, 1)
	go func() {
		_, err := promote.Promote(ctx, first)
		done <- err
	}()
	select {
	case <-b.entered:
	case err := <-done:
		t.Fatalf("first promotion ended before deploying: %v", err)
	}

	_, err := promote.Promote(ctx, w.in("1.1.0"))
	if !errors.Is(err, promote.ErrConflict) || !errors.Is(err, deploy.ErrConflict) {
		t.Fatalf("second promotion: %v, want ErrConflict", err)
	}
	if slices.Contains(w.prodTags(t), "1.1.0") {
		t.Fatalf("the refused promotion copied 1.1.0 to prod: %v", w.prodTags(t))
	}
	close(b.gate)
	if err := <-done; err != nil {
		t.Fatalf("first promotion: %v", err)
	}
	if got, want := w.prodImage(t), w.prod.Repository+"@"+d1; got != want {
		t.Fatalf("prod runs %s, want %s", got, want)
	}
	if h := w.history(t); len(h) != 1 || h[0].Version != "1.0.0" {
		t.Fatalf("history = %+v, want one 1.0.0 entry", h)
	}
}

func TestKubePromoteRerun(t *testing.T) {
	for _, step := range []string{promote.StepCopy, promote.StepAttest, promote.StepDeploy} {
		t.Run(step, func(t *testing.T) {
			w := newKubeWorld(t)
			d := w.publish(t, "1.0.0", modelgate.Pass, true)
			ctx := promoteCtx(t)
			in := w.in("1.0.0")
			in.StopAfter = step
			if _, err := promote.Promote(ctx, in); !errors.Is(err, promote.ErrStopped) {
				t.Fatalf("stopped promotion: %v, want ErrStopped", err)
			}
			deployed := step == promote.StepDeploy
			if n := len(w.history(t)); (n == 1) != deployed {
				t.Fatalf("stopped after %s: %d history entries", step, n)
			}

			res, err := promote.Promote(ctx, w.in("1.0.0"))
			if err != nil {
				t.Fatalf("rerun: %v", err)
			}
			want := w.prod.Repository + "@" + d
			if w.prodImage(t) != want {
				t.Fatalf("prod runs %q, want %s", w.prodImage(t), want)
			}
			if h := w.history(t); len(h) != 1 || h[0].Image != want {
				t.Fatalf("history after the rerun = %+v, want one entry", h)
			}
			last := res.Steps[len(res.Steps)-1]
			if deployed != (last.Skipped != "") {
				t.Fatalf("rerun deploy step = %+v", last)
			}
			got, err := registry.Resolve(ctx, w.prod.Repository+":1.0.0")
			if err != nil || got.String() != d {
				t.Fatalf("prod 1.0.0 = %v, %v", got, err)
			}
			// One promotion, one attestation: the rerun keeps the stopped run's (if it got that far).
			if ps := promotions(t, res.Image, w.key.pub); len(ps) != 1 || ps[0].To.Environment != "prod" {
				t.Fatalf("promotion attestations = %+v, want one to prod", ps)
			}
			if attest := res.Steps[3]; attest.Name != promote.StepAttest || (attest.Skipped != "") != (step != promote.StepCopy) {
				t.Fatalf("rerun attest step = %+v after stopping after %s", attest, step)
			}
		})
	}
}

// TestKubePromoteAfterRollback: promoting a digest again after prod rolled
// back from it is a new promotion with an attestation of its own.
func TestKubePromoteAfterRollback(t *testing.T) {
	w := newKubeWorld(t)
	w.publish(t, "1.0.0", modelgate.Pass, true)
	w.publish(t, "1.1.0", modelgate.Pass, true)
	ctx := promoteCtx(t)
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if _, err := promote.Promote(ctx, w.in(v)); err != nil {
			t.Fatalf("promote %s: %v", v, err)
		}
	}
	if _, err := w.tg.Rollback(ctx, deploy.RollbackInput{Name: "diabetes", Namespace: w.prodNS, Reason: "incident", Who: "tester", Trust: w.trust()}); err != nil {
		t.Fatal(err)
	}
	res, err := promote.Promote(ctx, w.in("1.1.0"))
	if err != nil {
		t.Fatalf("promote 1.1.0 again: %v", err)
	}
	if attest := res.Steps[3]; attest.Skipped != "" {
		t.Fatalf("attest step of the second promotion = %+v, want it done", attest)
	}
	ps := promotions(t, res.Image, w.key.pub)
	if len(ps) != 2 || ps[0].PreviousVersion != "1.0.0" || ps[1].PreviousVersion != "1.0.0" || ps[0].PreviousRevision == ps[1].PreviousRevision {
		t.Fatalf("promotion attestations of 1.1.0 = %+v, want two from distinct 1.0.0 revisions", ps)
	}
	if w.prodImage(t) != res.Image {
		t.Fatalf("prod runs %s, want %s", w.prodImage(t), res.Image)
	}
}

// TestKubePromoteRollsBackToAVerifiedRelease: a promoted release that never
// becomes ready is rolled back to prod's previous release, which is
// verified with prod's policy first (promote's own verification covers only
// the promoted image).
func TestKubePromoteRollsBackToAVerifiedRelease(t *testing.T) {
	w := newKubeWorld(t)
	w.publish(t, "1.0.0", modelgate.Pass, true)
	w.publish(t, "1.1.0", modelgate.Pass, true)
	ctx := promoteCtx(t)
	first, err := promote.Promote(ctx, w.in("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	broken := deploy.Defaults()
	broken.Replicas, broken.ProgressDeadlineSeconds = 2, 3
	broken.PodAnnotations = map[string]string{k8stest.NeverReadyAnnotation: "true"}
	_, err = promote.Promote(ctx, w.inWith("1.1.0", broken))
	if !errors.Is(err, deploy.ErrRolledBack) || !errors.Is(err, deploy.ErrProgressDeadline) {
		t.Fatalf("promote of a release that never becomes ready: %v, want ErrRolledBack", err)
	}
	if got := w.prodImage(t); got != first.Image {
		t.Fatalf("prod runs %s after the rollback, want %s", got, first.Image)
	}
	h := w.history(t)
	last := h[len(h)-1]
	if last.Action != deploy.ActionAutoRollback || last.Version != "1.0.0" || last.Verdict != "PASS" {
		t.Fatalf("last history entry %+v, want an auto-rollback to a verified 1.0.0", last)
	}
}
