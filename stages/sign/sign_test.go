package sign_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

func TestGenerateKeys(t *testing.T) {
	priv, pub, err := sign.GenerateKeys([]byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(priv); b == nil || b.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" {
		t.Fatalf("private key is not an encrypted sigstore key: %.60q", priv)
	}
	if b, _ := pem.Decode(pub); b == nil || b.Type != "PUBLIC KEY" {
		t.Fatalf("public key is not a PEM public key: %.60q", pub)
	}
	// cosign's own loader reads the key with the password, not without.
	if _, err := cosign.LoadPrivateKey(priv, []byte(testPassword), nil); err != nil {
		t.Fatalf("cosign cannot load the key: %v", err)
	}
	if _, err := cosign.LoadPrivateKey(priv, []byte("wrong"), nil); err == nil {
		t.Fatal("the key loaded with a wrong password")
	}
	if bytes.Contains(priv, []byte(testPassword)) {
		t.Fatal("the private key file contains the password")
	}
}

func TestSignAttestVerify(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	ref := pushModel(t, r, "models/diabetes", "diabetes", "1.0.0")
	digest := ref[strings.Index(ref, "@")+1:]

	s, err := sign.Sign(ctx(t), ref, k.source(), sign.WithRunID("run-42"))
	if err != nil {
		t.Fatal(err)
	}
	wantSigTag := r.Host + "/models/diabetes:sha256-" + strings.TrimPrefix(digest, "sha256:") + ".sig"
	if s.Tag != wantSigTag || s.Ref != ref || !strings.HasPrefix(s.ManifestDigest, "sha256:") {
		t.Errorf("Sign = %+v, want tag %s and ref %s", s, wantSigTag, ref)
	}
	a, err := sign.Attest(ctx(t), ref, modelgate.GatePredicateType, gate("diabetes", "1.0.0", modelgate.Pass), k.source())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(a.Tag, ".att") {
		t.Errorf("attestation tag %s, want a .att tag", a.Tag)
	}
	if _, err := sign.Attest(ctx(t), ref, sign.ProvenancePredicateType, provenance(t, "diabetes", "1.0.0"), k.source()); err != nil {
		t.Fatal(err)
	}

	v, err := sign.Verify(ctx(t), ref, sign.VerifyPolicy{KeyPath: k.pubPath, RequireGate: true, RequireProvenance: true})
	if err != nil {
		t.Fatalf("Verify: %v (checks %+v)", err, v.Checks)
	}
	if !v.Verified || v.Verdict != modelgate.Pass || v.Digest != digest || v.Model != (modelgate.ModelRef{Name: "diabetes", Version: "1.0.0"}) {
		t.Errorf("Verification = %+v", v)
	}
	var names []string
	for _, c := range v.Checks {
		if !c.Passed {
			t.Errorf("check %s did not pass: %s", c.Name, c.Detail)
		}
		names = append(names, c.Name)
	}
	for _, want := range []string{sign.CheckSignature, sign.CheckSubject, sign.CheckGate, sign.CheckGateModel, sign.CheckVerdict, sign.CheckProvenance} {
		if !slices.Contains(names, want) {
			t.Errorf("checks %v lack %s", names, want)
		}
	}

	// The signed payload carries the model and the run id.
	sigs := signatureLayers(t, r.Host+"/models/diabetes:"+strings.Replace(digest, ":", "-", 1)+".sig")
	var p struct {
		Optional map[string]string `json:"optional"`
	}
	payload, _ := sigs[0].Payload()
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{sign.AnnotationModelName: "diabetes", sign.AnnotationModelVersion: "1.0.0", sign.AnnotationRunID: "run-42"}
	for key, val := range want {
		if p.Optional[key] != val {
			t.Errorf("signature annotation %s = %q, want %q", key, p.Optional[key], val)
		}
	}
}

