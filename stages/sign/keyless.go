package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	rekorclient "github.com/sigstore/rekor/pkg/client"
	rekor "github.com/sigstore/rekor/pkg/generated/client"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// The public Sigstore services that keyless signing uses by default.
const (
	DefaultFulcioURL = "https://fulcio.sigstore.dev"
	DefaultRekorURL  = "https://rekor.sigstore.dev"
)

// Environment variables that hold or fetch the OIDC identity token.
const (
	EnvIDToken             = "SIGSTORE_ID_TOKEN"
	EnvActionsRequestURL   = "ACTIONS_ID_TOKEN_REQUEST_URL"
	EnvActionsRequestToken = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
)

// KeylessOptions configure keyless signing.
type KeylessOptions struct {
	// FulcioURL issues the signing certificate (DefaultFulcioURL if empty).
	FulcioURL string
	// RekorURL is the transparency log (DefaultRekorURL if empty).
	RekorURL string
	// IDToken is the OIDC identity token; if empty it comes from
	// SIGSTORE_ID_TOKEN or, in GitHub Actions, the workflow's token
	// endpoint (audience "sigstore").
	IDToken string
	// HTTPClient reaches Fulcio and the token endpoint
	// (http.DefaultClient if nil).
	HTTPClient *http.Client
}

// Keyless signs with an ephemeral key whose short-lived certificate Fulcio
// issues for the OIDC identity, and records every signature in Rekor (the
// bundle travels with the signature, so verification works offline). The
// key exists only in memory; one certificate serves a whole run.
func Keyless(opts KeylessOptions) SignerSource { return &keylessSource{opts: opts} }

type keylessSource struct {
	opts KeylessOptions

	mu       sync.Mutex
	s        *signer
	notAfter time.Time
}

func (k *keylessSource) load(ctx context.Context, _ *options) (*signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	// Fulcio certificates live minutes: a signature must be logged while the
	// certificate is valid, so a long run gets a fresh one.
	if k.s != nil && time.Now().Before(k.notAfter.Add(-time.Minute)) {
		return k.s, nil
	}
	hc := k.opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	tok := k.opts.IDToken
	if tok == "" {
		var err error
		if tok, err = IDTokenFromEnv(ctx, hc); err != nil {
			return nil, err
		}
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ephemeral key: %w", err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	fulcio := k.opts.FulcioURL
	if fulcio == "" {
		fulcio = DefaultFulcioURL
	}
	cert, chain, err := signingCertificate(ctx, hc, fulcio, tok, sv)
	if err != nil {
		return nil, err
	}
	leaf, err := cryptoutils.UnmarshalCertificatesFromPEM(cert)
	if err != nil || len(leaf) != 1 {
		return nil, fmt.Errorf("fulcio %s: unreadable certificate: %v", fulcio, err)
	}
	rurl := k.opts.RekorURL
	if rurl == "" {
		rurl = DefaultRekorURL
	}
	rc, err := rekorclient.GetRekorClient(rurl, rekorclient.WithUserAgent("modelci"))
	if err != nil {
		return nil, fmt.Errorf("rekor client for %s: %w", rurl, err)
	}
	k.s = &signer{sv: sv, cert: cert, chain: chain, log: &rekorLog{client: rc, url: rurl}}
	k.notAfter = leaf[0].NotAfter
	return k.s, nil
}

// IDTokenFromEnv returns SIGSTORE_ID_TOKEN, or asks the GitHub Actions
// token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL, with the bearer
// ACTIONS_ID_TOKEN_REQUEST_TOKEN) for a token with audience "sigstore".
// Neither is ErrNoIDToken.
func IDTokenFromEnv(ctx context.Context, hc *http.Client) (string, error) {
	if t := os.Getenv(EnvIDToken); t != "" {
		return t, nil
	}
	reqURL, bearer := os.Getenv(EnvActionsRequestURL), os.Getenv(EnvActionsRequestToken)
	if reqURL == "" || bearer == "" {
		return "", ErrNoIDToken
	}
	u, err := url.Parse(reqURL)
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvActionsRequestURL, err)
	}
	q := u.Query()
	q.Set("audience", "sigstore")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("github actions id token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("github actions id token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("github actions id token: %s", resp.Status)
	}
	var v struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Value == "" {
		return "", fmt.Errorf("github actions id token: no token in the response")
	}
	return v.Value, nil
}

// tokenSubject is what Fulcio expects signed as proof of possession: the
// token's verified email, or else its subject.
func tokenSubject(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("oidc token: not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", fmt.Errorf("oidc token: claims: %w", err)
	}
	var c struct {
		Email         string `json:"email"`
		EmailVerified any    `json:"email_verified"`
		Subject       string `json:"sub"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", fmt.Errorf("oidc token: claims: %w", err)
	}
	if c.Email != "" {
		return c.Email, nil
	}
	if c.Subject == "" {
		return "", fmt.Errorf("oidc token: no email or sub claim")
	}
	return c.Subject, nil
}

// signingCertificate asks Fulcio (API v1, as cosign v2 does) for a
// certificate binding sv's public key to the token's identity. It returns
// the leaf and the rest of the chain, PEM-encoded.
func signingCertificate(ctx context.Context, hc *http.Client, fulcioURL, tok string, sv signature.SignerVerifier) (cert, chain []byte, err error) {
	sub, err := tokenSubject(tok)
	if err != nil {
		return nil, nil, err
	}
	pub, err := sv.PublicKey()
	if err != nil {
		return nil, nil, err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, nil, err
	}
	proof, err := sv.SignMessage(strings.NewReader(sub))
	if err != nil {
		return nil, nil, err
	}
	body, err := json.Marshal(map[string]any{
		"publicKey":          map[string]any{"content": pubPEM},
		"signedEmailAddress": proof,
	})
	if err != nil {
		return nil, nil, err
	}
	endpoint := strings.TrimRight(fulcioURL, "/") + "/api/v1/signingCert"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("fulcio %s: %w", fulcioURL, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("fulcio %s: %w", fulcioURL, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("fulcio %s: %w", fulcioURL, err)
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, nil, fmt.Errorf("fulcio %s: %s: %s", fulcioURL, resp.Status, bytes.TrimSpace(out))
	}
	block, rest := pem.Decode(out)
	if block == nil {
		return nil, nil, fmt.Errorf("fulcio %s: no certificate in the response", fulcioURL)
	}
	return pem.EncodeToMemory(block), bytes.TrimSpace(rest), nil
}

// rekorLog uploads to a Rekor transparency log.
type rekorLog struct {
	client *rekor.Rekor
	url    string
}

func (r *rekorLog) uploadSignature(ctx context.Context, sig, payload, certPEM []byte) (*cbundle.RekorBundle, error) {
	h := sha256.New()
	h.Write(payload)
	e, err := cosign.TLogUpload(ctx, r.client, sig, h, certPEM)
	return r.bundle(e, err)
}

func (r *rekorLog) uploadEnvelope(ctx context.Context, envelope, certPEM []byte) (*cbundle.RekorBundle, error) {
	e, err := cosign.TLogUploadDSSEEnvelope(ctx, r.client, envelope, certPEM)
	return r.bundle(e, err)
}

func (r *rekorLog) bundle(e *models.LogEntryAnon, err error) (*cbundle.RekorBundle, error) {
	if err != nil {
		return nil, fmt.Errorf("rekor %s: %w", r.url, err)
	}
	b := cbundle.EntryToBundle(e)
	if b == nil {
		return nil, errors.New("rekor " + r.url + ": the entry has no signed entry timestamp")
	}
	return b, nil
}
