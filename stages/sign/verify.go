package sign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/modelci/modelci/modelgate"
)

// VerifyPolicy says who must have signed an image and what must be attested
// to it. Exactly one of a key (Key or KeyPath) or a certificate identity
// with its OIDC issuer is required.
type VerifyPolicy struct {
	// Key is a PEM public key (cosign.pub); KeyPath names a file holding one.
	Key     []byte
	KeyPath string
	// CertificateIdentity and CertificateOIDCIssuer are the keyless signer:
	// the certificate's subject alternative name and the issuer of the OIDC
	// token it was issued for.
	CertificateIdentity   string
	CertificateOIDCIssuer string
	// TrustedRoot holds the certificate authorities and transparency logs
	// trusted for keyless signatures; nil means the public Sigstore
	// instance's root, fetched and cached through TUF.
	TrustedRoot root.TrustedMaterial
	// SkipSCT accepts Fulcio certificates without a certificate transparency
	// timestamp (a private CA that has no CT log). The chain, identity and
	// transparency log entry are checked regardless.
	SkipSCT bool

	// RequireGate refuses an image without a gate attestation. A gate
	// attestation that is present is always checked.
	RequireGate bool
	// AllowInconclusive accepts an INCONCLUSIVE gate verdict (approved by a
	// person); otherwise only PASS is accepted.
	AllowInconclusive bool
	// RequireProvenance refuses an image without SLSA provenance.
	RequireProvenance bool
	// GatePolicyDigest, when set, requires a gate attestation made under
	// that gate policy (modelgate.Policy.Digest): an attestation of an
	// earlier policy, re-tagged by someone with write access to the
	// registry, then no longer passes.
	GatePolicyDigest string
}

// Verification lists what Verify checked (for -o json and text output).
type Verification struct {
	// Ref is the verified image by digest.
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	// Model is the name and version from the image's annotations.
	Model modelgate.ModelRef `json:"model"`
	// Signer is the key or the certificate identity that was required.
	Signer string `json:"signer"`
	// Verdict is the gate verdict, when a gate attestation was checked.
	Verdict modelgate.Verdict `json:"verdict,omitempty"`
	// Verified is true when every check passed.
	Verified bool    `json:"verified"`
	Checks   []Check `json:"checks"`
}

// Check is one verification step and its outcome.
type Check struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// Names of the checks in a Verification.
const (
	CheckSignature  = "signature"
	CheckSubject    = "attestation-subject"
	CheckGate       = "gate-attestation"
	CheckGateModel  = "gate-model"
	CheckGatePolicy = "gate-policy"
	CheckVerdict    = "gate-verdict"
	CheckProvenance = "provenance"
)

func (v *Verification) pass(name, format string, args ...any) {
	v.Checks = append(v.Checks, Check{Name: name, Passed: true, Detail: fmt.Sprintf(format, args...)})
}

// refuse records a failed check and returns ErrRefused wrapped with why.
func (v *Verification) refuse(name, format string, args ...any) error {
	detail := fmt.Sprintf(format, args...)
	v.Checks = append(v.Checks, Check{Name: name, Passed: false, Detail: detail})
	return fmt.Errorf("%w: %s: %s", ErrRefused, name, detail)
}

// Verify checks that ref's digest carries a valid signature by the policy's
// signer; that every attestation signed by it is about this digest; that the
// gate attestation (required with RequireGate) has a PASS verdict
// (INCONCLUSIVE with AllowInconclusive) for the model name and version in
// the image's annotations; and, with RequireProvenance, that SLSA
// provenance is attested. A verification that does not pass returns the
// Verification so far and an error wrapping ErrRefused; other errors
// (registry, network, a bad policy) do not wrap it.
func Verify(ctx context.Context, ref string, p VerifyPolicy, opts ...Option) (*Verification, error) {
	o := makeOptions(opts)
	v := &Verification{Ref: ref}
	t, err := o.resolve(ctx, ref)
	if err != nil {
		return v, fmt.Errorf("verify %s: %w", ref, err)
	}
	v.Ref, v.Digest = t.digest.String(), t.digest.DigestStr()
	v.Model = modelgate.ModelRef{Name: t.annotations[AnnotationModelName], Version: t.annotations[AnnotationModelVersion]}
	if err := o.verify(ctx, t, p, v); err != nil {
		return v, fmt.Errorf("verify %s: %w", t.digest, err)
	}
	v.Verified = true
	return v, nil
}