func TestAttestReplacesSamePredicateType(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	ref := pushModel(t, r, "m", "m", "1.0.0")
	if _, err := sign.Sign(ctx(t), ref, k.source()); err != nil {
		t.Fatal(err)
	}
	// An INCONCLUSIVE verdict approved later is re-attested as PASS; the
	// image keeps only the latest gate verdict (and the provenance).
	for _, v := range []modelgate.Verdict{modelgate.Inconclusive, modelgate.Pass} {
		if _, err := sign.Attest(ctx(t), ref, modelgate.GatePredicateType, gate("m", "1.0.0", v), k.source()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sign.Attest(ctx(t), ref, sign.ProvenancePredicateType, provenance(t, "m", "1.0.0"), k.source()); err != nil {
		t.Fatal(err)
	}
	if got := len(signatureLayers(t, attTag(ref))); got != 2 {
		t.Errorf("%d attestation layers, want 2 (gate, provenance)", got)
	}
	if _, err := sign.Verify(ctx(t), ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}); err != nil {
		t.Fatalf("Verify after re-attesting PASS: %v", err)
	}
}

func TestSignResolvesTagWithWarning(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	ref := pushModel(t, r, "m", "m", "2.0.0")
	var log bytes.Buffer
	res, err := sign.Sign(ctx(t), r.Host+"/m:2.0.0", k.source(), sign.WithLog(&log))
	if err != nil {
		t.Fatal(err)
	}
	if res.Ref != ref {
		t.Errorf("signed %s, want the digest %s", res.Ref, ref)
	}
	if !strings.Contains(log.String(), "is a tag") {
		t.Errorf("no warning about the tag in %q", log.String())
	}
	if _, err := sign.Verify(ctx(t), ref, sign.VerifyPolicy{Key: k.pub}); err != nil {
		t.Fatal(err)
	}
}

func TestRefErrors(t *testing.T) {
	k := newKeyPair(t)
	for _, tc := range []struct {
		ref  string
		want error
	}{
		{"oci-layout:///tmp/out/oci@sha256:" + strings.Repeat("0", 64), sign.ErrLayoutRef},
		{"models/diabetes:1.0.0", sign.ErrBadRef},
		{"127.0.0.1:1/Bad Repo:1", sign.ErrBadRef},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			if _, err := sign.Sign(ctx(t), tc.ref, k.source()); !errors.Is(err, tc.want) {
				t.Errorf("Sign: %v, want %v", err, tc.want)
			}
			if _, err := sign.Verify(ctx(t), tc.ref, sign.VerifyPolicy{Key: k.pub}); !errors.Is(err, tc.want) || errors.Is(err, sign.ErrRefused) {
				t.Errorf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyPolicyErrors(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	ref := pushModel(t, r, "m", "m", "1.0.0")
	for _, tc := range []struct {
		name string
		p    sign.VerifyPolicy
	}{
		{"nothing", sign.VerifyPolicy{}},
		{"key and identity", sign.VerifyPolicy{Key: k.pub, CertificateIdentity: "a@b", CertificateOIDCIssuer: "https://issuer"}},
		{"identity without issuer", sign.VerifyPolicy{CertificateIdentity: "a@b"}},
		{"not a key", sign.VerifyPolicy{Key: []byte("not a key")}},
		{"missing key file", sign.VerifyPolicy{KeyPath: "/nonexistent/cosign.pub"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sign.Verify(ctx(t), ref, tc.p)
			if !errors.Is(err, sign.ErrPolicy) || errors.Is(err, sign.ErrRefused) {
				t.Errorf("Verify: %v, want ErrPolicy and not ErrRefused", err)
			}
		})
	}
}

func TestVerifyRefused(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	other := newKeyPair(t)
	pass := func(model, version string) modelgate.GatePredicate { return gate(model, version, modelgate.Pass) }

	for _, tc := range []struct {
		name string
		// setup signs and attests an image and returns it with the policy.
		setup func(t *testing.T) (string, sign.VerifyPolicy)
		want  string
	}{{
		name: "unsigned image",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			return pushModel(t, r, "unsigned", "m", "1.0.0"), sign.VerifyPolicy{Key: k.pub}
		},
		want: "signature: no signature of sha256:",
	}, {
		name: "wrong key",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "wrongkey", "m", "1.0.0")
			mustSign(t, ref, other)
			return ref, sign.VerifyPolicy{Key: k.pub}
		},
		want: "invalid signature",
	}, {
		name: "signature of another digest copied onto this one",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "copied", "m", "1.0.0")
			src := pushModel(t, r, "copied", "m", "0.9.0")
			mustSign(t, src, k)
			copyImage(t, sigTag(src), sigTag(ref))
			return ref, sign.VerifyPolicy{Key: k.pub}
		},
		want: "the signed payload names sha256:",
	}, {
		name: "tampered attestation payload",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "tampered", "m", "1.0.0")
			mustSign(t, ref, k)
			mustAttest(t, ref, gate("m", "1.0.0", modelgate.Fail), k)
			tamperAttestation(t, ref, `"verdict":"FAIL"`, `"verdict":"PASS"`)
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}
		},
		want: "gate-attestation: no gate attestation",
	}, {
		name: "attestation whose subject is another digest",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "subject", "m", "1.0.0")
			src := pushModel(t, r, "subject", "m", "0.9.0")
			mustSign(t, ref, k)
			mustAttest(t, src, pass("m", "1.0.0"), k)
			copyImage(t, attTag(src), attTag(ref))
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}
		},
		want: "attestation-subject: an attestation (" + modelgate.GatePredicateType + ") signed by the given key is about sha256:",
	}, {
		name: "FAIL verdict",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "fail", "m", "1.0.0")
			mustSign(t, ref, k)
			mustAttest(t, ref, gate("m", "1.0.0", modelgate.Fail), k)
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}
		},
		want: `gate-verdict: gate verdict is "FAIL", want PASS`,
	}, {
		name: "FAIL verdict present but gate not required",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "fail2", "m", "1.0.0")
			mustSign(t, ref, k)
			mustAttest(t, ref, gate("m", "1.0.0", modelgate.Fail), k)
			return ref, sign.VerifyPolicy{Key: k.pub}
		},
		want: `gate verdict is "FAIL"`,
	}, {
		name: "INCONCLUSIVE without approval",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "inconclusive", "m", "1.0.0")
			mustSign(t, ref, k)
			mustAttest(t, ref, gate("m", "1.0.0", modelgate.Inconclusive), k)
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}
		},
		want: "gate verdict is INCONCLUSIVE",
	}, {
		name: "replayed attestation of an earlier model version",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "replay", "m", "1.1.0")
			mustSign(t, ref, k)
			mustAttest(t, ref, pass("m", "1.0.0"), k)
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}
		},
		want: "gate-model: the gate attestation is for model m version 1.0.0, the image is m version 1.1.0",
	}, {
		name: "gate attestation of another model",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "othermodel", "m", "1.0.0")
			mustSign(t, ref, k)
			mustAttest(t, ref, pass("n", "1.0.0"), k)
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}
		},
		want: "is for model n version 1.0.0",
	}, {
		name: "gate attestation by another key",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "otherattester", "m", "1.0.0")
			mustSign(t, ref, k)
			mustAttest(t, ref, pass("m", "1.0.0"), other)
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}
		},
		want: "no gate attestation",
	}, {
		name: "no gate attestation",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "nogate", "m", "1.0.0")
			mustSign(t, ref, k)
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}
		},
		want: "gate-attestation: no gate attestation (" + modelgate.GatePredicateType + ")",
	}, {
		name: "no provenance",
		setup: func(t *testing.T) (string, sign.VerifyPolicy) {
			ref := pushModel(t, r, "noprov", "m", "1.0.0")
			mustSign(t, ref, k)
			mustAttest(t, ref, pass("m", "1.0.0"), k)
			return ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true, RequireProvenance: true}
		},
		want: "provenance: no SLSA provenance",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ref, p := tc.setup(t)
			v, err := sign.Verify(ctx(t), ref, p)
			if !errors.Is(err, sign.ErrRefused) {
				t.Fatalf("Verify: %v, want ErrRefused", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify: %v\nwant it to contain %q", err, tc.want)
			}
			t.Logf("refused: %v", err)
			if v == nil || v.Verified || len(v.Checks) == 0 || v.Checks[len(v.Checks)-1].Passed {
				t.Errorf("Verification %+v: want a failed last check", v)
			}
		})
	}

	t.Run("INCONCLUSIVE with approval", func(t *testing.T) {
		ref := pushModel(t, r, "approved", "m", "1.0.0")
		mustSign(t, ref, k)
		mustAttest(t, ref, gate("m", "1.0.0", modelgate.Inconclusive), k)
		v, err := sign.Verify(ctx(t), ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true, AllowInconclusive: true})
		if err != nil || v.Verdict != modelgate.Inconclusive {
			t.Fatalf("Verify = %+v, %v; want verified INCONCLUSIVE", v, err)
		}
	})
}

