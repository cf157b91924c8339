package sign

import (
	"errors"

	"github.com/modelci/modelci/stages/oci"
)

var (
	// ErrRefused is a verification that did not pass: no valid signature, a
	// missing or failing gate attestation, a subject or model that does not
	// match. It is always wrapped with the precise reason; callers exit 3 on
	// it (ARCHITECTURE.md, "Exit codes"), unlike registry or network errors.
	ErrRefused = errors.New("verification refused")
	// ErrLayoutRef: signatures live next to the image in a registry, so an
	// oci-layout:// reference cannot be signed or verified; oci.ErrLayoutRef.
	ErrLayoutRef = oci.ErrLayoutRef
	// ErrBadRef: the reference is not HOST[:PORT]/PATH(:TAG|@sha256:…);
	// oci.ErrBadRef.
	ErrBadRef = oci.ErrBadRef
	// ErrNoPassword: the key password is in neither MODELCI_KEY_PASSWORD nor
	// COSIGN_PASSWORD and there is no terminal to ask on.
	ErrNoPassword = errors.New("no key password: set MODELCI_KEY_PASSWORD or COSIGN_PASSWORD")
	// ErrNoIDToken: keyless signing found no OIDC token (SIGSTORE_ID_TOKEN,
	// or ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN).
	ErrNoIDToken = errors.New("no OIDC identity token for keyless signing: set SIGSTORE_ID_TOKEN or run in GitHub Actions with id-token: write")
	// ErrPolicy: a VerifyPolicy names neither a key nor a certificate
	// identity and issuer, or names both.
	ErrPolicy = errors.New("invalid verification policy")
	// ErrNoMetrics: the image has no metrics artifact attached.
	ErrNoMetrics = errors.New("no metrics artifact attached")
)
