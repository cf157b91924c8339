package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/promote"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
)

// ErrUnnamedRelease means a release has no model name or version: none was
// given and the image's annotations name none.
var ErrUnnamedRelease = errors.New("no model name and version")

// DeployInput is what modelci deploy rolls out.
type DeployInput struct {
	// Ref is the image, HOST/REPO@sha256:….
	Ref    string
	Config deploy.Config
	// Release's Name and Version default to the image's annotations (a
	// verified image's are the verified ones).
	Release         deploy.Release
	Namespace       string
	CreateNamespace bool
	// Policy verifies the image before anything changes (the gate
	// attestation is always required); nil needs InsecureSkipVerify.
	Policy             *sign.VerifyPolicy
	InsecureSkipVerify bool
	// DryRun, when set, is the directory the manifests are written into
	// instead: no cluster is needed, the target may be nil.
	DryRun string
	Access oci.Access
	// Log takes warnings (nil: none).
	Log io.Writer
}

// ErrNoModelPack means a model_source volume deploy was given a serving
// image with no ModelPack artifact among its referrers, or an artifact
// that names no runtime image (registry.FindModelPack).
var ErrNoModelPack = registry.ErrNoModelPack

// Deploy verifies in.Ref and rolls it out to t, or with in.DryRun renders
// its manifests. Under model_source volume in.Ref is the model's ModelPack
// artifact or its serving image (whose ModelPack artifact is found among
// its referrers): the release runs the runtime image the artifact names
// and mounts the artifact.
func Deploy(ctx context.Context, t *deploy.Target, in DeployInput) (*deploy.Report, error) {
	if err := deploy.CheckImage(in.Ref); err != nil {
		return nil, err
	}
	rel := in.Release
	rel.Image = in.Ref
	if in.Config.Volume() {
		if err := volumeRelease(ctx, &rel, in.Access); err != nil {
			return nil, err
		}
	}
	if (rel.Name == "" || rel.Version == "") && (in.Policy == nil || in.DryRun != "") {
		if err := annotatedRelease(ctx, &rel, in.Access); err != nil {
			return nil, err
		}
	}
	if in.DryRun != "" {
		return render(in.Config, rel, in.Namespace, in.DryRun), nil
	}
	din := deploy.Input{Config: in.Config, Release: rel, Namespace: in.Namespace, CreateNamespace: in.CreateNamespace, InsecureSkipVerify: in.InsecureSkipVerify}
	if in.Policy != nil {
		din.Verifier, din.RuntimeVerifier = verifiers(*in.Policy, signOptions(in.Access, in.Log)...)
	}
	return t.Deploy(ctx, din)
}

// verifiers are policy's verification of a model (its gate attestation
// required) and of a runtime image (its signature).
func verifiers(policy sign.VerifyPolicy, opts ...sign.Option) (model, runtime deploy.Verifier) {
	m := policy
	m.RequireGate = true
	r := policy
	r.RequireGate, r.RequireProvenance, r.AllowInconclusive, r.GatePolicyDigest = false, false, false, ""
	return Verifier(m, opts...), Verifier(r, opts...)
}

// volumeRelease makes rel, named by a ModelPack artifact or a serving
// image in rel.Image, the release of the artifact (rel.Model) run by the
// runtime image it names (rel.Image), both by digest in its repository.
func volumeRelease(ctx context.Context, rel *deploy.Release, access oci.Access) error {
	mp, err := registry.FindModelPack(ctx, rel.Image, registry.WithAccess(access))
	if err != nil {
		return fmt.Errorf("model_source volume: %w; deploy the artifact, HOST/REPO@sha256:… (run.json outputs.push.modelpack)", err)
	}
	rel.Model, rel.Image = mp.Artifact, mp.Runtime
	return nil
}

// manifest is what a release reads of a manifest.
type manifest struct {
	Annotations map[string]string `json:"annotations"`
}

func manifestOf(ctx context.Context, ref string, access oci.Access) (*manifest, error) {
	a, err := registry.Pull(ctx, ref, registry.WithAccess(access))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ref, err)
	}
	raw, err := a.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", ref, err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", ref, err)
	}
	return &m, nil
}

