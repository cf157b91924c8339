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

// Deploy verifies in.Ref and rolls it out to t, or with in.DryRun renders
// its manifests.
func Deploy(ctx context.Context, t *deploy.Target, in DeployInput) (*deploy.Report, error) {
	if err := deploy.CheckImage(in.Ref); err != nil {
		return nil, err
	}
	rel := in.Release
	rel.Image = in.Ref
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
		p := *in.Policy
		p.RequireGate = true
		din.Verifier = Verifier(p, signOptions(in.Access, in.Log)...)
	}
	return t.Deploy(ctx, din)
}

// annotatedRelease fills the release's name and version from the image's
// annotations.
func annotatedRelease(ctx context.Context, rel *deploy.Release, access oci.Access) error {
	a, err := registry.Pull(ctx, rel.Image, registry.WithAccess(access))
	if err != nil {
		return fmt.Errorf("reading %s for its model name and version (or pass --name and --version): %w", rel.Image, err)
	}
	raw, err := a.RawManifest()
	if err != nil {
		return fmt.Errorf("manifest of %s: %w", rel.Image, err)
	}
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("manifest of %s: %w", rel.Image, err)
	}
	if rel.Name == "" {
		rel.Name = m.Annotations[sign.AnnotationModelName]
	}
	if rel.Version == "" {
		rel.Version = m.Annotations[sign.AnnotationModelVersion]
	}
	if rel.Name == "" || rel.Version == "" {
		return fmt.Errorf("%w: %s has no model name and version annotations: pass --name and --version", ErrUnnamedRelease, rel.Image)
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
		p := *policy
		p.RequireGate = true
		tr.Verifier = Verifier(p, signOptions(access, log)...)
	}
	return tr
}
