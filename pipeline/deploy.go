package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/sign"
)

// DeployDir is where a run renders its Kubernetes manifests when it does
// not deploy.
func DeployDir(output string) string { return filepath.Join(output, "deploy") }

// WithKubeconfig names the kubeconfig file for deploy.enabled (default
// KUBECONFIG, then ~/.kube/config); the context is always deploy.context.
func WithKubeconfig(path string) Option { return func(o *options) { o.kubeconfig = path } }

// deployStage deploys the pushed image when deploy.enabled, else renders
// its manifests into <output>/deploy/.
func (r *run) deployStage(ctx context.Context, ref string) (string, error) {
	cfg := r.spec.Deploy
	rel := deploy.Release{Name: r.spec.Model.Name, Version: r.spec.Model.Version, Image: ref, RunID: r.rec.ID}
	if cfg.Volume() {
		// The runtime image, the ModelPack artifact mounted: both pushed.
		p := r.rec.Outputs.Push
		if p == nil || p.Runtime == "" || p.ModelPack == "" {
			return "", fmt.Errorf("deploy.model_source volume: %w: the runtime image or the ModelPack artifact was not pushed", ErrNoModelPack)
		}
		rel.Image, rel.Model = p.Runtime, p.ModelPack
	}
	if !cfg.Enabled {
		m, err := deploy.Render(cfg, rel, cfg.Namespace)
		if err != nil {
			return "", err
		}
		files, err := m.WriteDir(filepath.Join(r.tmp, "deploy"))
		if err != nil {
			return "", err
		}
		r.rec.Outputs.Deploy = &DeployOutput{Rendered: len(files), Namespace: cfg.Namespace}
		return fmt.Sprintf("rendered %d manifests (deploy.enabled is false)", len(files)), nil
	}
	t, err := deploy.NewTarget(r.o.kubeconfig, cfg.Context)
	if err != nil {
		return "", err
	}
	t.Log = r.o.log
	model, runtime := verifiers(r.spec.VerifyPolicy(), r.o.signOptions()...)
	rep, err := t.Deploy(ctx, deploy.Input{
		Config: cfg, Release: rel,
		Verifier: model, RuntimeVerifier: runtime,
	})
	if rep != nil {
		r.rec.Outputs.Deploy = &DeployOutput{Context: cfg.Context, Namespace: rep.Namespace, Result: rep.Result}
	}
	if err != nil {
		return "", err
	}
	line := fmt.Sprintf("%s to %s/%s (%s)", rep.Result, cfg.Context, rep.Namespace, cfg.Strategy)
	if cfg.Volume() {
		line += ", the model mounted from " + short(rel.Model[strings.LastIndex(rel.Model, "@")+1:])
	}
	return line, nil
}

// Verifier is stages/sign's verification under policy as deploy.Verifier
// takes it: the one adapter, for modelci run and modelci deploy.
func Verifier(policy sign.VerifyPolicy, opts ...sign.Option) deploy.Verifier {
	return verifier{policy: policy, opts: opts}
}

type verifier struct {
	policy sign.VerifyPolicy
	opts   []sign.Option
}

func (v verifier) Verify(ctx context.Context, ref string) (deploy.Verification, error) {
	got, err := sign.Verify(ctx, ref, v.policy, v.opts...)
	if err != nil {
		return deploy.Verification{}, err
	}
	return deploy.Verification{Verdict: string(got.Verdict), Signer: got.Signer, Name: got.Model.Name, Version: got.Model.Version}, nil
}
