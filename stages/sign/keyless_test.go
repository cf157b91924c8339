package sign_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-openapi/runtime"
	"github.com/go-openapi/strfmt"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

const testIssuer = "https://token.actions.example.invalid"

// sigstoreStack is an in-process Fulcio (API v1) and Rekor (entries API)
// over real HTTP. The CA is built with sigstore-go's testing helpers; the
// log signs its entry timestamps with a VirtualSigstore's Rekor key, so
// that cosign's keyless verification checks a real certificate chain,
// identity and transparency log promise.
type sigstoreStack struct {
	fulcioURL, rekorURL string
	trusted             root.TrustedMaterial
	ca                  root.CertificateAuthority
	logs                map[string]*root.TransparencyLog
}

func newSigstoreStack(t testing.TB) *sigstoreStack {
	t.Helper()
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	interCert, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	fulcio := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert, err := issue(r, interCert, interKey)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		for _, c := range []*x509.Certificate{cert, interCert, rootCert} {
			_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		}
	}))
	t.Cleanup(fulcio.Close)

	var index atomic.Int64
	rekor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entry, err := logEntry(r, vs, index.Add(1)-1)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(entry)
	}))
	t.Cleanup(rekor.Close)

	s := &sigstoreStack{
		fulcioURL: fulcio.URL,
		rekorURL:  rekor.URL,
		ca: &root.FulcioCertificateAuthority{
			Root:                rootCert,
			Intermediates:       []*x509.Certificate{interCert},
			ValidityPeriodStart: time.Now().Add(-time.Hour),
			ValidityPeriodEnd:   time.Now().Add(time.Hour),
			URI:                 fulcio.URL,
		},
		logs: vs.RekorLogs(),
	}
	s.trusted = trustedRoot(t, s.ca, s.logs)
	return s
}

func trustedRoot(t testing.TB, ca root.CertificateAuthority, logs map[string]*root.TransparencyLog) root.TrustedMaterial {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{ca}, nil, nil, logs)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// issue is Fulcio's /api/v1/signingCert: it checks the proof of possession
// (the token's email signed by the key) and certifies the key for the
// token's email and issuer. Token signatures are not checked: the test is
// the identity provider.
func issue(r *http.Request, inter *x509.Certificate, interKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	if r.URL.Path != "/api/v1/signingCert" || r.Method != http.MethodPost {
		return nil, fmt.Errorf("unexpected %s %s", r.Method, r.URL.Path)
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("no bearer JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var claims struct {
		Iss   string `json:"iss"`
		Email string `json:"email"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, err
	}
	var req struct {
		PublicKey struct {
			Content []byte `json:"content"`
		} `json:"publicKey"`
		SignedEmailAddress []byte `json:"signedEmailAddress"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return nil, err
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(req.PublicKey.Content)
	if err != nil {
		return nil, err
	}
	ecPub, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	h := sha256.Sum256([]byte(claims.Email))
	if !ecdsa.VerifyASN1(ecPub, h[:], req.SignedEmailAddress) {
		return nil, errors.New("proof of possession does not verify")
	}
	return ca.GenerateLeafCert(claims.Email, claims.Iss, time.Now().Add(-time.Minute), publicOnly{ecPub}, inter, interKey)
}

// publicOnly lets ca.GenerateLeafCert certify a key whose private half the
// CA never sees.
type publicOnly struct{ pub crypto.PublicKey }

func (p publicOnly) Public() crypto.PublicKey { return p.pub }
func (publicOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("public key only")
}

// logEntry is Rekor's POST /api/v1/log/entries: it canonicalises the
// proposed entry (which checks its signature) and returns it with a signed
// entry timestamp.
func logEntry(r *http.Request, vs *ca.VirtualSigstore, index int64) (map[string]models.LogEntryAnon, error) {
	if r.URL.Path != "/api/v1/log/entries" || r.Method != http.MethodPost {
		return nil, fmt.Errorf("unexpected %s %s", r.Method, r.URL.Path)
	}
	pe, err := models.UnmarshalProposedEntry(r.Body, runtime.JSONConsumer())
	if err != nil {
		return nil, err
	}
	ei, err := types.CreateVersionedEntry(pe)
	if err != nil {
		return nil, err
	}
	canonical, err := types.CanonicalizeEntry(r.Context(), ei)
	if err != nil {
		return nil, err
	}
	logID, err := vs.RekorLogID()
	if err != nil {
		return nil, err
	}
	body := base64.StdEncoding.EncodeToString(canonical)
	integrated := time.Now().Unix()
	set, err := vs.RekorSignPayload(tlog.RekorPayload{Body: body, IntegratedTime: integrated, LogIndex: index, LogID: logID})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(canonical)
	return map[string]models.LogEntryAnon{hex.EncodeToString(sum[:]): {
		Body:           body,
		IntegratedTime: &integrated,
		LogID:          &logID,
		LogIndex:       &index,
		Verification:   &models.LogEntryAnonVerification{SignedEntryTimestamp: strfmt.Base64(set)},
	}}, nil
}

// idToken is an unsigned OIDC token for email at testIssuer.
func idToken(email string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]any{"iss": testIssuer, "sub": "repo:modelci/models:ref:refs/heads/main", "email": email, "email_verified": true, "aud": "sigstore"})
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(claims) + "." + enc([]byte("unsigned"))
}

