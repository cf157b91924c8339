package pipeline

import (
	"errors"
	"fmt"

	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/sign"
)

// ErrNoSigner means a signature was asked for and nothing names a signer.
var ErrNoSigner = errors.New("no signer: a key or keyless is required")

// SignerConfig names who signs: a cosign private key file, or keyless (a
// short-lived Fulcio certificate for the OIDC identity, logged in Rekor).
// Every command and the Dagger module's sign step build their signer from
// one, so a key's password and a keyless identity are read the same way.
type SignerConfig struct {
	// Key is the private key file (cosign.key).
	Key string
	// Password is the key's; nil reads $MODELCI_KEY_PASSWORD or
	// $COSIGN_PASSWORD.
	Password []byte
	// Keyless signs with Fulcio and Rekor, as KeylessOptions say.
	Keyless        bool
	KeylessOptions sign.KeylessOptions
}

// Named says whether c names a signer.
func (c SignerConfig) Named() bool { return c.Key != "" || c.Keyless }

// OrSpec is c, or, when c names no signer, the spec's sign: block (its key
// resolved against the spec's directory).
func (c SignerConfig) OrSpec(sp *spec.Spec) SignerConfig {
	if c.Named() || sp == nil {
		return c
	}
	c.Keyless = sp.Sign.Keyless
	if sp.Sign.Key != "" {
		c.Key = sp.Path(sp.Sign.Key)
	}
	return c
}

// Signer is the signer c names. The key is read and decrypted at the first
// signature, once for all of them.
func Signer(c SignerConfig) (sign.SignerSource, error) {
	switch {
	case c.Key != "" && c.Keyless:
		return nil, fmt.Errorf("%w: a key and keyless are mutually exclusive", ErrNoSigner)
	case c.Keyless:
		return sign.Keyless(c.KeylessOptions), nil
	case c.Key == "":
		return nil, ErrNoSigner
	}
	pw := c.Password
	if pw == nil {
		var err error
		if pw, err = sign.PasswordFromEnv(); err != nil {
			return nil, fmt.Errorf("sign key %s: %w", c.Key, err)
		}
	}
	return sign.KeyFile(c.Key, pw), nil
}
