package sign

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"sync"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigopts "github.com/sigstore/sigstore/pkg/signature/options"
)

// Environment variables holding the signing key's password, in the order
// they are read (COSIGN_PASSWORD so that cosign's own keys work unchanged).
const (
	EnvKeyPassword    = "MODELCI_KEY_PASSWORD"
	EnvCosignPassword = "COSIGN_PASSWORD"
)

// PasswordFromEnv returns the key password from MODELCI_KEY_PASSWORD or
// COSIGN_PASSWORD. A variable that is set but empty means an empty password,
// as with cosign; neither set is ErrNoPassword.
func PasswordFromEnv() ([]byte, error) {
	for _, k := range []string{EnvKeyPassword, EnvCosignPassword} {
		if v, ok := os.LookupEnv(k); ok {
			return []byte(v), nil
		}
	}
	return nil, ErrNoPassword
}

// GenerateKeys returns a new ECDSA P-256 key pair in cosign's formats: the
// private key PEM-encoded as an "ENCRYPTED SIGSTORE PRIVATE KEY" under
// password, the public key as a PKIX "PUBLIC KEY" PEM block. cosign reads
// both, and modelci reads keys that cosign generated.
func GenerateKeys(password []byte) (priv, pub []byte, err error) {
	kb, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return password, nil })
	if err != nil {
		return nil, nil, fmt.Errorf("generate key pair: %w", err)
	}
	return kb.PrivateBytes, kb.PublicBytes, nil
}

// SignerSource is where signatures come from: a cosign key (Key, KeyFile)
// or a short-lived certificate for an OIDC identity (Keyless).
type SignerSource interface {
	load(ctx context.Context, o *options) (*signer, error)
}

// signer signs payloads; for keyless signing it also carries the
// certificate chain and logs each signature.
type signer struct {
	sv    signature.SignerVerifier
	cert  []byte // PEM leaf certificate; nil for a key
	chain []byte // PEM intermediates and root
	log   transparencyLog
}

// transparencyLog records signatures and returns the log's promise of
// inclusion, which travels in the signature layer (cosign's bundle).
type transparencyLog interface {
	// uploadSignature logs sig over payload, made by the key in certPEM.
	uploadSignature(ctx context.Context, sig, payload, certPEM []byte) (*cbundle.RekorBundle, error)
	// uploadEnvelope logs a signed DSSE envelope.
	uploadEnvelope(ctx context.Context, envelope, certPEM []byte) (*cbundle.RekorBundle, error)
}

// Key signs with a cosign private key (PEM) encrypted under password.
func Key(pem, password []byte) SignerSource {
	return &keySource{load0: func() ([]byte, error) { return pem, nil }, password: password}
}

// KeyFile signs with the cosign private key in the file at path.
func KeyFile(path string, password []byte) SignerSource {
	return &keySource{load0: func() ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read signing key: %w", err)
		}
		return b, nil
	}, password: password}
}

// keySource decrypts the key once (scrypt is deliberately slow) and reuses
// it for the signature, the attestations and the metrics artifact.
type keySource struct {
	load0    func() ([]byte, error)
	password []byte

	mu sync.Mutex
	s  *signer
}

func (k *keySource) load(context.Context, *options) (*signer, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.s != nil {
		return k.s, nil
	}
	pem, err := k.load0()
	if err != nil {
		return nil, err
	}
	// The password is never part of an error: cosign's decryption error
	// names only the failure.
	sv, err := cosign.LoadPrivateKey(pem, k.password, nil)
	if err != nil {
		return nil, fmt.Errorf("load signing key (wrong password or not a cosign key): %w", err)
	}
	k.s = &signer{sv: sv}
	return k.s, nil
}

// loadPublicKey reads a PEM public key (cosign.pub) as a verifier.
func loadPublicKey(pem []byte) (signature.Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrPolicy, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrPolicy, err)
	}
	return v, nil
}

func signOpts(ctx context.Context) []signature.SignOption {
	return []signature.SignOption{sigopts.WithContext(ctx)}
}

// Open loads a key source's key now, so that a missing key file or a wrong
// password fails before a run builds or pushes anything. Keyless sources
// get their certificate at first use.
func Open(ctx context.Context, src SignerSource) error {
	if k, ok := src.(*keySource); ok {
		_, err := k.load(ctx, makeOptions(nil))
		return err
	}
	return nil
}
