package promote

import (
	"context"
	"errors"
	"fmt"

	"github.com/modelci/modelci/stages/deploy"
)

// NewKubeCluster adapts a stages/deploy Target to Cluster: the environment's
// namespace ns, deployed with cfg (its Strategy replaced by the
// environment's). rollback checks the release an automatic rollback would
// restore: the environment's verification and repository.
func NewKubeCluster(t *deploy.Target, ns string, cfg deploy.Config, rollback deploy.Trust) Cluster {
	return &kubeCluster{t: t, ns: ns, cfg: cfg, rollback: rollback}
}

type kubeCluster struct {
	t        *deploy.Target
	ns       string
	cfg      deploy.Config
	rollback deploy.Trust
}

func (c *kubeCluster) Lock(ctx context.Context, app, who string) (Locked, error) {
	l, err := c.t.Acquire(ctx, c.ns, app, who)
	if err != nil {
		if errors.Is(err, deploy.ErrConflict) {
			return nil, fmt.Errorf("%w: %w", ErrConflict, err)
		}
		return nil, err
	}
	return &kubeLocked{kubeCluster: c, app: app, lease: l}, nil
}

type kubeLocked struct {
	*kubeCluster
	app   string
	lease *deploy.Lease
}

func (l *kubeLocked) Current(ctx context.Context) (Release, error) {
	rep, err := l.t.Status(ctx, l.app, l.ns)
	if errors.Is(err, deploy.ErrNoRelease) {
		return Release{}, nil
	}
	if err != nil {
		return Release{}, err
	}
	c := rep.Current
	if c == nil {
		// Workloads without a history: nothing modelci released.
		return Release{}, nil
	}
	return Release{Name: l.app, Version: c.Version, Image: c.Image, Model: c.Model, Verdict: c.Verdict, Who: c.Who, Reason: c.Reason, Revision: c.Revision}, nil
}

func (l *kubeLocked) Deploy(ctx context.Context, rel Release, strategy string) error {
	cfg := l.cfg
	if strategy != "" {
		cfg.Strategy = strategy
	}
	in := deploy.Input{
		Config:    cfg,
		Release:   deploy.Release{Name: rel.Name, Version: rel.Version, Image: rel.Image, Model: rel.Model, Who: rel.Who},
		Namespace: l.ns,
		Verifier:  verified(rel),
		Rollback:  l.rollback,
		Lease:     l.lease,
		Reason:    rel.Reason,
	}
	if rel.Model != "" {
		in.RuntimeVerifier = verifiedRuntime(rel)
	}
	_, err := l.t.Deploy(ctx, in)
	return err
}

func (l *kubeLocked) Unlock() { l.lease.Release() }

// verified is the verification Promote already did of the model (the
// image, or the ModelPack artifact a release mounts), in the source
// repository and then in the target's, handed to deploy as its Verifier.
type verified Release

func (v verified) Verify(_ context.Context, ref string) (deploy.Verification, error) {
	want := v.Image
	if v.Model != "" {
		want = v.Model
	}
	if ref != want {
		return deploy.Verification{}, fmt.Errorf("model %s: %w: promote verified %s", ref, ErrNotVerified, want)
	}
	return deploy.Verification{Verdict: v.Verdict, Name: v.Name, Version: v.Version}, nil
}

// verifiedRuntime is Promote's verification of the runtime image a
// release that mounts its model runs, as deploy's RuntimeVerifier.
type verifiedRuntime Release

func (v verifiedRuntime) Verify(_ context.Context, ref string) (deploy.Verification, error) {
	if ref != v.Image {
		return deploy.Verification{}, fmt.Errorf("runtime image %s: %w: promote verified %s", ref, ErrNotVerified, v.Image)
	}
	return deploy.Verification{Name: v.Name, Version: v.Version}, nil
}