func TestVerifyRegistryErrorIsNotRefusal(t *testing.T) {
	k := newKeyPair(t)
	r := newRegistry(t)
	_, err := sign.Verify(ctx(t), r.Host+"/absent@sha256:"+strings.Repeat("1", 64), sign.VerifyPolicy{Key: k.pub})
	if err == nil || errors.Is(err, sign.ErrRefused) {
		t.Fatalf("Verify of a missing image: %v, want an error that is not ErrRefused", err)
	}
}

func TestPasswordNeverLeaks(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	ref := pushModel(t, r, "secret", "m", "1.0.0")
	var log bytes.Buffer
	var errs []string
	if _, err := sign.Sign(ctx(t), ref, sign.KeyFile(k.privPath, []byte(testPassword)), sign.WithLog(&log)); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Attest(ctx(t), ref, modelgate.GatePredicateType, gate("m", "1.0.0", modelgate.Pass), k.source(), sign.WithLog(&log)); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.AttachMetrics(ctx(t), ref, metricsJSON(t), k.source(), sign.WithLog(&log)); err != nil {
		t.Fatal(err)
	}
	// A password that is almost right must not be echoed either.
	almost := testPassword[:len(testPassword)-1]
	for _, src := range []sign.SignerSource{sign.Key(k.priv, []byte(almost)), sign.KeyFile(k.privPath, []byte(almost))} {
		_, err := sign.Sign(ctx(t), ref, src, sign.WithLog(&log))
		if err == nil {
			t.Fatal("signed with a wrong password")
		}
		errs = append(errs, err.Error())
	}
	v, err := sign.Verify(ctx(t), ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true})
	if err != nil {
		t.Fatal(err)
	}
	vj, _ := json.Marshal(v)

	haystacks := map[string]string{
		"registry traffic (manifests, layers)": r.contents(),
		"log":                                  log.String(),
		"errors":                               strings.Join(errs, "\n"),
		"verification":                         string(vj),
	}
	for what, s := range haystacks {
		for _, needle := range []string{almost, base64.StdEncoding.EncodeToString([]byte(almost))} {
			if strings.Contains(s, needle) {
				t.Errorf("the password appears in the %s", what)
			}
		}
	}
	if !strings.Contains(r.contents(), "dev.modelci.model.name") {
		t.Fatal("the registry recording is empty: the search above proved nothing")
	}
}