// annotatedRelease fills the release's name and version from the
// annotations of the model's manifest: the image's, or the ModelPack
// artifact's.
func annotatedRelease(ctx context.Context, rel *deploy.Release, access oci.Access) error {
	ref := rel.Image
	if rel.Model != "" {
		ref = rel.Model
	}
	m, err := manifestOf(ctx, ref, access)
	if err != nil {
		return fmt.Errorf("%w (or pass --name and --version)", err)
	}
	if rel.Name == "" {
		rel.Name = m.Annotations[sign.AnnotationModelName]
	}
	if rel.Version == "" {
		rel.Version = m.Annotations[sign.AnnotationModelVersion]
	}
	if rel.Name == "" || rel.Version == "" {
		return fmt.Errorf("%w: %s has no model name and version annotations: pass --name and --version", ErrUnnamedRelease, ref)
	}
	return nil
}

// render writes the release's manifests into dir, with the report a deploy
// would give.
func render(cfg deploy.Config, rel deploy.Release, ns, dir string) *deploy.Report {
	if ns == "" {
		ns = cfg.Namespace
	}
	rep := &deploy.Report{Schema: deploy.ReportSchema, Action: deploy.ActionDeploy, Name: rel.Name, Namespace: ns, Result: deploy.ResultRendered}
	m, err := deploy.Render(cfg, rel, ns)
	if err == nil {
		rep.Files, err = m.WriteDir(dir)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	return rep
}

// HistoryInput names the history to read and how to audit it.
type HistoryInput struct {
	Name, Namespace string
	// Env, with a Policy that names a signer, adds to each release promote
	// brought into the environment its verified promotion attestation.
	Env    string
	Policy sign.VerifyPolicy
	Access oci.Access
	// Log takes the warning when the audit fails (the history is still
	// returned).
	Log io.Writer
}

// History is an app's release history in t, from the cluster, with the
// registry's side of the audit trail: who promoted each release, from
// where and why.
func History(ctx context.Context, t *deploy.Target, in HistoryInput) (*deploy.Report, error) {
	rep, err := t.History(ctx, in.Name, in.Namespace)
	if err != nil || in.Env == "" || (in.Policy.KeyPath == "" && in.Policy.CertificateIdentity == "") {
		return rep, err
	}
	if aerr := promote.Audit(ctx, rep.History, in.Env, in.Policy, signOptions(in.Access, in.Log)...); aerr != nil && in.Log != nil {
		fmt.Fprintf(in.Log, "warning: %v\n", aerr)
	}
	return rep, nil
}

// RollbackInput names the release to restore and how it is checked.
type RollbackInput struct {
	Name, Namespace string
	// To is the version to restore; empty means the release before the
	// current one.
	To, Reason string
	// Policy verifies the release before anything changes (the gate
	// attestation is always required); nil needs InsecureSkipVerify.
	Policy             *sign.VerifyPolicy
	InsecureSkipVerify bool
	// Repository, the environment's with --env, is where the restored image
	// must live; empty means the repository of the release running now.
	Repository string
	Access     oci.Access
	// Log takes warnings (nil: none).
	Log io.Writer
}

// Rollback restores a release of the app's history in t once it is
// verified: the history only names it (deploy.Trust).
func Rollback(ctx context.Context, t *deploy.Target, in RollbackInput) (*deploy.Report, error) {
	return t.Rollback(ctx, deploy.RollbackInput{
		Name: in.Name, Namespace: in.Namespace, To: in.To, Reason: in.Reason,
		Trust: trust(in.Policy, in.InsecureSkipVerify, in.Repository, in.Access, in.Log),
	})
}

// trust is the check of a release the cluster's history names: policy,
// with the gate attestation required, in repository.
func trust(policy *sign.VerifyPolicy, insecure bool, repository string, access oci.Access, log io.Writer) deploy.Trust {
	tr := deploy.Trust{InsecureSkipVerify: insecure, Repository: repository}
	if policy != nil {
		tr.Verifier, tr.RuntimeVerifier = verifiers(*policy, signOptions(access, log)...)
	}
	return tr
}
