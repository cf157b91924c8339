package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
	"github.com/modelci/modelci/stages/train"
)

// ErrNeedsRegistry means signing was asked for an image that only lives in
// the OCI layout: signatures live in a registry.
var ErrNeedsRegistry = errors.New("signing needs a registry")

// WithRegistryAuth gives the push and the signing the same credentials
// (empty username: the keychain) and plain HTTP when insecure.
func WithRegistryAuth(username, password string, insecure bool) Option {
	return func(o *options) {
		if username != "" {
			o.registry = append(o.registry, registry.WithCredentials(username, password))
			o.sign = append(o.sign, sign.WithCredentials(username, password))
		}
		if insecure {
			o.registry = append(o.registry, registry.WithInsecure())
			o.sign = append(o.sign, sign.WithInsecure())
		}
	}
}

// WithSigner signs with src instead of what sign: says (tests, and the
// Dagger module, which holds keys as secrets).
func WithSigner(src sign.SignerSource) Option { return func(o *options) { o.signer = src } }

func (r *run) signs() bool { return r.o.signer != nil || r.spec.Sign.Enabled() }

// signer opens the key once for the whole run.
func (r *run) signer(ctx context.Context) (sign.SignerSource, error) {
	if r.o.signer != nil {
		return r.o.signer, nil
	}
	if r.spec.Sign.Keyless {
		return sign.Keyless(sign.KeylessOptions{}), nil
	}
	pw, err := sign.PasswordFromEnv()
	if err != nil {
		return nil, fmt.Errorf("sign.key %s: %w", r.spec.Sign.Key, err)
	}
	return sign.KeyFile(r.spec.Path(r.spec.Sign.Key), pw), nil
}

// signAndAttest signs the pushed image, attests the gate verdict and the
// provenance, and attaches the signed metrics.
func (r *run) signAndAttest(ctx context.Context, ref string, report *modelgate.Report, metrics *modelgate.Metrics) (*SignOutput, error) {
	src, err := r.signer(ctx)
	if err != nil {
		return nil, err
	}
	spec := r.spec
	opts := append([]sign.Option{sign.WithLog(r.o.log), sign.WithRunID(r.rec.ID)}, r.o.sign...)
	out := &SignOutput{}
	s, err := sign.Sign(ctx, ref, src, opts...)
	if err != nil {
		return nil, err
	}
	out.Signature = s.ManifestDigest
	modelRef := modelgate.ModelRef{Name: spec.Model.Name, Version: spec.Model.Version}
	baselineDigest := ""
	if b := r.rec.Inputs.Baseline; b != nil {
		baselineDigest = b.Digest
	}
	gate := modelgate.NewGatePredicate(report, spec.Gate, metrics, modelRef, baselineDigest)
	a, err := sign.Attest(ctx, ref, modelgate.GatePredicateType, gate, src, opts...)
	if err != nil {
		return nil, err
	}
	out.GateAttestation = a.ManifestDigest
	prov, err := sign.NewProvenance(r.provenanceInput(modelRef))
	if err != nil {
		return nil, err
	}
	a, err = sign.Attest(ctx, ref, sign.ProvenancePredicateType, prov, src, opts...)
	if err != nil {
		return nil, err
	}
	out.ProvenanceAttestation = a.ManifestDigest
	mb, err := metrics.Encode()
	if err != nil {
		return nil, err
	}
	m, err := sign.AttachMetrics(ctx, ref, mb, src, opts...)
	if err != nil {
		return nil, err
	}
	out.Metrics = m.ManifestDigest
	return out, nil
}

func (r *run) provenanceInput(model modelgate.ModelRef) sign.ProvenanceInput {
	in := sign.ProvenanceInput{
		BuilderID:      builderID(),
		ModelciVersion: Version(),
		RunID:          r.rec.ID,
		Model:          model,
		DatasetURI:     r.rec.Inputs.Dataset.Path,
		DatasetDigest:  r.rec.Inputs.Dataset.Digest,
		Parameters: map[string]any{
			"params": r.rec.Inputs.Params,
			"split":  map[string]any{"seed": r.rec.Inputs.Split.Seed, "test_fraction": r.rec.Inputs.Split.TestFraction},
		},
		StartedOn:  r.rec.Started,
		FinishedOn: r.o.now().UTC(),
	}
	in.SourceURI, in.SourceRevision = sourceRevision(r.spec.Dir)
	if r.spec.Train.Builtin != "" {
		in.BuiltinTrainer, in.BuiltinTrainerVersion = r.spec.Train.Builtin, train.Version
	} else {
		// A host-process trainer has no image; its command is the best
		// identity there is, and the source revision pins its code.
		in.BuiltinTrainer = "command:" + strings.Join(r.spec.Train.Command, " ")
		in.BuiltinTrainerVersion = in.SourceRevision
	}
	return in
}

// builderID names the build platform: the workflow in GitHub Actions, else
// a local modelci.
func builderID() string {
	if ref := os.Getenv("GITHUB_WORKFLOW_REF"); ref != "" && os.Getenv("GITHUB_SERVER_URL") != "" {
		return os.Getenv("GITHUB_SERVER_URL") + "/" + ref
	}
	return "https://modelci.dev/builders/local@" + Version()
}

// sourceRevision finds the git repository and commit of the project, when
// it is in one.
func sourceRevision(dir string) (uri, rev string) {
	if sha := os.Getenv("GITHUB_SHA"); sha != "" && os.Getenv("GITHUB_REPOSITORY") != "" {
		return os.Getenv("GITHUB_SERVER_URL") + "/" + os.Getenv("GITHUB_REPOSITORY"), sha
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", ""
	}
	rev = strings.TrimSpace(string(out))
	if u, err := exec.Command("git", "-C", dir, "config", "--get", "remote.origin.url").Output(); err == nil {
		uri = strings.TrimSpace(string(u))
	}
	if uri == "" {
		uri = "git+file://" + dir
	}
	return uri, rev
}

// sign is the sign stage: signature, gate and provenance attestations, and
// the metrics artifact on the pushed digest.
func (r *run) sign(ctx context.Context) (string, error) {
	s, err := r.signAndAttest(ctx, r.ref, r.report, r.metrics)
	if err != nil {
		return "", err
	}
	r.rec.Outputs.Sign = s
	return fmt.Sprintf("signed; attested gate %s and provenance; metrics attached", r.report.Verdict), nil
}
