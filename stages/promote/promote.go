// Package promote moves a verified model from one environment to the next:
// under the target environment's Lease it resolves NAME@VERSION in the source
// repository, verifies its signature and gate verdict, checks the
// environment's version constraint and that the version moves forward,
// copies the image by digest with its cosign signatures, attestations and
// metrics, verifies the copies, attests the promotion, and deploys it
// (ARCHITECTURE.md, "Kubernetes" and "Attestations"). A release that mounts
// its model (deploy.model_source volume) carries the image's ModelPack
// artifact and the runtime image it names along the same way.
package promote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
)

// PredicateType is the promotion attestation's in-toto predicate type.
const PredicateType = "https://modelci.dev/attestations/promotion/v1"

// Steps, in order; Result.Steps and In.StopAfter use these names.
const (
	StepResolve = "resolve"
	StepVerify  = "verify"
	StepCopy    = "copy"
	StepAttest  = "attest"
	StepDeploy  = "deploy"
)

// Environment is where a model is promoted from or to.
type Environment struct {
	Name       string
	Repository string // HOST[:PORT]/PATH
	// Constraint is a go-version constraint the version must satisfy (target only).
	Constraint string
	// Require is the weakest verdict accepted without approval: PASS (default) or INCONCLUSIVE.
	Require modelgate.Verdict
	// Strategy is the deploy strategy (rolling or canary).
	Strategy string
}

