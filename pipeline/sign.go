package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
	"github.com/modelci/modelci/stages/train"
)

// SignSpec says how `modelci run` signs what it pushes.
type SignSpec struct {
	Key     string `yaml:"key"` // cosign.key; password from MODELCI_KEY_PASSWORD or COSIGN_PASSWORD
	Keyless bool   `yaml:"keyless"`
}

// VerifySpec is what deploy and promote require of an image.
type VerifySpec struct {
	Key                   string `yaml:"key"`
	CertificateIdentity   string `yaml:"certificate_identity"`
	CertificateOIDCIssuer string `yaml:"certificate_oidc_issuer"`
}

// Enabled says whether the run signs.
func (s SignSpec) Enabled() bool { return s.Key != "" || s.Keyless }

// ErrNeedsRegistry means signing was asked for an image that only lives in
// the OCI layout: signatures live in a registry.
var ErrNeedsRegistry = errors.New("signing needs a registry")

func (s *Spec) validateSign() []error {
	var errs []error
	if s.Sign.Key != "" && s.Sign.Keyless {
		errs = append(errs, fmt.Errorf("%s: sign: %w: set key or keyless, not both", s.File, ErrSpec))
	}
	v := s.Verify
	if v.Key != "" && (v.CertificateIdentity != "" || v.CertificateOIDCIssuer != "") {
		errs = append(errs, fmt.Errorf("%s: verify: %w: set key, or certificate_identity with certificate_oidc_issuer, not both", s.File, ErrSpec))
	}
	if (v.CertificateIdentity == "") != (v.CertificateOIDCIssuer == "") {
		errs = append(errs, fmt.Errorf("%s: verify: %w: certificate_identity and certificate_oidc_issuer go together", s.File, ErrSpec))
	}
	return errs
}

// VerifyPolicy is the spec's verify: block as stages/sign takes it.
func (s *Spec) VerifyPolicy() sign.VerifyPolicy {
	p := sign.VerifyPolicy{
		CertificateIdentity:   s.Verify.CertificateIdentity,
		CertificateOIDCIssuer: s.Verify.CertificateOIDCIssuer,
		RequireGate:           true,
	}
	if s.Verify.Key != "" {
		p.KeyPath = s.Path(s.Verify.Key)
	}
	return p
}

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
	uri, rev := SourceRevision(r.spec.Dir)
	return ProvenanceInput(r.spec, ProvenanceRun{
		BuilderID: builderID(), RunID: r.rec.ID,
		DatasetDigest: r.rec.Inputs.Dataset.Digest, Params: r.rec.Inputs.Params,
		SourceURI: uri, SourceRevision: rev,
		Started: r.rec.Started, Finished: r.o.now().UTC(),
	})
}

// ProvenanceRun is what one build of a spec adds to its provenance: who
// built it, when, from which commit and dataset. `modelci run` and the
// Dagger module's predicates step (internal/stage) both fill it, so that
// the same inputs give the same provenance apart from these fields.
type ProvenanceRun struct {
	BuilderID, RunID string
	// DatasetDigest is the dataset's digest (metrics.json dataset.digest).
	DatasetDigest string
	// Params are train.params as the run used them (nil: the spec's).
	Params map[string]any
	// SourceURI and SourceRevision name the training code's repository
	// and commit (SourceRevision's result); empty outside a repository.
	SourceURI, SourceRevision string
	Started, Finished         time.Time
}

// ProvenanceInput is the SLSA provenance input of a build of spec: the
// model, the dataset, the parameters and split, the source revision and
// the trainer (the built-in one and its version, or the command pinned by
// the source revision).
func ProvenanceInput(spec *Spec, b ProvenanceRun) sign.ProvenanceInput {
	params := b.Params
	if params == nil {
		// A spec that loaded has valid params.
		params, _ = spec.ParamsMap()
	}
	split := map[string]any{}
	if spec.Data.Seed != nil {
		split["seed"] = *spec.Data.Seed
	}
	if spec.Data.TestFraction != nil {
		split["test_fraction"] = *spec.Data.TestFraction
	}
	in := sign.ProvenanceInput{
		BuilderID:      b.BuilderID,
		ModelciVersion: Version(),
		RunID:          b.RunID,
		Model:          modelgate.ModelRef{Name: spec.Model.Name, Version: spec.Model.Version},
		DatasetURI:     spec.Data.Path,
		DatasetDigest:  b.DatasetDigest,
		Parameters:     map[string]any{"params": params, "split": split},
		SourceURI:      b.SourceURI,
		SourceRevision: b.SourceRevision,
		StartedOn:      b.Started,
		FinishedOn:     b.Finished,
	}
	if spec.Train.Builtin != "" {
		in.BuiltinTrainer, in.BuiltinTrainerVersion = spec.Train.Builtin, train.Version
	} else {
		// A host-process trainer has no image; its command is the best
		// identity there is, and the source revision pins its code.
		in.BuiltinTrainer = "command:" + strings.Join(spec.Train.Command, " ")
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

// SourceRevision finds the git repository and commit of the project in
// dir, when it is in one (in GitHub Actions: the workflow's repository and
// commit).
func SourceRevision(dir string) (uri, rev string) {
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