func (o *options) verify(ctx context.Context, t target, p VerifyPolicy, v *Verification) error {
	co, who, err := o.checkOpts(ctx, p)
	if err != nil {
		return err
	}
	v.Signer = who
	h, err := v1.NewHash(t.digest.DigestStr())
	if err != nil {
		return err
	}

	co.ClaimVerifier = claimDigest
	sigs, _, err := cosign.VerifyImageSignatures(ctx, t.digest, co)
	if err != nil {
		if !isRefusal(err) {
			return fmt.Errorf("signatures: %w", err)
		}
		return v.refuse(CheckSignature, "no signature of %s verifies with %s: %v", h, who, err)
	}
	v.pass(CheckSignature, "%d signature(s) of %s verified with %s", len(sigs), h, who)

	// cosign checks each envelope's signature; subjects, predicates and
	// verdicts are checked below, with our own messages.
	co.ClaimVerifier = nil
	atts, _, err := cosign.VerifyImageAttestations(ctx, t.digest, co)
	var attErr error
	if err != nil {
		if !isRefusal(err) {
			return fmt.Errorf("attestations: %w", err)
		}
		atts, attErr = nil, err
	}
	byType := map[string][]*Statement{}
	for _, a := range atts {
		st, err := statementOf(a)
		if err != nil {
			return v.refuse(CheckSubject, "a signed attestation is unreadable: %v", err)
		}
		if !st.about(h) {
			return v.refuse(CheckSubject, "an attestation (%s) signed by %s is about %s, not this image's %s",
				st.PredicateType, who, st.subjects(), h)
		}
		byType[st.PredicateType] = append(byType[st.PredicateType], st)
	}
	if len(atts) > 0 {
		v.pass(CheckSubject, "%d attestation(s) signed by %s, all about %s", len(atts), who, h)
	}

	if err := checkGate(v, byType[modelgate.GatePredicateType], p, who, attErr); err != nil {
		return err
	}

	prov := byType[ProvenancePredicateType]
	switch {
	case len(prov) > 0:
		v.pass(CheckProvenance, "SLSA provenance (%s) attested", ProvenancePredicateType)
	case p.RequireProvenance:
		return v.refuse(CheckProvenance, "no SLSA provenance (%s) signed by %s%s", ProvenancePredicateType, who, because(attErr))
	}
	return nil
}

func checkGate(v *Verification, gates []*Statement, p VerifyPolicy, who string, attErr error) error {
	if len(gates) == 0 {
		if p.RequireGate {
			return v.refuse(CheckGate, "no gate attestation (%s) signed by %s%s", modelgate.GatePredicateType, who, because(attErr))
		}
		return nil
	}
	v.pass(CheckGate, "%d gate attestation(s) signed by %s", len(gates), who)
	if v.Model.Name == "" || v.Model.Version == "" {
		return v.refuse(CheckGateModel, "the image has no %s and %s annotations to bind the gate verdict to",
			AnnotationModelName, AnnotationModelVersion)
	}
	preds := make([]modelgate.GatePredicate, 0, len(gates))
	for _, st := range gates {
		var g modelgate.GatePredicate
		if err := json.Unmarshal(st.Predicate, &g); err != nil {
			return v.refuse(CheckGate, "gate predicate: %v", err)
		}
		if g.Model != v.Model {
			return v.refuse(CheckGateModel, "the gate attestation is for model %s version %s, the image is %s version %s",
				g.Model.Name, g.Model.Version, v.Model.Name, v.Model.Version)
		}
		preds = append(preds, g)
	}
	v.pass(CheckGateModel, "gate attestation is for %s version %s, as the image's annotations say", v.Model.Name, v.Model.Version)
	if p.GatePolicyDigest != "" {
		var under []modelgate.GatePredicate
		for _, g := range preds {
			if g.PolicyDigest == p.GatePolicyDigest {
				under = append(under, g)
			}
		}
		if len(under) == 0 {
			return v.refuse(CheckGatePolicy, "no gate attestation was made under gate policy %s (the attestations name %s)", p.GatePolicyDigest, policyDigests(preds))
		}
		v.pass(CheckGatePolicy, "gate attestation made under gate policy %s", p.GatePolicyDigest)
		preds = under
	}
	// The newest decides: a re-gate's verdict replaces the earlier ones.
	// Attestations of the same time must all hold.
	newest := slices.MaxFunc(preds, func(a, b modelgate.GatePredicate) int { return a.Time.Compare(b.Time) }).Time
	for _, g := range preds {
		if !g.Time.Equal(newest) {
			continue
		}
		v.Verdict = g.Verdict
		switch {
		case g.Verdict == modelgate.Pass:
		case g.Verdict == modelgate.Inconclusive && p.AllowInconclusive:
		case g.Verdict == modelgate.Inconclusive:
			return v.refuse(CheckVerdict, "gate verdict is INCONCLUSIVE; accepting it needs an approval (--allow-inconclusive)")
		default:
			return v.refuse(CheckVerdict, "gate verdict is %q, want PASS", g.Verdict)
		}
	}
	when := ""
	if len(preds) > 1 {
		when = fmt.Sprintf(" (the newest of %d, gated %s)", len(preds), newest.Format(time.RFC3339))
	}
	v.pass(CheckVerdict, "gate verdict %s%s", v.Verdict, when)
	return nil
}

