// Package registry pushes, pulls and copies OCI images and indexes by
// digest, keeps version tags immutable, and serves an embedded OCI
// distribution registry from disk (ARCHITECTURE.md, "Versions and tags").
// References are parsed, and registries reached, through stages/oci.
package registry

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/modelci/modelci/stages/oci"
)

var (
	// ErrBadRef: the string is neither HOST[:PORT]/PATH(:TAG|@sha256:…) nor
	// oci-layout://ABS_PATH@sha256:…; it is oci.ErrBadRef.
	ErrBadRef = oci.ErrBadRef
	// ErrTagExists: the repository holds the tag on another digest; tags are
	// immutable unless WithAllowOverwrite.
	ErrTagExists = errors.New("tag exists with another digest")
	// ErrUnauthorized: the registry answered 401 or 403.
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrUnreachable: no connection to the registry could be made.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrNotFound: the repository, manifest or blob does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch: a reference names a digest other than the content's.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// classify wraps err with the sentinel a caller acts on, keeping the
// registry's own message.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%s: %w: %w", what, ErrUnauthorized, err)
		case http.StatusNotFound:
			return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
		}
		// The registry's error code alone can hide the status.
		return fmt.Errorf("%s: HTTP %d: %w", what, te.StatusCode, err)
	}
	if oci.IsDialError(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
