package promote

import (
	"errors"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

// Sentinel errors: callers act on these states (the CLI maps refusals to exit 3).
var (
	// ErrConflict: another writer (promote, deploy, rollback) holds the target
	// environment's lease; nothing was changed.
	ErrConflict = errors.New("another writer holds the environment's lease")
	// ErrNotVerified: the image's signature or gate attestation did not verify.
	ErrNotVerified = errors.New("image verification did not pass")
	// ErrNeedsApproval: the gate verdict is INCONCLUSIVE and the environment
	// requires PASS: a person must approve (with a reason).
	ErrNeedsApproval = errors.New("inconclusive verdict needs approval")
	// ErrDowngrade: the version is not greater than the one the environment runs.
	ErrDowngrade = errors.New("version is not greater than the environment's")
	// ErrVersionConflict: the environment runs, or its repository holds, the
	// same version with another digest.
	ErrVersionConflict = errors.New("version exists with another digest")
	// ErrModelMismatch: the image's annotations name another model or version.
	ErrModelMismatch = errors.New("image is another model or version")
	// ErrStopped: In.StopAfter ended the promotion after the named step.
	ErrStopped = errors.New("promotion stopped after step")
)

// Refused reports whether err is a refusal (verification, approval,
// constraint, downgrade) rather than a failure: exit code 3.
func Refused(err error) bool {
	for _, e := range []error{ErrNotVerified, sign.ErrRefused, ErrNeedsApproval, ErrDowngrade, ErrVersionConflict, ErrModelMismatch, modelgate.ErrConstraint} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