func TestKeyless(t *testing.T) {
	stack := newSigstoreStack(t)
	r := newRegistry(t)
	ref := pushModel(t, r, "keyless", "m", "1.0.0")
	src := sign.Keyless(sign.KeylessOptions{FulcioURL: stack.fulcioURL, RekorURL: stack.rekorURL, IDToken: idToken("ci@modelci.example")})
	if _, err := sign.Sign(ctx(t), ref, src); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Attest(ctx(t), ref, modelgate.GatePredicateType, gate("m", "1.0.0", modelgate.Pass), src); err != nil {
		t.Fatal(err)
	}
	// The signature layers carry the certificate chain and the log's bundle.
	sigs := signatureLayers(t, sigTag(ref))
	if c, err := sigs[0].Cert(); err != nil || c == nil {
		t.Fatalf("signature has no certificate: %v", err)
	}
	if b, err := sigs[0].Bundle(); err != nil || b == nil {
		t.Fatalf("signature has no transparency log bundle: %v", err)
	}

	policy := sign.VerifyPolicy{
		CertificateIdentity:   "ci@modelci.example",
		CertificateOIDCIssuer: testIssuer,
		TrustedRoot:           stack.trusted,
		SkipSCT:               true, // the test CA has no CT log
		RequireGate:           true,
	}
	v, err := sign.Verify(ctx(t), ref, policy)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !strings.Contains(v.Signer, "ci@modelci.example") || v.Verdict != modelgate.Pass {
		t.Errorf("Verification = %+v", v)
	}

	otherStack := newSigstoreStack(t)
	for _, tc := range []struct {
		name string
		edit func(*sign.VerifyPolicy)
		want string
	}{
		{"certificate of another identity", func(p *sign.VerifyPolicy) { p.CertificateIdentity = "release@modelci.example" },
			"none of the expected identities matched"},
		{"another issuer", func(p *sign.VerifyPolicy) { p.CertificateOIDCIssuer = "https://accounts.example.invalid" },
			"none of the expected identities matched"},
		{"certificate from an untrusted CA", func(p *sign.VerifyPolicy) { p.TrustedRoot = trustedRoot(t, otherStack.ca, stack.logs) },
			"leaf certificate verification failed"},
		{"entry from an untrusted log", func(p *sign.VerifyPolicy) { p.TrustedRoot = trustedRoot(t, stack.ca, otherStack.logs) },
			"rekor log public key not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy
			tc.edit(&p)
			_, err := sign.Verify(ctx(t), ref, p)
			if !errors.Is(err, sign.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify: %v\nwant ErrRefused containing %q", err, tc.want)
			}
			t.Logf("refused: %v", err)
		})
	}

	t.Run("signature without a log entry", func(t *testing.T) {
		// A certificate-signed signature whose transparency log bundle was
		// stripped is refused: keyless verification needs the log entry.
		ref := pushModel(t, r, "keyless", "m", "1.0.1")
		if _, err := sign.Sign(ctx(t), ref, src); err != nil {
			t.Fatal(err)
		}
		stripBundle(t, ref)
		_, err := sign.Verify(ctx(t), ref, policy)
		if !errors.Is(err, sign.ErrRefused) {
			t.Fatalf("Verify: %v, want ErrRefused", err)
		}
		t.Logf("refused: %v", err)
	})
}

func TestIDTokenFromEnv(t *testing.T) {
	gh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer request-token" || r.URL.Query().Get("audience") != "sigstore" {
			http.Error(w, "bad request", http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"value": "gh-oidc-token"})
	}))
	t.Cleanup(gh.Close)
	for _, tc := range []struct {
		name              string
		env               map[string]string
		want              string
		wantErr, wantNone bool
	}{
		{name: "sigstore env", env: map[string]string{sign.EnvIDToken: "env-token"}, want: "env-token"},
		{name: "github actions", env: map[string]string{sign.EnvActionsRequestURL: gh.URL + "/token?api-version=2.0", sign.EnvActionsRequestToken: "request-token"}, want: "gh-oidc-token"},
		{name: "github actions, wrong request token", env: map[string]string{sign.EnvActionsRequestURL: gh.URL + "/token", sign.EnvActionsRequestToken: "nope"}, wantErr: true},
		{name: "none", env: map[string]string{}, wantErr: true, wantNone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{sign.EnvIDToken, sign.EnvActionsRequestURL, sign.EnvActionsRequestToken} {
				t.Setenv(k, tc.env[k])
			}
			got, err := sign.IDTokenFromEnv(ctx(t), http.DefaultClient)
			if tc.wantErr {
				if err == nil || errors.Is(err, sign.ErrNoIDToken) != tc.wantNone {
					t.Fatalf("IDTokenFromEnv = %q, %v; want an error (ErrNoIDToken: %v)", got, err, tc.wantNone)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("IDTokenFromEnv = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
