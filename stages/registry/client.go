package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/modelci/modelci/stages/oci"
)

// conn is one repository of one registry, pinged and authenticated once
// (for push, and pull of the repositories blobs are mounted from), over
// oci.Access's transport: its timeouts and Retry-After handling, and no
// retries of its own. The requests that upload blobs and move tags are
// retried by conn's callers, which know what a retry must resend.
type conn struct {
	repo   name.Repository
	client *http.Client
	access oci.Access
	// anonymous: no credentials were given (nor found in the keychain).
	anonymous bool
}

// dial pings repo's registry and authenticates with push scope on repo and
// pull scope on the repositories in from (same registry only), retrying
// transient failures.
func dial(ctx context.Context, repo name.Repository, access oci.Access, from ...string) (*conn, error) {
	auth, err := access.Auth(repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	scopes := []string{repo.Scope(transport.PushScope)}
	for _, f := range from {
		if f != repo.RepositoryStr() {
			scopes = append(scopes, repo.Registry.Repo(f).Scope(transport.PullScope))
		}
	}
	base := transport.NewUserAgent(access.HTTPTransport(), access.Agent())
	var tr http.RoundTripper
	err = retry(ctx, access, func(int) error {
		var err error
		tr, err = transport.NewWithContext(ctx, repo.Registry, auth, base, scopes)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &conn{repo: repo, client: &http.Client{Transport: tr}, access: access, anonymous: isAnonymous(auth)}, nil
}

// isAnonymous reports whether auth sends no credentials.
func isAnonymous(auth authn.Authenticator) bool {
	if auth == nil || auth == authn.Anonymous {
		return true
	}
	c, err := auth.Authorization()
	return err == nil && (c == nil || *c == authn.AuthConfig{})
}

// url is scheme://host/v2/<repo><suffix>.
func (c *conn) url(suffix string) string {
	return fmt.Sprintf("%s://%s/v2/%s%s", c.repo.Scheme(), c.repo.RegistryStr(), c.repo.RepositoryStr(), suffix)
}

// do sends a request and returns the response when its status is one of
// ok, else the registry's error (*transport.Error, its body read).
func (c *conn) do(req *http.Request, ok ...int) (*http.Response, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, ok...); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// drain reads what is left of a small response body and closes it, so
// that the connection is reused; a body that stalls fails with its
// timeout.
func drain(resp *http.Response) error {
	_, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return err
}

// retry runs fn (given the attempt number, from 0) until it succeeds, fails
// for good (not oci.Retryable), or has failed access's attempts times,
// waiting its backoff between attempts.
func retry(ctx context.Context, access oci.Access, fn func(attempt int) error) error {
	attempts, _, _ := access.Retry()
	var err error
	for i := range attempts {
		if werr := sleep(ctx, access.BackoffFor(i)); werr != nil {
			return errors.Join(err, werr)
		}
		if err = fn(i); err == nil || !oci.Retryable(err) {
			return err
		}
	}
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// statusOf is the HTTP status of a registry's error, 0 when err is not one.
func statusOf(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

// hasCode reports whether a registry's error carries one of the codes.
func hasCode(err error, codes ...transport.ErrorCode) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	for _, d := range te.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}
