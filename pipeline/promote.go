package pipeline

import (
	"context"
	"fmt"
	"io"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/promote"
	"github.com/modelci/modelci/stages/sign"
)

// PromoteInput is a promotion of NAME@VERSION between two environments of
// a spec.
type PromoteInput struct {
	Name, Version, From, To string
	Reason                  string
	Approve, AllowDowngrade bool
	// Signer attests the promotion.
	Signer sign.SignerSource
	// Kubeconfig is the kubeconfig file (default KUBECONFIG, ~/.kube/config);
	// the context is always the target environment's.
	Kubeconfig string
	Access     oci.Access
	Log        io.Writer
}

// Promote verifies NAME@VERSION in environment From, copies it by digest to
// To, verifies the copies, attests the promotion and deploys it there
// (stages/promote), with the spec's verify: and deploy: blocks. Under
// deploy.model_source volume the release is the version's ModelPack
// artifact, mounted by the runtime image it names: both travel with the
// serving image. A request the spec cannot serve (an
// unknown environment, no verify: block, a target without a context) is
// refused before anything is touched, wrapping spec.ErrSpec or
// spec.ErrUnknownEnvironment.
func Promote(ctx context.Context, s *spec.Spec, in PromoteInput) (*promote.Result, error) {
	src, err := s.Environment(in.From)
	if err != nil {
		return nil, err
	}
	dst, err := s.Environment(in.To)
	if err != nil {
		return nil, err
	}
	if !s.Verify.Set() {
		return nil, fmt.Errorf("%s: verify: %w: needs key or certificate_identity (promoted images are verified)", s.File, spec.ErrSpec)
	}
	if dst.Context == "" {
		// Never whatever context is current: prod must not be a typo away.
		return nil, fmt.Errorf("%s: environments.%s.context: %w: empty: name the kubeconfig context explicitly", s.File, dst.Name, spec.ErrSpec)
	}
	t, err := deploy.NewTarget(in.Kubeconfig, dst.Context)
	if err != nil {
		return nil, err
	}
	if in.Log == nil {
		in.Log = io.Discard
	}
	t.Log = in.Log
	policy := s.VerifyPolicy()
	return promote.Promote(ctx, promote.In{
		Name: in.Name, Version: in.Version,
		From: promoteEnvironment(src), To: promoteEnvironment(dst),
		Cluster: promote.NewKubeCluster(t, dst.Namespace, s.Deploy, trust(&policy, false, dst.Repository, in.Access, in.Log)),
		Verify:  policy, Signer: in.Signer,
		Approve: in.Approve, AllowDowngrade: in.AllowDowngrade, Reason: in.Reason,
		Volume: s.Deploy.Volume(), Access: in.Access, SignOptions: []sign.Option{sign.WithLog(in.Log)},
	})
}

func promoteEnvironment(e spec.Environment) promote.Environment {
	return promote.Environment{Name: e.Name, Repository: e.Repository, Constraint: e.Constraint, Require: modelgate.Verdict(e.Require), Strategy: e.Strategy}
}