// Release is what an environment's cluster runs, or is to run.
type Release struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Image is HOST/REPO@sha256:…: the serving image, or with Model the
	// runtime image.
	Image string `json:"image"`
	// Model is the ModelPack artifact by digest a release that mounts its
	// model mounts (deploy.model_source volume).
	Model   string `json:"model,omitempty"`
	Verdict string `json:"verdict,omitempty"`
	Who     string `json:"who,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Revision is the release's number in the cluster's history (0 when
	// unknown); a rollback is a new revision.
	Revision int `json:"revision,omitempty"`
}

// Cluster is the target environment's cluster, as promote needs it.
// NewKubeCluster adapts a stages/deploy Target.
type Cluster interface {
	// Lock takes app's lease in the environment. A lease held by another
	// writer is an error wrapping ErrConflict, returned before any change.
	Lock(ctx context.Context, app, who string) (Locked, error)
}

// Locked is a Cluster whose lease for one app this promoter holds.
type Locked interface {
	// Current is the release the environment serves; a zero Release when none.
	Current(ctx context.Context) (Release, error)
	// Deploy rolls rel out with strategy and records it in the history.
	Deploy(ctx context.Context, rel Release, strategy string) error
	// Unlock releases the lease.
	Unlock()
}

// In is one promotion.
type In struct {
	Name, Version string
	From, To      Environment
	Cluster       Cluster
	// Verify says who must have signed; RequireGate and AllowInconclusive are
	// set by Promote.
	Verify sign.VerifyPolicy
	// Signer signs the promotion attestation.
	Signer sign.SignerSource
	// Approve accepts an INCONCLUSIVE verdict where the environment requires
	// PASS; it needs a Reason.
	Approve        bool
	AllowDowngrade bool
	Reason         string
	// Who promotes; empty means the caller's user@host.
	Who string
	// StopAfter ends the promotion with ErrStopped after the named step (a
	// test's stand-in for a killed process).
	StopAfter string
	// Volume promotes a release that mounts its model (deploy.model_source
	// volume): the version's serving image, its ModelPack artifact and the
	// runtime image the artifact names are verified and copied, and the
	// release deployed is the artifact mounted by the runtime image.
	Volume bool
	// Access is how both registries are reached, by the copy and by
	// verification and attestation alike; RegistryOptions and SignOptions
	// adjust it.
	Access          oci.Access
	RegistryOptions []registry.Option
	SignOptions     []sign.Option
	Now             func() time.Time
}

// Step is one step's outcome and duration.
type Step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
	// Skipped says why the step had nothing to do (a converging re-run).
	Skipped string `json:"skipped,omitempty"`
}

// Result is what Promote did.
type Result struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	From    string `json:"from"`
	To      string `json:"to"`
	Digest  string `json:"digest"`
	// Source and Image are the image by digest in the source and target repositories.
	Source string `json:"source"`
	Image  string `json:"image"`
	// Model and Runtime are, when In.Volume, the ModelPack artifact and the
	// runtime image by digest in the target repository: the release.
	Model   string            `json:"model,omitempty"`
	Runtime string            `json:"runtime,omitempty"`
	Verdict modelgate.Verdict `json:"verdict"`
	// Previous is the release the target served before.
	Previous *Release `json:"previous,omitempty"`
	// Copied lists the tags written to the target repository.
	Copied []string `json:"copied,omitempty"`
	// Attestation is the target's .att tag after the promotion attestation.
	Attestation string `json:"attestation,omitempty"`
	Steps       []Step `json:"steps"`
}

// Predicate is the promotion attestation's predicate.
type Predicate struct {
	Model           modelgate.ModelRef `json:"model"`
	From            Place              `json:"from"`
	To              Place              `json:"to"`
	Who             string             `json:"who"`
	When            time.Time          `json:"when"`
	Reason          string             `json:"reason,omitempty"`
	Verdict         modelgate.Verdict  `json:"verdict"`
	Approved        bool               `json:"approved,omitempty"`
	PreviousVersion string             `json:"previous_version,omitempty"`
	PreviousImage   string             `json:"previous_image,omitempty"`
	// PreviousModel is the ModelPack artifact the previous release mounted.
	PreviousModel string `json:"previous_model,omitempty"`
	// PreviousRevision is the previous release's revision in the target's
	// history, so that a re-run can tell its own attestation from one made
	// before a rollback.
	PreviousRevision int `json:"previous_revision,omitempty"`
}

// Place is an environment and its repository, in the predicate.
type Place struct {
	Environment string `json:"environment"`
	Repository  string `json:"repository"`
}

func (in *In) check() error {
	if _, err := modelgate.ParseVersion(in.Version); err != nil {
		return fmt.Errorf("promote %s@%s: %w", in.Name, in.Version, err)
	}
	switch {
	case in.Name == "":
		return errors.New("promote: model name is empty")
	case in.From.Repository == "" || in.To.Repository == "":
		return fmt.Errorf("promote %s@%s from %s to %s: an environment has no repository", in.Name, in.Version, in.From.Name, in.To.Name)
	case in.From.Repository == in.To.Repository:
		return fmt.Errorf("promote %s@%s: from %s and to %s share repository %s", in.Name, in.Version, in.From.Name, in.To.Name, in.To.Repository)
	case in.Cluster == nil:
		return fmt.Errorf("promote %s@%s to %s: no cluster", in.Name, in.Version, in.To.Name)
	case in.Signer == nil:
		return fmt.Errorf("promote %s@%s to %s: no signer for the promotion attestation", in.Name, in.Version, in.To.Name)
	case in.Approve && in.Reason == "":
		return fmt.Errorf("promote %s@%s to %s: an approval needs a reason", in.Name, in.Version, in.To.Name)
	}
	return nil
}

// Promote promotes in.Name@in.Version from in.From to in.To. It takes the
// target's lease first, so a concurrent writer gets ErrConflict and nothing
// changes. A re-run after an interruption converges: the copy skips what the
// target holds, and a release the target already serves is not deployed again.
func Promote(ctx context.Context, in In) (*Result, error) {
	if err := in.check(); err != nil {
		return nil, err
	}
	if in.Who == "" {
		in.Who = deploy.Who()
	}
	if in.Now == nil {
		in.Now = time.Now
	}
	in.RegistryOptions = append([]registry.Option{registry.WithAccess(in.Access)}, in.RegistryOptions...)
	in.SignOptions = append([]sign.Option{sign.WithAccess(in.Access)}, in.SignOptions...)
	res := &Result{Name: in.Name, Version: in.Version, From: in.From.Name, To: in.To.Name}
	what := fmt.Sprintf("promote %s@%s from %s to %s", in.Name, in.Version, in.From.Name, in.To.Name)

	locked, err := in.Cluster.Lock(ctx, in.Name, in.Who)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	defer locked.Unlock()

	p := &promotion{In: in, res: res, locked: locked}
	for _, s := range []struct {
		name string
		run  func(context.Context) (string, error)
	}{
		{StepResolve, p.resolve},
		{StepVerify, p.verify},
		{StepCopy, p.copy},
		{StepAttest, p.attest},
		{StepDeploy, p.deploy},
	} {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("%s: before %s: %w", what, s.name, err)
		}
		start := time.Now()
		skipped, err := s.run(ctx)
		res.Steps = append(res.Steps, Step{Name: s.name, Duration: time.Since(start), Skipped: skipped})
		if err != nil {
			return res, fmt.Errorf("%s: %s: %w", what, s.name, err)
		}
		if in.StopAfter == s.name {
			return res, fmt.Errorf("%s: %w %s", what, ErrStopped, s.name)
		}
	}
	return res, nil
}

// promotion carries the state between steps.
type promotion struct {
	In
	res     *Result
	locked  Locked
	digest  v1.Hash
	current Release
	// source is what is verified and copied, in the source repository: the
	// serving image and, when In.Volume, its ModelPack artifact and runtime
	// image; target is the same in the target repository.
	source, target parts
	// serving: the target already runs this release (a converging re-run).
	serving bool
}

// parts are a release's manifests in one repository, HOST/REPO@sha256:…;
// Model and Runtime are empty unless the release mounts its model.
type parts struct{ Image, Model, Runtime string }

// refs are the parts in copy order: the serving image first, so that the
// artifact's subject is there when the artifact arrives, then the runtime
// image and the artifact.
func (ps parts) refs() []string {
	if ps.Model == "" {
		return []string{ps.Image}
	}
	return []string{ps.Image, ps.Runtime, ps.Model}
}

// release is what the target runs: the serving image, or the runtime image
// with the artifact mounted.
func (ps parts) release() (image, model string) {
	if ps.Model == "" {
		return ps.Image, ""
	}
	return ps.Runtime, ps.Model
}

func describe(image, model string) string {
	if model == "" {
		return image
	}
	return image + " with model " + model
}

func (p *promotion) resolve(ctx context.Context) (string, error) {
	from, err := oci.ParseRepository(p.From.Repository)
	if err != nil {
		return "", err
	}
	to, err := oci.ParseRepository(p.To.Repository)
	if err != nil {
		return "", err
	}
	tag, err := from.Tag(modelgate.Tag(p.Version))
	if err != nil {
		return "", err
	}
	d, err := registry.Resolve(ctx, tag.String(), p.RegistryOptions...)
	if err != nil {
		return "", err
	}
	p.digest = d
	p.source.Image, p.target.Image = from.Digest(d).String(), to.Digest(d).String()
	p.res.Digest, p.res.Source, p.res.Image = d.String(), p.source.Image, p.target.Image
	if !p.Volume {
		return "", nil
	}
	// The version tag names the serving image; its ModelPack artifact
	// refers to it and names the runtime image.
	mp, err := registry.FindModelPack(ctx, p.source.Image, p.RegistryOptions...)
	if err != nil {
		return "", err
	}
	if mp.Image != p.source.Image {
		return "", fmt.Errorf("%w: the ModelPack artifact %s refers to %s, not %s", registry.ErrNoModelPack, mp.Artifact, mp.Image, p.source.Image)
	}
	for _, r := range []struct{ src, dst *string }{{&mp.Artifact, &p.target.Model}, {&mp.Runtime, &p.target.Runtime}} {
		h, err := digestOf(*r.src)
		if err != nil {
			return "", err
		}
		*r.dst = to.Digest(h).String()
	}
	p.source.Model, p.source.Runtime = mp.Artifact, mp.Runtime
	p.res.Model, p.res.Runtime = p.target.Model, p.target.Runtime
	return "", nil
}

// digestOf is the digest of ref, HOST/REPO@sha256:….
func digestOf(ref string) (v1.Hash, error) {
	_, d, ok := strings.Cut(ref, "@")
	if !ok {
		return v1.Hash{}, fmt.Errorf("%s: %w", ref, oci.ErrNotDigest)
	}
	return v1.NewHash(d)
}

// check verifies a release's parts with the promoter's policy: the serving
// image and the ModelPack artifact each as the model (a signature and a
// gate attestation for this name and version), the runtime image's
// signature (it holds no model to gate). The verdict is the weaker of the
// two gate verdicts; INCONCLUSIVE passes here and is judged by the caller.
func (p *promotion) check(ctx context.Context, ps parts) (modelgate.Verdict, error) {
	pol := p.Verify
	pol.RequireGate = true
	// The verdict is checked by verify so that INCONCLUSIVE gets its own error.
	pol.AllowInconclusive = true
	verdict := modelgate.Pass
	for _, ref := range []string{ps.Image, ps.Model} {
		if ref == "" {
			continue
		}
		v, err := sign.Verify(ctx, ref, pol, p.SignOptions...)
		if err != nil {
			if errors.Is(err, sign.ErrRefused) {
				return "", fmt.Errorf("%w: %w", ErrNotVerified, err)
			}
			return "", err
		}
		if v.Model.Name != p.Name || v.Model.Version != p.Version {
			return "", fmt.Errorf("%s is %s@%s: %w", ref, v.Model.Name, v.Model.Version, ErrModelMismatch)
		}
		if v.Verdict != modelgate.Pass {
			verdict = v.Verdict
		}
	}
	if ps.Runtime != "" {
		rt := p.Verify
		rt.RequireGate, rt.RequireProvenance, rt.AllowInconclusive, rt.GatePolicyDigest = false, false, false, ""
		if _, err := sign.Verify(ctx, ps.Runtime, rt, p.SignOptions...); err != nil {
			if errors.Is(err, sign.ErrRefused) {
				return "", fmt.Errorf("the runtime image: %w: %w", ErrNotVerified, err)
			}
			return "", fmt.Errorf("the runtime image: %w", err)
		}
	}
	return verdict, nil
}

func (p *promotion) verify(ctx context.Context) (string, error) {
	verdict, err := p.check(ctx, p.source)
	if err != nil {
		return "", err
	}
	p.res.Verdict = verdict
	require := p.To.Require
	if require == "" {
		require = modelgate.Pass
	}
	if verdict == modelgate.Inconclusive && require == modelgate.Pass && !p.Approve {
		return "", fmt.Errorf("gate verdict INCONCLUSIVE, %s requires PASS: %w (pass --approve with --reason)", p.To.Name, ErrNeedsApproval)
	}
	if p.To.Constraint != "" {
		if err := modelgate.CheckConstraint(p.Version, p.To.Constraint); err != nil {
			return "", fmt.Errorf("environment %s: %w", p.To.Name, err)
		}
	}
	cur, err := p.locked.Current(ctx)
	if err != nil {
		return "", fmt.Errorf("current release in %s: %w", p.To.Name, err)
	}
	if cur.Version == "" {
		return "", nil
	}
	c := cur
	p.res.Previous, p.current = &c, cur
	if cur.Version == p.Version {
		image, model := p.target.release()
		if cur.Image != image || cur.Model != model {
			return "", fmt.Errorf("%s runs %s@%s as %s, not %s: %w", p.To.Name, p.Name, cur.Version, describe(cur.Image, cur.Model), describe(image, model), ErrVersionConflict)
		}
		p.serving = true
		return "", nil
	}
	greater, err := modelgate.Greater(p.Version, cur.Version)
	if err != nil {
		return "", err
	}
	if !greater && !p.AllowDowngrade {
		return "", fmt.Errorf("%s runs %s, %s is not greater: %w (pass --allow-downgrade, or roll back)", p.To.Name, cur.Version, p.Version, ErrDowngrade)
	}
	return "", nil
}

// copy copies the release's manifests by digest, untagged, then each cosign
// tag the target lacks (one it already holds may carry an earlier
// promotion's attestation), verifies the copies with the policy as the
// target will run them, and only then writes the version tag: a copy or a
// verification that fails leaves no version in the target for anyone to
// deploy. A version tag the target holds on another digest is refused
// before anything is copied; the tag's conditional write refuses one that
// appears meanwhile.
func (p *promotion) copy(ctx context.Context) (string, error) {
	tag := modelgate.Tag(p.Version)
	if d, err := registry.Resolve(ctx, p.To.Repository+":"+tag, p.RegistryOptions...); err == nil && d != p.digest {
		return "", fmt.Errorf("%w: %w: %s:%s is %s, not %s", ErrVersionConflict, registry.ErrTagExists, p.To.Repository, tag, d, p.digest)
	} else if err != nil && !errors.Is(err, registry.ErrNotFound) {
		return "", err
	}
	var tags []string
	for _, ref := range p.source.refs() {
		if _, err := registry.Copy(ctx, ref, p.To.Repository, p.RegistryOptions...); err != nil {
			return "", err
		}
		d, err := digestOf(ref)
		if err != nil {
			return "", err
		}
		tags = append(tags, cosignTags(d)...)
	}
	// A metrics artifact is signed like an image: its own .sig travels too.
	for _, t := range tags {
		if !strings.HasSuffix(t, ".metrics") {
			continue
		}
		if m, err := registry.Resolve(ctx, p.From.Repository+":"+t, p.RegistryOptions...); err == nil {
			tags = append(tags, cosignTags(m)[0])
		} else if !errors.Is(err, registry.ErrNotFound) {
			return "", err
		}
	}
	for _, tag := range tags {
		_, err := registry.Resolve(ctx, p.To.Repository+":"+tag, p.RegistryOptions...)
		if err == nil {
			continue
		}
		if !errors.Is(err, registry.ErrNotFound) {
			return "", err
		}
		_, err = registry.Copy(ctx, p.From.Repository+":"+tag, p.To.Repository, append(p.RegistryOptions, registry.WithTags(tag))...)
		if errors.Is(err, registry.ErrNotFound) {
			continue // the source has none (an image without metrics, a runtime image's .att)
		}
		if err != nil {
			return "", err
		}
		p.res.Copied = append(p.res.Copied, tag)
	}
	verdict, err := p.check(ctx, p.target)
	if err != nil {
		return "", fmt.Errorf("the copies in %s: %w", p.To.Repository, err)
	}
	if verdict != p.res.Verdict {
		return "", fmt.Errorf("the copies in %s verify as %s, the source as %s: %w", p.To.Repository, verdict, p.res.Verdict, ErrNotVerified)
	}
	if _, err := registry.Copy(ctx, p.source.Image, p.To.Repository, append(p.RegistryOptions, registry.WithTags(tag))...); err != nil {
		if errors.Is(err, registry.ErrTagExists) {
			return "", fmt.Errorf("%w: %w", ErrVersionConflict, err)
		}
		return "", err
	}
	p.res.Copied = append([]string{tag}, p.res.Copied...)
	return "", nil
}

// cosignTags are the .sig, .att and .metrics tags of digest d (stages/sign).
func cosignTags(d v1.Hash) []string {
	base := d.Algorithm + "-" + d.Hex
	return []string{base + ".sig", base + ".att", base + ".metrics"}
}

// subject is what the promotion attestation is about: the model the
// release deploys (the serving image, or its ModelPack artifact).
func (p *promotion) subject() string {
	if p.target.Model != "" {
		return p.target.Model
	}
	return p.target.Image
}

func (p *promotion) attest(ctx context.Context) (string, error) {
	// A re-run of an interrupted promotion finds its own attestation: one
	// for this target naming the current release's revision as the previous
	// one (the run stopped before deploying), or, when the target already
	// serves this release, any for this target. A later promotion of the
	// same release (after a rollback, a new revision) attests anew.
	done, err := sign.Statements(ctx, p.subject(), PredicateType, p.SignOptions...)
	if err != nil {
		return "", err
	}
	for _, st := range done {
		var prev Predicate
		if json.Unmarshal(st.Predicate, &prev) != nil || prev.To.Environment != p.To.Name || prev.Model.Version != p.Version {
			continue
		}
		if p.serving || (prev.PreviousRevision == p.current.Revision && prev.PreviousImage == p.current.Image && prev.PreviousModel == p.current.Model) {
			return fmt.Sprintf("attested by an earlier run at %s", prev.When.Format(time.RFC3339)), nil
		}
	}
	pred := Predicate{
		Model:            modelgate.ModelRef{Name: p.Name, Version: p.Version},
		From:             Place{Environment: p.From.Name, Repository: p.From.Repository},
		To:               Place{Environment: p.To.Name, Repository: p.To.Repository},
		Who:              p.Who,
		When:             p.Now().UTC().Truncate(time.Second),
		Reason:           p.Reason,
		Verdict:          p.res.Verdict,
		Approved:         p.Approve && p.res.Verdict == modelgate.Inconclusive,
		PreviousVersion:  p.current.Version,
		PreviousImage:    p.current.Image,
		PreviousModel:    p.current.Model,
		PreviousRevision: p.current.Revision,
	}
	r, err := sign.Attest(ctx, p.subject(), PredicateType, pred, p.Signer, append(p.SignOptions, sign.WithAppend())...)
	if err != nil {
		return "", err
	}
	p.res.Attestation = r.Tag
	return "", nil
}

func (p *promotion) deploy(ctx context.Context) (string, error) {
	image, model := p.target.release()
	if p.serving {
		return fmt.Sprintf("%s already serves %s", p.To.Name, describe(image, model)), nil
	}
	reason := p.Reason
	if reason == "" {
		reason = "promoted from " + p.From.Name
	}
	rel := Release{Name: p.Name, Version: p.Version, Image: image, Model: model, Verdict: string(p.res.Verdict), Who: p.Who, Reason: reason}
	return "", p.locked.Deploy(ctx, rel, p.To.Strategy)
}
