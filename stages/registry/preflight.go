package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/modelci/modelci/stages/oci"
)

// What a registry said of the credentials (Preflight); they are also
// ErrUnauthorized.
var (
	ErrNoCredentials      = oci.ErrNoCredentials
	ErrCredentialsRefused = oci.ErrCredentialsRefused
	ErrNoPushPermission   = oci.ErrNoPushPermission
)

// Preflight checks, before any work is done, that repo (HOST[:PORT]/PATH)
// can be pushed to: the registry answers (GET /v2/, with its
// authentication challenge answered: basic credentials, or a bearer token
// for push), the credentials are accepted, and an upload can start there
// (POST /v2/<repo>/blobs/uploads/), which is cancelled at once (DELETE of
// the upload; a registry that cannot cancel, 404 or 405, or fails to, only
// keeps an empty upload until it expires). Transient failures are retried
// as a push's are.
//
// Errors: ErrNoCredentials (none given, and the registry demands them),
// ErrCredentialsRefused (401 with credentials), ErrNoPushPermission (the
// upload refused: 403, or 401 for want of push scope); the three are also
// ErrUnauthorized. ErrUnreachable, oci.ErrTimeout and the registry's own
// errors otherwise.
func Preflight(ctx context.Context, repo string, opts ...Option) error {
	o := makeOptions(opts)
	r, err := o.access.ParseRepository(repo)
	if err != nil {
		return err
	}
	what := "registry preflight for " + r.String()
	rn := r.Name()
	auth, err := o.access.Auth(rn)
	if err != nil {
		return fmt.Errorf("%s: credentials: %w", what, err)
	}
	anonymous := isAnonymous(auth)
	c, err := dial(ctx, rn, o.access)
	if err != nil {
		// A bearer token refused, or the ping itself.
		return preflightError(what, "authenticate", anonymous, err, nil)
	}

	// Basic credentials are only sent, never checked, by the handshake.
	var resp *http.Response
	err = retry(ctx, o.access, func(int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", rn.Scheme(), rn.RegistryStr()), nil)
		if err != nil {
			return err
		}
		resp, err = c.do(req, http.StatusOK)
		if err != nil {
			return err
		}
		return drain(resp)
	})
	if err != nil {
		return preflightError(what, "ping", anonymous, err, nil)
	}

	var loc string
	err = retry(ctx, o.access, func(int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/blobs/uploads/"), nil)
		if err != nil {
			return err
		}
		resp, err = c.client.Do(req)
		if err != nil {
			return err
		}
		if err := transport.CheckError(resp, http.StatusAccepted, http.StatusCreated); err != nil {
			resp.Body.Close()
			return err
		}
		if err := drain(resp); err != nil {
			return err
		}
		if l, err := resp.Location(); err == nil {
			loc = l.String()
		}
		return nil
	})
	if err != nil {
		return preflightError(what, "start an upload", anonymous, err, resp)
	}
	if loc != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc, nil)
		if err == nil {
			if resp, err := c.client.Do(req); err != nil {
				fmt.Fprintf(o.log, "warning: %s: cancel the test upload: %v\n", what, err)
			} else {
				drain(resp)
				if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
					fmt.Fprintf(o.log, "warning: %s: cancel the test upload: HTTP %d\n", what, resp.StatusCode)
				}
			}
		}
	}
	return nil
}

// credentialError is one of the credential sentinels, also ErrUnauthorized.
type credentialError struct {
	what     string
	sentinel error
	err      error
}

func (e *credentialError) Error() string { return fmt.Sprintf("%s: %v: %v", e.what, e.sentinel, e.err) }
func (e *credentialError) Unwrap() []error {
	return []error{e.sentinel, e.err}
}
func (e *credentialError) Is(target error) bool { return target == ErrUnauthorized }

// preflightError names what the registry's refusal of step means for the
// credentials; resp is the refusing response when there is one.
func preflightError(what, step string, anonymous bool, err error, resp *http.Response) error {
	w := what + ": " + step
	switch statusOf(err) {
	case http.StatusUnauthorized:
		switch {
		case anonymous:
			return &credentialError{w, ErrNoCredentials, err}
		case step == "start an upload" && insufficientScope(resp):
			return &credentialError{w, ErrNoPushPermission, err}
		}
		return &credentialError{w, ErrCredentialsRefused, err}
	case http.StatusForbidden:
		if step == "start an upload" {
			return &credentialError{w, ErrNoPushPermission, err}
		}
		if anonymous {
			return &credentialError{w, ErrNoCredentials, err}
		}
		return &credentialError{w, ErrCredentialsRefused, err}
	}
	if errors.Is(err, ErrUnreachable) {
		return fmt.Errorf("%s: %w", w, err)
	}
	return classify(w, err)
}

// insufficientScope reports whether a 401 says the token lacks the scope
// (RFC 6750: error="insufficient_scope"), not that the credentials are
// wrong.
func insufficientScope(resp *http.Response) bool {
	if resp == nil {
		return false
	}
	for _, v := range resp.Header.Values("WWW-Authenticate") {
		if strings.Contains(v, "insufficient_scope") {
			return true
		}
	}
	return false
}