// policyDigests lists the gate policy digests of preds, for a refusal.
func policyDigests(preds []modelgate.GatePredicate) string {
	var out []string
	for _, g := range preds {
		d := g.PolicyDigest
		if d == "" {
			d = "none"
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return strings.Join(out, ", ")
}

// because appends cosign's reason why no attestation verified; there is
// none when the image has no attestations at all.
func because(err error) string {
	if err == nil {
		return ""
	}
	msg := strings.TrimSpace(err.Error())
	if strings.HasSuffix(msg, ":") {
		return ""
	}
	return ": " + msg
}

// checkOpts turns a policy into cosign's verification options and says who
// the signer must be.
func (o *options) checkOpts(ctx context.Context, p VerifyPolicy) (*cosign.CheckOpts, string, error) {
	hasKey := len(p.Key) > 0 || p.KeyPath != ""
	hasID := p.CertificateIdentity != "" || p.CertificateOIDCIssuer != ""
	co := &cosign.CheckOpts{RegistryClientOpts: o.ociremote(ctx)}
	switch {
	case hasKey && hasID:
		return nil, "", fmt.Errorf("%w: a key and a certificate identity are mutually exclusive", ErrPolicy)
	case hasKey:
		pem, who := p.Key, "the given key"
		if p.KeyPath != "" {
			b, err := os.ReadFile(p.KeyPath)
			if err != nil {
				return nil, "", fmt.Errorf("%w: %w", ErrPolicy, err)
			}
			pem, who = b, "key "+p.KeyPath
		}
		sv, err := loadPublicKey(pem)
		if err != nil {
			return nil, "", err
		}
		// Key-signed entries are not logged (cosign sign --tlog-upload=false).
		co.SigVerifier, co.IgnoreTlog, co.IgnoreSCT = sv, true, true
		return co, who, nil
	case p.CertificateIdentity == "" || p.CertificateOIDCIssuer == "":
		return nil, "", fmt.Errorf("%w: need a key, or a certificate identity and its OIDC issuer", ErrPolicy)
	}
	tm := p.TrustedRoot
	if tm == nil {
		var err error
		if tm, err = cosign.TrustedRoot(); err != nil {
			return nil, "", fmt.Errorf("sigstore trusted root: %w", err)
		}
	}
	co.TrustedMaterial = tm
	co.IgnoreSCT = p.SkipSCT
	co.Identities = []cosign.Identity{{Subject: p.CertificateIdentity, Issuer: p.CertificateOIDCIssuer}}
	return co, fmt.Sprintf("identity %s (issuer %s)", p.CertificateIdentity, p.CertificateOIDCIssuer), nil
}

// claimDigest checks that a signature's payload names the image's digest,
// so that a valid signature of another image copied here is refused.
func claimDigest(sig oci.Signature, h v1.Hash, _ map[string]any) error {
	p, err := sig.Payload()
	if err != nil {
		return err
	}
	var ss payload.SimpleContainerImage
	if err := json.Unmarshal(p, &ss); err != nil {
		return fmt.Errorf("signature payload: %w", err)
	}
	if got := ss.Critical.Image.DockerManifestDigest; got != h.String() {
		return fmt.Errorf("the signed payload names %s, not %s", got, h)
	}
	return nil
}

// isRefusal separates "nothing verifies" (refused) from errors reaching the
// registry.
func isRefusal(err error) bool {
	var (
		noSigs  *cosign.ErrNoSignaturesFound
		noMatch *cosign.ErrNoMatchingSignatures
		noAtts  *cosign.ErrNoMatchingAttestations
		failure *cosign.VerificationFailure
		noCert  *cosign.ErrNoCertificateFoundOnSignature
	)
	return errors.As(err, &noSigs) || errors.As(err, &noMatch) || errors.As(err, &noAtts) ||
		errors.As(err, &failure) || errors.As(err, &noCert)
}

func (st *Statement) about(h v1.Hash) bool {
	for _, s := range st.Subject {
		if s.Digest[h.Algorithm] == h.Hex {
			return true
		}
	}
	return false
}

func (st *Statement) subjects() string {
	var out []string
	for _, s := range st.Subject {
		for alg, hex := range s.Digest {
			out = append(out, alg+":"+hex)
		}
	}
	if len(out) == 0 {
		return "no subject"
	}
	return strings.Join(out, ", ")
}
