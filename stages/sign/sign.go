// Package sign signs model images and attests to them with cosign, and
// verifies both before anything deploys (ARCHITECTURE.md, "Attestations").
//
// Everything is written in cosign's registry format, which the cosign v2
// and v3 command-line tools read: the signature of repo@sha256:<hex> is a
// layer of the image tagged repo:sha256-<hex>.sig, in-toto attestations (in
// DSSE envelopes) are layers of repo:sha256-<hex>.att. The per-example
// metrics travel as an OCI artifact tagged repo:sha256-<hex>.metrics (see
// AttachMetrics). cosign is used as a library only inside this package, so
// that a move to cosign v3 bundles stays local.
package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	cremote "github.com/sigstore/cosign/v2/pkg/cosign/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Annotations read from the image manifest and written into signatures.
const (
	AnnotationModelName    = "dev.modelci.model.name"
	AnnotationModelVersion = "dev.modelci.model.version"
	AnnotationRunID        = "dev.modelci.run.id"
)

// In-toto statement and DSSE constants.
const (
	StatementType     = "https://in-toto.io/Statement/v1"
	inTotoPayloadType = "application/vnd.in-toto+json"
	// predicateTypeAnnotation is the layer annotation cosign attest writes.
	predicateTypeAnnotation = "predicateType"
)

// Result is what Sign, Attest and AttachMetrics wrote.
type Result struct {
	// Ref is the signed image, repo@sha256:….
	Ref string `json:"ref"`
	// Digest is the signed image's digest.
	Digest string `json:"digest"`
	// Tag holds the signatures or attestations (repo:sha256-<hex>.sig/.att).
	Tag string `json:"tag"`
	// ManifestDigest is the digest of the manifest now at Tag; a run record
	// keeps it.
	ManifestDigest string `json:"manifest_digest"`
}

// Sign signs ref's digest (a tag is resolved first, with a warning) and
// adds the signature to repo:sha256-<hex>.sig. The signed payload (cosign's
// simple signing format) carries the image's model name and version and the
// run id as annotations.
func Sign(ctx context.Context, ref string, src SignerSource, opts ...Option) (*Result, error) {
	o := makeOptions(opts)
	t, err := o.resolve(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", ref, err)
	}
	s, err := src.load(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", ref, err)
	}
	res, err := o.signDigest(ctx, t, s)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", t.digest, err)
	}
	return res, nil
}

func (o *options) signDigest(ctx context.Context, t target, s *signer) (*Result, error) {
	ann := map[string]any{}
	for _, k := range []string{AnnotationModelName, AnnotationModelVersion} {
		if v := t.annotations[k]; v != "" {
			ann[k] = v
		}
	}
	if o.runID != "" {
		ann[AnnotationRunID] = o.runID
	}
	for k, v := range o.annotations {
		ann[k] = v
	}
	if len(ann) == 0 {
		ann = nil
	}
	p, err := (&payload.Cosign{Image: t.digest, Annotations: ann}).MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("signature payload: %w", err)
	}
	sig, err := s.sv.SignMessage(bytes.NewReader(p), signOpts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	var sopts []static.Option
	if s.cert != nil {
		sopts = append(sopts, static.WithCertChain(s.cert, s.chain))
	}
	if s.log != nil {
		b, err := s.log.uploadSignature(ctx, sig, p, s.cert)
		if err != nil {
			return nil, fmt.Errorf("transparency log: %w", err)
		}
		sopts = append(sopts, static.WithBundle(b))
	}
	ociSig, err := static.NewSignature(p, base64.StdEncoding.EncodeToString(sig), sopts...)
	if err != nil {
		return nil, err
	}
	// The entity is never read: cosign attaches to repo:sha256-<hex>.sig,
	// merging with what is there and skipping an identical signature.
	se := ociremote.SignedUnknown(t.digest, o.ociremote(ctx)...)
	se, err = mutate.AttachSignatureToEntity(se, ociSig, mutate.WithDupeDetector(cremote.NewDupeDetector(s.sv)))
	if err != nil {
		return nil, fmt.Errorf("attach signature: %w", err)
	}
	if err := ociremote.WriteSignatures(t.digest.Repository, se, o.ociremote(ctx)...); err != nil {
		return nil, fmt.Errorf("write signature: %w", err)
	}
	sigs, err := se.Signatures()
	if err != nil {
		return nil, err
	}
	tag, err := ociremote.SignatureTag(t.digest, o.ociremote(ctx)...)
	if err != nil {
		return nil, err
	}
	return result(t.digest, tag, sigs)
}

func result(d name.Digest, tag name.Tag, sigs oci.Signatures) (*Result, error) {
	h, err := sigs.Digest()
	if err != nil {
		return nil, fmt.Errorf("digest of %s: %w", tag, err)
	}
	return &Result{Ref: d.String(), Digest: d.DigestStr(), Tag: tag.String(), ManifestDigest: h.String()}, nil
}

