// Package deploy ships a model image to Kubernetes the way a careful release engineer would:
// by digest, verified, under a Lease that keeps writers apart, with server-side apply, watched
// until rolled out, as a rolling update or a canary stepped by replica ratio, and rolled back on
// its own when it fails. The release history lives in the cluster (a ConfigMap per app), so
// status, history and rollback work from any machine.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// ReportSchema identifies the JSON form of Report, shared by deploy, status, history and rollback.
const ReportSchema = "modelci.dev/deploy-report/v1"

// Report results.
const (
	ResultRolledOut  = "rolled-out"
	ResultRolledBack = "rolled-back"
	ResultAborted    = "aborted"
	ResultFailed     = "failed"
	ResultRendered   = "rendered"
)

// Unverified is the verdict recorded when verification was skipped.
const Unverified = "UNVERIFIED"

// Verifier checks an image's signature and attestations before it is deployed. stages/sign
// provides the implementation; the CLI adapts it.
type Verifier interface {
	Verify(ctx context.Context, ref string) (Verification, error)
}

// Verification is what a Verifier found.
type Verification struct {
	// Verdict is the gate verdict attested for the image (PASS, INCONCLUSIVE).
	Verdict string
	// Signer describes who signed, for the record.
	Signer string
	// Name and Version are the model's, from the verified image's annotations; they name the
	// release when the caller did not.
	Name, Version string
}

// Input is one deploy.
type Input struct {
	Config  Config
	Release Release
	// Namespace overrides Config.Namespace when set.
	Namespace       string
	CreateNamespace bool
	// Verifier runs before anything else; nil is refused unless InsecureSkipVerify.
	// It checks the model: the image, or with model_source volume the
	// release's ModelPack artifact (signature and gate attestation).
	Verifier Verifier
	// RuntimeVerifier checks the runtime image a model_source volume
	// release runs (a signature: it holds no model to gate); required then
	// with Verifier.
	RuntimeVerifier    Verifier
	InsecureSkipVerify bool
	// Rollback checks the previous release before an automatic rollback
	// restores it. Its zero value takes Verifier and InsecureSkipVerify, and
	// the repository the previous release runs from.
	Rollback Trust
	// Analysis decides canary steps; nil means Prometheus when analysis.prometheus.url is
	// set, else PodsReady.
	Analysis Analysis
	// Lease, when set, is the app's Lease the caller already holds (Target.Acquire): Deploy
	// runs under it and leaves it held.
	Lease *Lease
	// Reason says why, for the history entry of a release that rolls out (a promotion's reason).
	Reason string
}

