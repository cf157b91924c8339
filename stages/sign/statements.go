package sign

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
)

// Statements returns the in-toto statements of predicateType attached to
// ref's digest and about it, oldest first, WITHOUT checking who signed them.
// It answers "was this already recorded?" for an idempotent writer (a
// promote re-run after an interruption); anything that trusts a statement's
// content must use Verify or VerifiedStatements. An image without
// attestations has none.
func Statements(ctx context.Context, ref, predicateType string, opts ...Option) ([]Statement, error) {
	o := makeOptions(opts)
	t, h, err := o.subject(ctx, ref)
	if err != nil {
		return nil, err
	}
	se, err := ociremote.SignedEntity(t.digest, o.ociremote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("statements of %s: %w", t.digest, err)
	}
	atts, err := se.Attestations()
	if err != nil {
		return nil, fmt.Errorf("attestations of %s: %w", t.digest, err)
	}
	list, err := atts.Get()
	if err != nil {
		return nil, fmt.Errorf("attestations of %s: %w", t.digest, err)
	}
	return statementsOf(list, predicateType, h), nil
}

// VerifiedStatements returns the statements of predicateType about ref's
// digest whose signatures verify with p's signer, oldest first; none is an
// empty list, not an error (an image promoted by someone else). Unlike
// Verify it requires nothing else of the image.
func VerifiedStatements(ctx context.Context, ref, predicateType string, p VerifyPolicy, opts ...Option) ([]Statement, error) {
	o := makeOptions(opts)
	t, h, err := o.subject(ctx, ref)
	if err != nil {
		return nil, err
	}
	co, _, err := o.checkOpts(ctx, p)
	if err != nil {
		return nil, err
	}
	atts, _, err := cosign.VerifyImageAttestations(ctx, t.digest, co)
	if err != nil {
		if isRefusal(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("attestations of %s: %w", t.digest, err)
	}
	return statementsOf(atts, predicateType, h), nil
}

// subject resolves ref to its digest.
func (o *options) subject(ctx context.Context, ref string) (target, v1.Hash, error) {
	t, err := o.resolve(ctx, ref)
	if err != nil {
		return t, v1.Hash{}, fmt.Errorf("statements of %s: %w", ref, err)
	}
	h, err := v1.NewHash(t.digest.DigestStr())
	return t, h, err
}

// statementsOf decodes the statements of predicateType about h; others,
// and unreadable ones (Verify reports those), are left out.
func statementsOf(atts []oci.Signature, predicateType string, h v1.Hash) []Statement {
	var out []Statement
	for _, a := range atts {
		st, err := statementOf(a)
		if err != nil || st.PredicateType != predicateType || !st.about(h) {
			continue
		}
		out = append(out, *st)
	}
	return out
}