// Statement is an in-toto statement (v1) about one image.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject is an in-toto subject: a name and its digests by algorithm.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Attest signs an in-toto statement (subject: ref's digest) with the given
// predicate in a DSSE envelope and adds it to repo:sha256-<hex>.att, as
// cosign attest does. predicate is marshalled to JSON; a json.RawMessage or
// []byte is taken as JSON already. Earlier attestations of the same
// predicate type are replaced unless WithAppend.
func Attest(ctx context.Context, ref, predicateType string, predicate any, src SignerSource, opts ...Option) (*Result, error) {
	o := makeOptions(opts)
	t, err := o.resolve(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("attest %s: %w", ref, err)
	}
	s, err := src.load(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("attest %s: %w", ref, err)
	}
	res, err := o.attestDigest(ctx, t.digest, predicateType, predicate, s)
	if err != nil {
		return nil, fmt.Errorf("attest %s (%s): %w", t.digest, predicateType, err)
	}
	return res, nil
}

func (o *options) attestDigest(ctx context.Context, d name.Digest, predicateType string, predicate any, s *signer) (*Result, error) {
	pred, err := predicateJSON(predicate)
	if err != nil {
		return nil, err
	}
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return nil, err
	}
	st, err := json.Marshal(Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: d.Repository.Name(), Digest: map[string]string{h.Algorithm: h.Hex}}},
		PredicateType: predicateType,
		Predicate:     pred,
	})
	if err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	env, err := dsse.WrapSigner(s.sv, inTotoPayloadType).SignMessage(bytes.NewReader(st), signOpts(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	ann := map[string]string{predicateTypeAnnotation: predicateType}
	for k, v := range o.annotations {
		ann[k] = v
	}
	sopts := []static.Option{static.WithAnnotations(ann)}
	if s.cert != nil {
		sopts = append(sopts, static.WithCertChain(s.cert, s.chain))
	}
	if s.log != nil {
		b, err := s.log.uploadEnvelope(ctx, env, s.cert)
		if err != nil {
			return nil, fmt.Errorf("transparency log: %w", err)
		}
		sopts = append(sopts, static.WithBundle(b))
	}
	att, err := static.NewAttestation(env, sopts...)
	if err != nil {
		return nil, err
	}
	mopts := []mutate.SignOption{mutate.WithDupeDetector(cremote.NewDupeDetector(s.sv))}
	if !o.appendAtt {
		mopts = append(mopts, mutate.WithReplaceOp(replacePredicate(predicateType)))
	}
	se := ociremote.SignedUnknown(d, o.ociremote(ctx)...)
	se, err = mutate.AttachAttestationToEntity(se, att, mopts...)
	if err != nil {
		return nil, fmt.Errorf("attach attestation: %w", err)
	}
	if err := ociremote.WriteAttestations(d.Repository, se, o.ociremote(ctx)...); err != nil {
		return nil, fmt.Errorf("write attestation: %w", err)
	}
	atts, err := se.Attestations()
	if err != nil {
		return nil, err
	}
	tag, err := ociremote.AttestationTag(d, o.ociremote(ctx)...)
	if err != nil {
		return nil, err
	}
	return result(d, tag, atts)
}

func predicateJSON(p any) (json.RawMessage, error) {
	var b []byte
	switch v := p.(type) {
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(p); err != nil {
			return nil, fmt.Errorf("predicate: %w", err)
		}
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("predicate is not valid JSON")
	}
	return b, nil
}

// replacePredicate drops earlier attestations of one predicate type when a
// new one is attached. (cosign's own replace op prints to stderr and fails
// on layers it cannot parse.)
type replacePredicate string

func (r replacePredicate) Replace(sigs oci.Signatures, add oci.Signature) (oci.Signatures, error) {
	list, err := sigs.Get()
	if err != nil {
		return nil, err
	}
	keep := []oci.Signature{add}
	for _, s := range list {
		if st, err := statementOf(s); err == nil && st.PredicateType == string(r) {
			continue
		}
		keep = append(keep, s)
	}
	return &replaced{Signatures: sigs, list: keep}, nil
}

type replaced struct {
	oci.Signatures
	list []oci.Signature
}

func (r *replaced) Get() ([]oci.Signature, error) { return r.list, nil }

// statementOf decodes the in-toto statement inside an attestation layer's
// DSSE envelope, without checking its signature.
func statementOf(s oci.Signature) (*Statement, error) {
	p, err := s.Payload()
	if err != nil {
		return nil, err
	}
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(p, &env); err != nil {
		return nil, fmt.Errorf("attestation envelope: %w", err)
	}
	if env.PayloadType != inTotoPayloadType {
		return nil, fmt.Errorf("attestation envelope: payload type %q, want %q", env.PayloadType, inTotoPayloadType)
	}
	raw, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("attestation envelope: payload: %w", err)
	}
	var st Statement
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("in-toto statement: %w", err)
	}
	return &st, nil
}