// Report is the result of deploy, status, history and rollback (one JSON schema).
type Report struct {
	Schema    string `json:"schema"`
	Action    string `json:"action"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Context   string `json:"context,omitempty"`
	Result    string `json:"result,omitempty"`
	// Current is the release serving now.
	Current *Entry `json:"current,omitempty"`
	// Previous is the release that served before this action.
	Previous  *Entry     `json:"previous,omitempty"`
	Workloads []Workload `json:"workloads,omitempty"`
	History   []Entry    `json:"history,omitempty"`
	// Files are the manifests written by a dry run.
	Files []string `json:"files,omitempty"`
	Error string   `json:"error,omitempty"`
}

// Workload is the live state of one of the app's Deployments.
type Workload struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Track   string `json:"track"`
	Version string `json:"version"`
	Image   string `json:"image"`
	// Model is the ModelPack artifact the pods mount (model_source: volume).
	Model     string `json:"model,omitempty"`
	Replicas  int32  `json:"replicas"`
	Updated   int32  `json:"updated"`
	Ready     int32  `json:"ready"`
	Available int32  `json:"available"`
}

// bindVerified takes the release's verdict, name and version from the
// verification: a name or version given that differs from the signed
// annotations is refused, so an image cannot be deployed as another model.
func bindVerified(rel *Release, v Verification) error {
	for _, f := range []struct{ field, given, signed string }{{"name", rel.Name, v.Name}, {"version", rel.Version, v.Version}} {
		if f.given != "" && f.given != f.signed {
			return fmt.Errorf("%w: model %s %q given, the image is signed as %q", ErrReleaseMismatch, f.field, f.given, f.signed)
		}
	}
	rel.Verdict, rel.Name, rel.Version = v.Verdict, v.Name, v.Version
	return nil
}

// Deploy verifies in.Release, takes the app's Lease, rolls the release out with the configured
// strategy and records it in the history. A release that fails is rolled back to the previous
// one (the error then wraps ErrRolledBack and the cause). The report is returned with errors
// too, saying what was left running.
func (t *Target) Deploy(ctx context.Context, in Input) (*Report, error) {
	cfg, rel := in.Config, in.Release
	ns := in.Namespace
	if ns == "" {
		ns = cfg.Namespace
	}
	cfg.Namespace = ns
	if rel.Who == "" {
		rel.Who = Who()
	}
	rep := &Report{Schema: ReportSchema, Action: ActionDeploy, Name: rel.Name, Namespace: ns, Context: t.Context}
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	if err := CheckImage(rel.Image); err != nil {
		return rep, err
	}
	if rel.Model != "" {
		if err := CheckImage(rel.Model); err != nil {
			return rep, fmt.Errorf("model artifact: %w", err)
		}
	}
	if err := checkSource(cfg, rel); err != nil {
		return rep, err
	}
	switch {
	case in.Verifier != nil:
		if err := verifyRelease(ctx, &rel, in.Verifier, in.RuntimeVerifier); err != nil {
			return rep, err
		}
	case in.InsecureSkipVerify:
		t.logf("WARNING: deploying %s WITHOUT verifying its signature or gate verdict (--insecure-skip-verify)", rel.describe())
		rel.Verdict = Unverified
	default:
		return rep, fmt.Errorf("deploy %s: %w: pass a key or a certificate identity, or --insecure-skip-verify", rel.describe(), ErrNoVerifier)
	}
	rep.Name = rel.Name
	if err := rel.check(); err != nil {
		return rep, err
	}
	if err := t.ensureNamespace(ctx, ns, in.CreateNamespace); err != nil {
		return rep, err
	}
	if in.Lease != nil {
		if err := in.Lease.check(t, ns, rel.Name); err != nil {
			return rep, err
		}
	} else {
		l, err := t.acquire(ctx, ns, rel.Name, rel.Who)
		if err != nil {
			return rep, err
		}
		defer l.release()
	}
	h, err := t.loadHistory(ctx, ns, rel.Name)
	if err != nil {
		return rep, err
	}
	prev := h.current()
	if prev != nil {
		p := *prev
		rep.Previous = &p
	}
	trust := in.Rollback
	if trust.Verifier == nil && !trust.InsecureSkipVerify {
		trust.Verifier, trust.RuntimeVerifier, trust.InsecureSkipVerify = in.Verifier, in.RuntimeVerifier, in.InsecureSkipVerify
	}
	// What runs now, read before the rollout replaces it: a rollback
	// restores from the repository it came from.
	live, err := t.LiveImage(ctx, ns, rel.Name)
	if err != nil {
		return rep, err
	}
	repo, err := trust.repository(live, rel.Image)
	if err != nil {
		return rep, err
	}
	analysis := in.Analysis
	if analysis == nil {
		if cfg.Analysis.Prometheus.URL != "" {
			analysis = NewPrometheus(cfg.Analysis)
		} else {
			analysis = PodsReady{Client: t.Client}
		}
	}
	strategy := cfg.Strategy
	if strategy == Canary && prev == nil {
		t.logf("%s has no release in %s yet: a canary needs a stable release, rolling out instead", rel.Name, ns)
		strategy = Rolling
	}
	t.logf("deploying %s %s (%s) to %s/%s", rel.Name, rel.Version, rel.describe(), t.Context, ns)
	var aborted bool
	if strategy == Canary {
		aborted, err = t.canary(ctx, ns, cfg, rel, analysis)
	} else {
		err = t.rolling(ctx, ns, cfg, rel)
	}
	entry := Entry{Version: rel.Version, Image: rel.Image, Model: rel.Model, Verdict: rel.Verdict, RunID: rel.RunID, Who: rel.Who, Action: ActionDeploy, Strategy: strategy, Config: cfg}
	// Record and restore even when ctx has ended: a half-done rollout must not stay so.
	after, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(cfg.ProgressDeadlineSeconds)*time.Second+time.Minute)
	defer cancel()
	if err == nil {
		entry.Status, entry.Reason = StatusDeployed, in.Reason
		e, rerr := t.record(after, ns, h, entry)
		rep.Current, rep.Result = &e, ResultRolledOut
		t.logf("%s %s rolled out in %s", rel.Name, rel.Version, ns)
		return rep, rerr
	}
	cause := err
	entry.Status, entry.Reason = StatusFailed, cause.Error()
	if aborted {
		entry.Status = StatusAborted
	}
	if _, rerr := t.record(after, ns, h, entry); rerr != nil {
		t.logf("warning: %v", rerr)
	}
	if prev == nil {
		rep.Result = ResultFailed
		return rep, fmt.Errorf("deploy %s %s: %w (no previous release to roll back to)", rel.Name, rel.Version, cause)
	}
	t.logf("%s %s failed: %v; restoring %s", rel.Name, rel.Version, cause, prev.Version)
	restore, err := trust.check(after, t.logf, rel.Name, repo, *prev)
	if err != nil {
		// Nothing the history names runs unverified: the failed release stays.
		rep.Result = ResultFailed
		return rep, fmt.Errorf("deploy %s %s: %w; the automatic rollback to %s was refused, %s %s is left as it is: %w", rel.Name, rel.Version, cause, prev.Version, rel.Name, rel.Version, err)
	}
	if err := t.restore(after, ns, restore, &cfg); err != nil {
		rep.Result = ResultFailed
		return rep, fmt.Errorf("deploy %s %s: %w; restoring %s also failed: %w", rel.Name, rel.Version, cause, prev.Version, err)
	}
	back := *prev
	back.Action, back.Time, back.Who, back.Verdict = ActionAutoRollback, time.Time{}, rel.Who, restore.Verdict
	back.Reason = fmt.Sprintf("automatic rollback from %s: %v", rel.Version, cause)
	e, rerr := t.record(after, ns, h, back)
	rep.Current, rep.Result = &e, ResultRolledBack
	if aborted {
		rep.Result = ResultAborted
	}
	return rep, errors.Join(fmt.Errorf("deploy %s %s: %w to %s: %w", rel.Name, rel.Version, ErrRolledBack, prev.Version, cause), rerr)
}

// verifyRelease verifies rel's model with v and binds the release to what
// it was signed as: the image, or the ModelPack artifact, whose runtime
// image runtime must then verify too.
func verifyRelease(ctx context.Context, rel *Release, v, runtime Verifier) error {
	subject := rel.Image
	if rel.Model != "" {
		subject = rel.Model
	}
	got, err := v.Verify(ctx, subject)
	if err != nil {
		return fmt.Errorf("verify %s: %w: %w", subject, ErrNotVerified, err)
	}
	if err := bindVerified(rel, got); err != nil {
		return fmt.Errorf("verify %s: %w: %w", subject, ErrNotVerified, err)
	}
	if rel.Model == "" {
		return nil
	}
	if runtime == nil {
		return fmt.Errorf("verify the runtime image %s: %w: no runtime verifier", rel.Image, ErrNoVerifier)
	}
	if _, err := runtime.Verify(ctx, rel.Image); err != nil {
		return fmt.Errorf("verify the runtime image %s: %w: %w", rel.Image, ErrNotVerified, err)
	}
	return nil
}

// describe names what a release runs: its image, and its model artifact.
func (r Release) describe() string {
	if r.Model == "" {
		return r.Image
	}
	return r.Image + " with model " + r.Model
}

// rolling applies the release and waits for every Deployment.
func (t *Target) rolling(ctx context.Context, ns string, cfg Config, rel Release) error {
	m, err := Render(cfg, rel, ns)
	if err != nil {
		return err
	}
	if err := t.applyAll(ctx, m); err != nil {
		return err
	}
	for _, d := range m.Deployments {
		if err := t.Wait(ctx, ns, d.Name); err != nil {
			return err
		}
	}
	return t.deleteCanaries(ctx, ns, rel.Name)
}

// canary steps the release through cfg.Steps. aborted reports a failure before the last step,
// when stable still runs the previous release.
func (t *Target) canary(ctx context.Context, ns string, cfg Config, rel Release, analysis Analysis) (aborted bool, err error) {
	n := cfg.Replicas
	if cfg.HPA.Max > 0 {
		// The HPA targets stable and would fight the step's replica counts: it is removed
		// for the canary and applied again with the release (or the restored one).
		for _, role := range cfg.Services {
			err := t.Client.AutoscalingV2().HorizontalPodAutoscalers(ns).Delete(ctx, WorkloadName(rel.Name, role), metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return true, fmt.Errorf("pause autoscaler of %s: %w", WorkloadName(rel.Name, role), classify(err))
			}
		}
	}
	pause, _ := cfg.pause()
	for _, p := range cfg.Steps {
		if p == 100 {
			break
		}
		c, s := Split(n, p)
		t.logf("canary step %d%%: %d canary, %d stable replicas", p, c, s)
		for _, role := range cfg.Services {
			d, err := renderDeployment(cfg, rel, ns, role, TrackCanary, c)
			if err != nil {
				return true, err
			}
			if err := t.apply(ctx, d); err != nil {
				return true, err
			}
			if err := t.Wait(ctx, ns, d.Name); err != nil {
				return true, err
			}
		}
		// Stable shrinks only once the canary is up, so capacity never drops below n.
		for _, role := range cfg.Services {
			name := WorkloadName(rel.Name, role)
			if err := t.scale(ctx, ns, name, s); err != nil {
				return true, err
			}
			if err := t.Wait(ctx, ns, name); err != nil {
				return true, err
			}
		}
		if pause > 0 {
			t.logf("canary step %d%%: pausing %s", p, pause)
			timer := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				timer.Stop()
				return true, fmt.Errorf("canary step %d%%: %w", p, ctx.Err())
			case <-timer.C:
			}
		}
		for _, role := range cfg.Services {
			name := WorkloadName(rel.Name, role)
			step := Step{Namespace: ns, App: rel.Name, Role: role, Stable: name, Canary: CanaryName(name), Percent: p, CanaryReplicas: c, StableReplicas: s, Release: rel}
			if err := analysis.Analyze(ctx, step); err != nil {
				return true, err
			}
		}
		t.logf("canary step %d%%: analysis passed", p)
	}
	t.logf("canary step 100%%: stable takes %s", rel.Version)
	if err := t.rolling(ctx, ns, cfg, rel); err != nil {
		return false, err
	}
	return false, nil
}

func (t *Target) applyAll(ctx context.Context, m *Manifests) error {
	for _, o := range m.Objects() {
		if err := t.apply(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// scale sets a Deployment's replicas alone (a partial apply would drop the fields it omits).
func (t *Target) scale(ctx context.Context, ns, name string, replicas int32) error {
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	_, err := t.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if err != nil {
		return fmt.Errorf("scale deployment %s/%s to %d: %w", ns, name, replicas, classify(err))
	}
	return nil
}

// deleteCanaries scales the app's canary Deployments to 0 and deletes them.
func (t *Target) deleteCanaries(ctx context.Context, ns, app string) error {
	deps, err := t.appDeployments(ctx, ns, app, TrackCanary)
	if err != nil {
		return err
	}
	for _, d := range deps {
		// Drained first, so that its pods leave the Service before the Deployment goes.
		if err := t.scale(ctx, ns, d.Name, 0); err != nil {
			return err
		}
		if err := t.Wait(ctx, ns, d.Name); err != nil {
			return err
		}
		err := t.Client.AppsV1().Deployments(ns).Delete(ctx, d.Name, metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationBackground)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete canary %s/%s: %w", ns, d.Name, classify(err))
		}
		t.logf("deployment %s: canary removed", d.Name)
	}
	return nil
}

func (t *Target) appDeployments(ctx context.Context, ns, app, track string) ([]appsv1.Deployment, error) {
	set := map[string]string{LabelName: app, LabelManagedBy: ManagedBy}
	if track != "" {
		set[LabelTrack] = track
	}
	list, err := t.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(set).String()})
	if err != nil {
		return nil, fmt.Errorf("deployments of %s in %s: %w", app, ns, classify(err))
	}
	return list.Items, nil
}

// RollbackInput is one rollback.
type RollbackInput struct {
	Name, Namespace string
	// To is the version to restore; empty means the release before the current one.
	To     string
	Reason string
	Who    string
	// Trust checks the release before anything changes: the history only
	// names it.
	Trust Trust
}

// Rollback restores a recorded release under the app's Lease, verified
// first (in.Trust; a refusal changes nothing), and records it.
func (t *Target) Rollback(ctx context.Context, in RollbackInput) (*Report, error) {
	rep := &Report{Schema: ReportSchema, Action: ActionRollback, Name: in.Name, Namespace: in.Namespace, Context: t.Context}
	if in.Who == "" {
		in.Who = Who()
	}
	if err := t.ensureNamespace(ctx, in.Namespace, false); err != nil {
		return rep, err
	}
	l, err := t.acquire(ctx, in.Namespace, in.Name, in.Who)
	if err != nil {
		return rep, err
	}
	defer l.release()
	h, err := t.loadHistory(ctx, in.Namespace, in.Name)
	if err != nil {
		return rep, err
	}
	cur := h.current()
	if cur == nil {
		return rep, fmt.Errorf("rollback %s in %s: %w", in.Name, in.Namespace, ErrNoRelease)
	}
	c := *cur
	rep.Previous = &c
	target := h.previous()
	if in.To != "" {
		target = h.version(in.To)
		if target == nil {
			return rep, fmt.Errorf("rollback %s in %s to %s: %w", in.Name, in.Namespace, in.To, ErrVersionNotFound)
		}
	} else if target == nil {
		return rep, fmt.Errorf("rollback %s in %s: %w before %s", in.Name, in.Namespace, ErrNoRelease, cur.Version)
	}
	live, err := t.LiveImage(ctx, in.Namespace, in.Name)
	if err != nil {
		return rep, err
	}
	repo, err := in.Trust.repository(live, "")
	if err != nil {
		return rep, err
	}
	restore, err := in.Trust.check(ctx, t.logf, in.Name, repo, *target)
	if err != nil {
		return rep, fmt.Errorf("rollback %s in %s to %s refused: %w", in.Name, in.Namespace, target.Version, err)
	}
	t.logf("rolling %s back from %s to %s in %s", in.Name, cur.Version, target.Version, in.Namespace)
	if err := t.restore(ctx, in.Namespace, restore, nil); err != nil {
		rep.Result = ResultFailed
		return rep, fmt.Errorf("rollback %s to %s: %w", in.Name, target.Version, err)
	}
	e := *target
	e.Action, e.Time, e.Who, e.RunID, e.Verdict = ActionRollback, time.Time{}, in.Who, "", restore.Verdict
	e.Reason = in.Reason
	if e.Reason == "" {
		e.Reason = "rollback from " + cur.Version
	}
	e, err = t.record(ctx, in.Namespace, h, e)
	rep.Current, rep.Result = &e, ResultRolledBack
	return rep, err
}

// Status reports the app's current release and its Deployments' live state.
func (t *Target) Status(ctx context.Context, app, ns string) (*Report, error) {
	rep := &Report{Schema: ReportSchema, Action: "status", Name: app, Namespace: ns, Context: t.Context}
	h, err := t.loadHistory(ctx, ns, app)
	if err != nil {
		return rep, err
	}
	rep.Current = h.current()
	rep.Previous = h.previous()
	deps, err := t.appDeployments(ctx, ns, app, "")
	if err != nil {
		return rep, err
	}
	for _, d := range deps {
		w := Workload{
			Name:      d.Name,
			Role:      d.Labels[LabelComponent],
			Track:     d.Labels[LabelTrack],
			Version:   d.Annotations[AnnotationVersion],
			Updated:   d.Status.UpdatedReplicas,
			Ready:     d.Status.ReadyReplicas,
			Available: d.Status.AvailableReplicas,
		}
		if d.Spec.Replicas != nil {
			w.Replicas = *d.Spec.Replicas
		}
		if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
			w.Image = cs[0].Image
		}
		w.Model = modelVolume(d.Spec.Template.Spec)
		rep.Workloads = append(rep.Workloads, w)
	}
	if rep.Current == nil && len(rep.Workloads) == 0 {
		return rep, fmt.Errorf("status of %s in %s: %w", app, ns, ErrNoRelease)
	}
	return rep, nil
}

// History reports the app's release history, oldest first.
func (t *Target) History(ctx context.Context, app, ns string) (*Report, error) {
	rep := &Report{Schema: ReportSchema, Action: "history", Name: app, Namespace: ns, Context: t.Context}
	h, err := t.loadHistory(ctx, ns, app)
	if err != nil {
		return rep, err
	}
	if len(h.Entries) == 0 {
		return rep, fmt.Errorf("history of %s in %s: %w", app, ns, ErrNoRelease)
	}
	rep.History = h.Entries
	rep.Current = h.current()
	return rep, nil
}
