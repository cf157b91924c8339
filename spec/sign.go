package spec

import (
	"fmt"

	"github.com/modelci/modelci/stages/sign"
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

func (s *Spec) validateSign() []error {
	var errs []error
	if s.Sign.Key != "" && s.Sign.Keyless {
		errs = append(errs, fmt.Errorf("%s: sign: %w: set key or keyless, not both", s.File, ErrSpec))
	}
	return append(errs, s.validateVerify()...)
}

func (s *Spec) validateVerify() []error {
	var errs []error
	v := s.Verify
	if v.Key != "" && (v.CertificateIdentity != "" || v.CertificateOIDCIssuer != "") {
		errs = append(errs, fmt.Errorf("%s: verify: %w: set key, or certificate_identity with certificate_oidc_issuer, not both", s.File, ErrSpec))
	}
	if (v.CertificateIdentity == "") != (v.CertificateOIDCIssuer == "") {
		errs = append(errs, fmt.Errorf("%s: verify: %w: certificate_identity and certificate_oidc_issuer go together", s.File, ErrSpec))
	}
	return errs
}

// VerifyPolicy is the spec's verify: block as stages/sign takes it, with
// the gate attestation required to be made under the spec's gate: block
// (what deploy, promote and rollback require when a spec is given).
func (s *Spec) VerifyPolicy() sign.VerifyPolicy {
	p := s.Verify.Policy()
	p.GatePolicyDigest = s.Gate.Digest()
	return p
}

// Policy is the verify: block as stages/sign takes it; the gate
// attestation is required. Key is absolute once loaded.
func (v VerifySpec) Policy() sign.VerifyPolicy {
	return sign.VerifyPolicy{
		KeyPath:               v.Key,
		CertificateIdentity:   v.CertificateIdentity,
		CertificateOIDCIssuer: v.CertificateOIDCIssuer,
		RequireGate:           true,
	}
}

// Set says whether the block names a signer to verify against.
func (v VerifySpec) Set() bool { return v.Key != "" || v.CertificateIdentity != "" }
