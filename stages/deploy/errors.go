package deploy

import (
	"errors"

	"github.com/modelci/modelci/stages/oci"
)

// Sentinel errors: callers act on these states (the CLI maps them to exit codes and messages).
var (
	// ErrNotDigest: the image reference names a tag, not a digest (or is malformed); only
	// digests are deployed. It is oci.ErrNotDigest.
	ErrNotDigest = oci.ErrNotDigest
	// ErrLayoutRef: the reference is an oci-layout:// reference, which a cluster cannot pull.
	// It is oci.ErrLayoutRef.
	ErrLayoutRef = oci.ErrLayoutRef
	// ErrInvalidConfig: a deploy setting is out of range or malformed.
	ErrInvalidConfig = errors.New("invalid deploy config")
	// ErrInvalidSteps: canary steps are not increasing percentages ending at 100.
	ErrInvalidSteps = errors.New("invalid canary steps")
	// ErrConflict: another writer holds the app's lease.
	ErrConflict = errors.New("another deploy or rollback holds the lease")
	// ErrNamespaceNotFound: the namespace does not exist (create it, or pass --create-namespace).
	ErrNamespaceNotFound = errors.New("namespace not found")
	// ErrUnreachable: the API server could not be reached.
	ErrUnreachable = errors.New("kubernetes api server unreachable")
	// ErrForbidden: RBAC refused a request.
	ErrForbidden = errors.New("forbidden by kubernetes rbac")
	// ErrContext: the kubeconfig has no such context, or no kubeconfig was found.
	ErrContext = errors.New("kubeconfig context not found")
	// ErrProgressDeadline: a Deployment exceeded its progress deadline.
	ErrProgressDeadline = errors.New("rollout exceeded its progress deadline")
	// ErrAnalysisFailed: a canary analysis did not pass.
	ErrAnalysisFailed = errors.New("canary analysis did not pass")
	// ErrRolledBack: the release failed and the previous release was restored. It is joined
	// with the cause (ErrProgressDeadline or ErrAnalysisFailed).
	ErrRolledBack = errors.New("release failed and was rolled back")
	// ErrNoRelease: the app has no release history in the namespace.
	ErrNoRelease = errors.New("no release")
	// ErrVersionNotFound: rollback --to names a version the history does not hold.
	ErrVersionNotFound = errors.New("version not in release history")
	// ErrNotVerified: the image's verification did not pass.
	ErrNotVerified = errors.New("image verification did not pass")
	// ErrReleaseMismatch: the release's name or version is not what the
	// verified image's signed annotations say (a refusal, like a failed
	// signature).
	ErrReleaseMismatch = errors.New("release is not the verified model")
	// ErrUntrusted: the release the history names may not be restored: not
	// an image by digest, outside the expected repository, or deployed
	// unverified (a refusal, like a failed signature).
	ErrUntrusted = errors.New("release not trusted")
	// ErrNoVerifier: no verifier was given and verification was not explicitly skipped.
	ErrNoVerifier = errors.New("no verifier configured")
)
