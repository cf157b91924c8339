package promote_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/promote"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
)

func TestPromote(t *testing.T) {
	w := newWorld(t)
	digest := w.publish(t, "1.0.0", modelgate.Pass, true)
	res, err := promote.Promote(t.Context(), w.in("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	got, err := registry.Resolve(ctx, w.prod.Repository+":1.0.0")
	if err != nil || got.String() != digest {
		t.Fatalf("prod 1.0.0 = %v, %v; want the staging digest %s", got, err, digest)
	}
	hex := strings.TrimPrefix(digest, "sha256:")
	for _, tag := range []string{"1.0.0", "sha256-" + hex + ".sig", "sha256-" + hex + ".att", "sha256-" + hex + ".metrics"} {
		if !slices.Contains(w.prodTags(t), tag) {
			t.Errorf("prod lacks tag %s (has %v)", tag, w.prodTags(t))
		}
	}
	// The copied signature and gate attestation verify in prod, and the metrics travel.
	if _, err := sign.Verify(ctx, res.Image, sign.VerifyPolicy{KeyPath: w.key.pubPath, RequireGate: true}); err != nil {
		t.Fatalf("verify in prod: %v", err)
	}
	if _, err := sign.FetchMetrics(ctx, res.Image, sign.VerifyPolicy{KeyPath: w.key.pubPath}); err != nil {
		t.Fatalf("metrics in prod: %v", err)
	}
	ps := promotions(t, res.Image, w.key.pub)
	if len(ps) != 1 {
		t.Fatalf("%d promotion attestations, want 1", len(ps))
	}
	p := ps[0]
	if p.From.Environment != "staging" || p.To.Environment != "prod" || p.Who != "tester" || p.Reason != "release 1.0.0" ||
		p.Model.Version != "1.0.0" || p.Verdict != modelgate.Pass || p.PreviousVersion != "" || p.When.IsZero() {
		t.Fatalf("promotion predicate = %+v", p)
	}
	cur, n := w.cluster.snapshot()
	if n != 1 || cur.Image != w.prod.Repository+"@"+digest || cur.Reason != "release 1.0.0" || cur.Verdict != "PASS" {
		t.Fatalf("cluster serves %+v after %d deploys", cur, n)
	}
	var names []string
	for _, s := range res.Steps {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "resolve,verify,copy,attest,deploy" {
		t.Fatalf("steps = %v", names)
	}

	// The next version records the previous one.
	w.publish(t, "1.1.0", modelgate.Pass, true)
	res, err = promote.Promote(ctx, w.in("1.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if ps := promotions(t, res.Image, w.key.pub); len(ps) != 1 || ps[0].PreviousVersion != "1.0.0" {
		t.Fatalf("promotion of 1.1.0 = %+v, want previous 1.0.0", ps)
	}
}

func TestPromoteRefusals(t *testing.T) {
	tests := []struct {
		name    string
		version string
		verdict modelgate.Verdict
		signed  bool
		current string // the version prod serves already
		edit    func(*promote.In)
		want    error
	}{
		{name: "unsigned", version: "1.0.0", verdict: modelgate.Pass, want: promote.ErrNotVerified},
		{name: "no gate attestation", version: "1.0.0", signed: true, want: promote.ErrNotVerified},
		{name: "FAIL verdict", version: "1.0.0", verdict: modelgate.Fail, signed: true, want: promote.ErrNotVerified},
		{name: "constraint violated", version: "2.0.0", verdict: modelgate.Pass, signed: true, want: modelgate.ErrConstraint},
		{name: "downgrade", version: "1.0.0", verdict: modelgate.Pass, signed: true, current: "1.2.0", want: promote.ErrDowngrade},
		{name: "same version", version: "1.2.0", verdict: modelgate.Pass, signed: true, current: "1.2.0", want: promote.ErrVersionConflict},
		{name: "inconclusive without approval", version: "1.0.0", verdict: modelgate.Inconclusive, signed: true, want: promote.ErrNeedsApproval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.publish(t, tt.version, tt.verdict, tt.signed)
			if tt.current != "" {
				w.cluster.current = promote.Release{Name: "diabetes", Version: tt.current, Image: w.prod.Repository + "@sha256:" + strings.Repeat("0", 64)}
			}
			before, _ := w.cluster.snapshot()
			in := w.in(tt.version)
			if tt.edit != nil {
				tt.edit(&in)
			}
			_, err := promote.Promote(t.Context(), in)
			if !errors.Is(err, tt.want) || !promote.Refused(err) {
				t.Fatalf("error = %v, want %v (a refusal)", err, tt.want)
			}
			if tags := w.prodTags(t); len(tags) != 0 {
				t.Fatalf("prod repository changed: %v", tags)
			}
			if after, n := w.cluster.snapshot(); after != before || n != 0 {
				t.Fatalf("prod cluster changed: %+v after %d deploys", after, n)
			}
		})
	}
}

func TestPromoteApproval(t *testing.T) {
	w := newWorld(t)
	w.publish(t, "1.0.0", modelgate.Inconclusive, true)
	in := w.in("1.0.0")
	in.Approve, in.Reason = true, ""
	if _, err := promote.Promote(t.Context(), in); err == nil || promote.Refused(err) {
		t.Fatalf("approval without a reason: error = %v, want a usage error", err)
	}
	in.Reason = "latency win outweighs the noisy loss interval"
	res, err := promote.Promote(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	ps := promotions(t, res.Image, w.key.pub)
	if len(ps) != 1 || !ps[0].Approved || ps[0].Verdict != modelgate.Inconclusive || ps[0].Reason != in.Reason {
		t.Fatalf("promotion predicate = %+v, want an approved INCONCLUSIVE with the reason", ps)
	}
	// An environment that accepts INCONCLUSIVE needs no approval.
	w2 := newWorld(t)
	w2.prod.Require = modelgate.Inconclusive
	w2.publish(t, "1.0.0", modelgate.Inconclusive, true)
	if _, err := promote.Promote(t.Context(), w2.in("1.0.0")); err != nil {
		t.Fatal(err)
	}
}

// TestPromoteInterrupted stops a promotion right after the copy, as a killed
// process would, then re-runs it: it converges, keeps the earlier attestation
// and deploys once.
func TestPromoteInterrupted(t *testing.T) {
	w := newWorld(t)
	digest := w.publish(t, "1.0.0", modelgate.Pass, true)
	ctx, cancel := context.WithCancel(t.Context())
	in := w.in("1.0.0")
	in.StopAfter = promote.StepCopy
	_, err := promote.Promote(ctx, in)
	cancel()
	if !errors.Is(err, promote.ErrStopped) {
		t.Fatalf("error = %v, want ErrStopped", err)
	}
	if got, err := registry.Resolve(t.Context(), w.prod.Repository+":1.0.0"); err != nil || got.String() != digest {
		t.Fatalf("prod 1.0.0 after the copy = %v, %v", got, err)
	}
	if _, n := w.cluster.snapshot(); n != 0 {
		t.Fatalf("%d deploys before the deploy step", n)
	}
	if _, err := promote.Promote(t.Context(), w.in("1.0.0")); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	// A third run finds prod serving the digest: nothing to deploy.
	res, err := promote.Promote(t.Context(), w.in("1.0.0"))
	if err != nil {
		t.Fatalf("third run: %v", err)
	}
	if last := res.Steps[len(res.Steps)-1]; last.Name != promote.StepDeploy || last.Skipped == "" {
		t.Fatalf("third run's deploy step = %+v, want skipped", last)
	}
	if _, n := w.cluster.snapshot(); n != 1 {
		t.Fatalf("%d deploys, want 1", n)
	}
	// The gate attestation survived every copy, and the three runs made one promotion.
	if _, err := sign.Verify(t.Context(), res.Image, sign.VerifyPolicy{KeyPath: w.key.pubPath, RequireGate: true}); err != nil {
		t.Fatal(err)
	}
	if ps := promotions(t, res.Image, w.key.pub); len(ps) != 1 {
		t.Fatalf("%d promotion attestations, want 1 (re-runs keep the first)", len(ps))
	}
}

// TestPromoteRace runs a second promotion while the first holds the lease.
func TestPromoteRace(t *testing.T) {
	w := newWorld(t)
	w.publish(t, "1.0.0", modelgate.Pass, true)
	w.publish(t, "1.1.0", modelgate.Pass, true)
	w.cluster.gate, w.cluster.entered = make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := promote.Promote(t.Context(), w.in("1.0.0"))
		first <- err
	}()
	<-w.cluster.entered
	tags := w.prodTags(t)
	_, err := promote.Promote(t.Context(), w.in("1.1.0"))
	if !errors.Is(err, promote.ErrConflict) {
		t.Fatalf("second promotion: error = %v, want ErrConflict", err)
	}
	if after := w.prodTags(t); !slices.Equal(after, tags) {
		t.Fatalf("the losing promotion changed prod: %v → %v", tags, after)
	}
	close(w.cluster.gate)
	if err := <-first; err != nil {
		t.Fatalf("first promotion: %v", err)
	}
	if cur, n := w.cluster.snapshot(); n != 1 || cur.Version != "1.0.0" {
		t.Fatalf("prod serves %+v after %d deploys", cur, n)
	}
}

// TestPromoteVerifiesTheCopies: the copies are verified as the target
// holds them before the version tag is written. A copy keeps a cosign tag
// the target already holds; one that is not the image's own (here another
// version's gate attestation) is refused, and the target gets no version
// to deploy and deploys nothing.
func TestPromoteVerifiesTheCopies(t *testing.T) {
	w := newWorld(t)
	d := w.publish(t, "1.0.0", modelgate.Pass, true)
	other := w.publish(t, "1.1.0", modelgate.Pass, true)
	att := func(digest string) string { return strings.Replace(digest, ":", "-", 1) + ".att" }
	if _, err := registry.Copy(t.Context(), w.staging.Repository+":"+att(other), w.prod.Repository, registry.WithTags(att(d))); err != nil {
		t.Fatal(err)
	}
	_, err := promote.Promote(t.Context(), w.in("1.0.0"))
	if !errors.Is(err, promote.ErrNotVerified) || !promote.Refused(err) || !strings.Contains(err.Error(), w.prod.Repository) {
		t.Fatalf("promoting onto a foreign attestation in prod: %v; want %v naming prod's repository", err, promote.ErrNotVerified)
	}
	if slices.Contains(w.prodTags(t), "1.0.0") {
		t.Fatalf("prod has the version tag after a refused copy: %v", w.prodTags(t))
	}
	if _, n := w.cluster.snapshot(); n != 0 {
		t.Fatalf("%d deploys after a refused copy", n)
	}
}
