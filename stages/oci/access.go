package oci

import (
	"context"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
)

// Environment variables holding registry credentials, used when Access has
// no explicit Credentials.
const (
	EnvUsername = "MODELCI_REGISTRY_USERNAME"
	EnvPassword = "MODELCI_REGISTRY_PASSWORD"
)

// Default retry policy: 4 attempts with 1s, 2s, 4s between them; a
// Retry-After header is honoured up to MaxRetryAfter.
const (
	DefaultAttempts = 4
	DefaultBackoff  = time.Second
	MaxRetryAfter   = 30 * time.Second
	DefaultJobs     = 4
	DefaultAgent    = "modelci"
)

// Access is how a stage reaches registries: credentials, plain HTTP,
// retries, transport. Zero fields mean the defaults, so the zero Access is
// the default access.
type Access struct {
	// Credentials are used when set; otherwise EnvUsername/EnvPassword
	// when either is set, otherwise Keychain.
	Credentials *authn.Basic
	// Keychain is the source of credentials when none are given
	// explicitly or in the environment; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
	// Insecure reaches every registry over plain HTTP (loopback hosts
	// always are).
	Insecure bool
	// Attempts per request or blob upload; 0 means DefaultAttempts, below 0
	// means 1.
	Attempts int
	// Backoff is the first wait between attempts, doubling each time; 0
	// means DefaultBackoff, below 0 means no wait.
	Backoff time.Duration
	// MaxRetryAfter caps how long a Retry-After header may make a request
	// wait; 0 means MaxRetryAfter, below 0 means not at all.
	MaxRetryAfter time.Duration
	// Jobs is how many blobs upload at once; 0 or less means DefaultJobs.
	Jobs int
	// UserAgent defaults to DefaultAgent.
	UserAgent string
	// Transport is the HTTP transport under the Retry-After handling; nil
	// means remote.DefaultTransport.
	Transport http.RoundTripper
}

// WithCredentials returns a with basic credentials.
func (a Access) WithCredentials(username, password string) Access {
	a.Credentials = &authn.Basic{Username: username, Password: password}
	return a
}

// ParseRef is ParseRef, over plain HTTP for every host when a.Insecure.
func (a Access) ParseRef(s string) (Ref, error) { return parseRef(s, a.Insecure) }

// ParseRepository is ParseRepository, over plain HTTP for every host when
// a.Insecure.
func (a Access) ParseRepository(s string) (Repository, error) {
	return parseRepository(s, a.Insecure)
}

// ParseDest is ParseDest, over plain HTTP for every host when a.Insecure.
func (a Access) ParseDest(s string) (Dest, error) { return parseDest(s, a.Insecure) }

// Retry returns the effective attempts, first backoff and Retry-After cap.
func (a Access) Retry() (attempts int, backoff, maxRetryAfter time.Duration) {
	attempts, backoff, maxRetryAfter = a.Attempts, a.Backoff, a.MaxRetryAfter
	switch {
	case attempts == 0:
		attempts = DefaultAttempts
	case attempts < 0:
		attempts = 1
	}
	switch {
	case backoff == 0:
		backoff = DefaultBackoff
	case backoff < 0:
		backoff = 0
	}
	switch {
	case maxRetryAfter == 0:
		maxRetryAfter = MaxRetryAfter
	case maxRetryAfter < 0:
		maxRetryAfter = 0
	}
	return attempts, backoff, maxRetryAfter
}

// Authenticator returns the explicit credentials, else those in the
// environment, else nil (the keychain decides per registry).
func (a Access) Authenticator() authn.Authenticator {
	if a.Credentials != nil {
		return a.Credentials
	}
	if u, p := os.Getenv(EnvUsername), os.Getenv(EnvPassword); u != "" || p != "" {
		return &authn.Basic{Username: u, Password: p}
	}
	return nil
}

// RemoteOptions returns go-containerregistry options for ctx: the
// transport wrapped in Retry-After handling, retries of transient failures
// only (5xx, 408, 429, broken connections; never 401, 403, 404 or a refused
// dial), jobs, user agent and credentials.
func (a Access) RemoteOptions(ctx context.Context) []remote.Option {
	attempts, backoff, maxRetryAfter := a.Retry()
	jobs := a.Jobs
	if jobs <= 0 {
		jobs = DefaultJobs
	}
	agent := a.UserAgent
	if agent == "" {
		agent = DefaultAgent
	}
	inner := a.Transport
	if inner == nil {
		inner = remote.DefaultTransport
	}
	ro := []remote.Option{
		remote.WithContext(ctx),
		remote.WithJobs(jobs),
		remote.WithUserAgent(agent),
		remote.WithTransport(&retryAfter{inner: inner, max: maxRetryAfter}),
		remote.WithRetryBackoff(remote.Backoff{Duration: backoff, Factor: 2, Jitter: 0.1, Steps: attempts}),
		remote.WithRetryPredicate(Retryable),
		remote.WithRetryStatusCodes(retryStatusCodes...),
	}
	if auth := a.Authenticator(); auth != nil {
		return append(ro, remote.WithAuth(auth))
	}
	k := a.Keychain
	if k == nil {
		k = authn.DefaultKeychain
	}
	return append(ro, remote.WithAuthFromKeychain(k))
}

// CosignOptions returns cosign's registry options for ctx: RemoteOptions,
// so that signing reaches a registry exactly as pushing does.
func (a Access) CosignOptions(ctx context.Context) []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(a.RemoteOptions(ctx)...)}
}

// retryStatusCodes are retried by the transport for requests that can be
// replayed (reads); uploads are retried whole by go-containerregistry.
var retryStatusCodes = []int{
	http.StatusRequestTimeout,
	http.StatusTooManyRequests,
	http.StatusInternalServerError,
	http.StatusBadGateway,
	http.StatusServiceUnavailable,
	http.StatusGatewayTimeout,
}