func mustSign(t *testing.T, ref string, k keyPair) {
	t.Helper()
	if _, err := sign.Sign(ctx(t), ref, k.source()); err != nil {
		t.Fatal(err)
	}
}

func mustAttest(t *testing.T, ref string, g modelgate.GatePredicate, k keyPair) {
	t.Helper()
	if _, err := sign.Attest(ctx(t), ref, modelgate.GatePredicateType, g, k.source()); err != nil {
		t.Fatal(err)
	}
}

func suffixTag(ref, suffix string) string {
	repo, digest, _ := strings.Cut(ref, "@")
	return repo + ":" + strings.Replace(digest, ":", "-", 1) + "." + suffix
}

func sigTag(ref string) string { return suffixTag(ref, "sig") }
func attTag(ref string) string { return suffixTag(ref, "att") }

func copyImage(t *testing.T, from, to string) {
	t.Helper()
	src, err := name.ParseReference(from, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := name.ParseReference(to, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img); err != nil {
		t.Fatal(err)
	}
}

func signatureLayers(t *testing.T, tag string) []oci.Signature {
	t.Helper()
	ref, err := name.ParseReference(tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := ociremote.Signatures(ref)
	if err != nil {
		t.Fatal(err)
	}
	l, err := sigs.Get()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// tamperAttestation rewrites the statement inside ref's attestation
// envelope, keeping the original signature.
func tamperAttestation(t *testing.T, ref, old, new string) {
	t.Helper()
	atts := signatureLayers(t, attTag(ref))
	p, _ := atts[0].Payload()
	var env map[string]any
	if err := json.Unmarshal(p, &env); err != nil {
		t.Fatal(err)
	}
	st, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
	if !bytes.Contains(st, []byte(old)) {
		t.Fatalf("statement %s lacks %s", st, old)
	}
	env["payload"] = base64.StdEncoding.EncodeToString(bytes.Replace(st, []byte(old), []byte(new), 1))
	tampered, _ := json.Marshal(env)
	ann, _ := atts[0].Annotations()
	att, err := static.NewAttestation(tampered, static.WithAnnotations(ann))
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	se, err := mutate.AttachAttestationToEntity(ociremote.SignedUnknown(d), att, mutate.WithReplaceOp(replaceAll{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := ociremote.WriteAttestations(d.Repository, se); err != nil {
		t.Fatal(err)
	}
}

type replaceAll struct{}

func (replaceAll) Replace(sigs oci.Signatures, add oci.Signature) (oci.Signatures, error) {
	return only{Signatures: sigs, sig: add}, nil
}

type only struct {
	oci.Signatures
	sig oci.Signature
}

func (o only) Get() ([]oci.Signature, error) { return []oci.Signature{o.sig}, nil }

// stripBundle rewrites ref's signatures without their transparency log
// bundles.
func stripBundle(t *testing.T, ref string) {
	t.Helper()
	sigs := signatureLayers(t, sigTag(ref))
	payload, _ := sigs[0].Payload()
	b64, _ := sigs[0].Base64Signature()
	ann, _ := sigs[0].Annotations()
	cert, chain := ann["dev.sigstore.cosign/certificate"], ann["dev.sigstore.cosign/chain"]
	sig, err := static.NewSignature(payload, b64, static.WithCertChain([]byte(cert), []byte(chain)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	se, err := mutate.AttachSignatureToEntity(ociremote.SignedUnknown(d), sig, mutate.WithReplaceOp(replaceAll{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := ociremote.WriteSignatures(d.Repository, se); err != nil {
		t.Fatal(err)
	}
}

// TestOldVerdictsDoNotOutliveNewOnes: after a stricter re-gate attests
// INCONCLUSIVE, putting the earlier attestation manifest back under the
// .att tag (registry write access, no key) passes a plain verify but not
// one that requires the current gate policy; among several attestations
// the newest by signed time decides.
func TestOldVerdictsDoNotOutliveNewOnes(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	ref := pushModel(t, r, "m", "m", "1.0.0")
	mustSign(t, ref, k)
	loose, strict := modelgate.DefaultPolicy(), modelgate.DefaultPolicy()
	loose.Threshold, strict.Threshold = ptr(5000.0), ptr(3000.0)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	attested := func(p modelgate.Policy, v modelgate.Verdict, when time.Time) modelgate.GatePredicate {
		g := gate("m", "1.0.0", v)
		g.Policy, g.PolicyDigest, g.Time = p, p.Digest(), when
		return g
	}
	mustAttest(t, ref, attested(loose, modelgate.Pass, at), k)
	earlier := resolveTag(t, attTag(ref))
	mustAttest(t, ref, attested(strict, modelgate.Inconclusive, at.Add(time.Hour)), k)
	now := resolveTag(t, attTag(ref))

	under := func(p modelgate.Policy) sign.VerifyPolicy {
		return sign.VerifyPolicy{Key: k.pub, RequireGate: true, GatePolicyDigest: p.Digest()}
	}
	if _, err := sign.Verify(ctx(t), ref, under(strict)); !errors.Is(err, sign.ErrRefused) {
		t.Fatalf("verify after the stricter re-gate: %v, want refused (INCONCLUSIVE)", err)
	}

	// The attacker puts the earlier attestation manifest back.
	retag(t, ref, earlier, attTag(ref))
	if _, err := sign.Verify(ctx(t), ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true}); err != nil {
		t.Fatalf("a plain verify of the re-tagged attestation: %v (it cannot tell; the policy can)", err)
	}
	v, err := sign.Verify(ctx(t), ref, under(strict))
	if !errors.Is(err, sign.ErrRefused) || !strings.Contains(err.Error(), sign.CheckGatePolicy) || !strings.Contains(err.Error(), loose.Digest()) {
		t.Fatalf("verify under the current policy of the re-tagged old attestation: %v, want a %s refusal naming %s", err, sign.CheckGatePolicy, loose.Digest())
	}
	if c := v.Checks[len(v.Checks)-1]; c.Name != sign.CheckGatePolicy || c.Passed {
		t.Errorf("last check %+v, want a failed %s", c, sign.CheckGatePolicy)
	}
	if _, err := sign.Verify(ctx(t), ref, under(loose)); err != nil {
		t.Fatalf("verify under the earlier policy: %v", err)
	}
	retag(t, ref, now, attTag(ref))

	// Both kept side by side: the newest decides, in either order of signing.
	for _, order := range [][2]modelgate.Verdict{{modelgate.Pass, modelgate.Inconclusive}, {modelgate.Inconclusive, modelgate.Pass}} {
		mustAttest(t, ref, attested(loose, order[1], at.Add(2*time.Hour)), k)
		if _, err := sign.Attest(ctx(t), ref, modelgate.GatePredicateType, attested(loose, order[0], at.Add(time.Hour)), k.source(), sign.WithAppend()); err != nil {
			t.Fatal(err)
		}
		v, err := sign.Verify(ctx(t), ref, sign.VerifyPolicy{Key: k.pub, RequireGate: true})
		if (order[1] == modelgate.Pass) != (err == nil) || v.Verdict != order[1] {
			t.Errorf("older %s, newer %s: verdict %s, err %v; want the newer to decide", order[0], order[1], v.Verdict, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// resolveTag is the digest tag names now.
func resolveTag(t *testing.T, tag string) string {
	t.Helper()
	r, err := name.ParseReference(tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r)
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest.String()
}

// retag points tag at the manifest digest of ref's repository, as anyone
// with write access to the registry can.
func retag(t *testing.T, ref, digest, tag string) {
	t.Helper()
	repo, _, _ := strings.Cut(ref, "@")
	copyImage(t, repo+"@"+digest, tag)
}
