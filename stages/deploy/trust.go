package deploy

import (
	"context"
	"fmt"

	"github.com/modelci/modelci/stages/oci"
)

// Trust is how a release the cluster's history names is checked before it
// is restored (a rollback, manual or automatic) or taken as a champion: the
// history is an index, never evidence.
type Trust struct {
	// Verifier checks the image's signature and gate attestation, as deploy
	// does (a model_source volume release's ModelPack artifact's).
	Verifier Verifier
	// RuntimeVerifier checks the runtime image of a release that mounts
	// its model (a signature).
	RuntimeVerifier Verifier
	// InsecureSkipVerify restores without verification, with a warning. A
	// release deployed that way is restored only with it.
	InsecureSkipVerify bool
	// Repository is the repository (HOST[:PORT]/PATH) the image must live
	// in: the environment's. Empty means the repository of the release
	// running now.
	Repository string
}

// check returns the release e names for app, verified: an image by digest
// in repo, signed as app at e.Version, with the verdict the signature
// gives, not the history's. Refusals wrap ErrNotVerified (and, but for the
// verifier's own, ErrUntrusted); nothing is changed.
func (tr Trust) check(ctx context.Context, log func(string, ...any), app, repo string, e Entry) (Release, error) {
	rel := Release{Name: app, Version: e.Version, Image: e.Image, Model: e.Model, RunID: e.RunID, Who: e.Who}
	refuse := func(format string, args ...any) (Release, error) {
		return rel, fmt.Errorf("%s %s (%s): %w: %w: %s", app, e.Version, rel.describe(), ErrNotVerified, ErrUntrusted, fmt.Sprintf(format, args...))
	}
	refs := []string{e.Image}
	if e.Model != "" {
		refs = append(refs, e.Model)
	}
	for _, ref := range refs {
		r, err := oci.ParseRef(ref)
		if err != nil || r.RequireRegistry() != nil || r.RequireDigest() != nil {
			return refuse("the history names %s, which is not HOST/REPO@sha256:…", ref)
		}
		if repo != "" && r.Repository() != repo {
			return refuse("%s is not in repository %s", ref, repo)
		}
	}
	if tr.InsecureSkipVerify {
		log("WARNING: restoring %s %s (%s) WITHOUT verifying its signature or gate verdict (--insecure-skip-verify)", app, e.Version, rel.describe())
		rel.Verdict = Unverified
		return rel, nil
	}
	if e.Verdict == Unverified {
		return refuse("it was deployed with --insecure-skip-verify; restoring it needs the same flag")
	}
	if tr.Verifier == nil {
		return rel, fmt.Errorf("restore %s %s: %w: pass a key or a certificate identity, or --insecure-skip-verify", app, e.Version, ErrNoVerifier)
	}
	if err := verifyRelease(ctx, &rel, tr.Verifier, tr.RuntimeVerifier); err != nil {
		return rel, fmt.Errorf("%s %s: %w", app, e.Version, err)
	}
	return rel, nil
}

// repository is the repository restored images must live in: tr's, else
// that of the image running now (live), else fallback's.
func (tr Trust) repository(live, fallback string) (string, error) {
	if tr.Repository != "" {
		r, err := oci.ParseRepository(tr.Repository)
		if err != nil {
			return "", fmt.Errorf("repository %q: %w", tr.Repository, err)
		}
		return r.String(), nil
	}
	for _, ref := range []string{live, fallback} {
		if r, err := oci.ParseRef(ref); err == nil && ref != "" {
			return r.Repository(), nil
		}
	}
	return "", nil
}
