package oci

import (
	"context"
	"errors"
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

// Default retry policy: 8 attempts per request with 1s, 1.5s, 2.25s, …
// between them (about 32 s of waiting in all); a Retry-After header is
// honoured up to MaxRetryAfter. Eight attempts survive a registry that
// fails 30 % of requests (0.3^8: 7 requests in 100,000 run out), the retry
// budget of a push (registry.TestPushSurvivesTransientFaults).
const (
	DefaultAttempts = 8
	DefaultBackoff  = time.Second
	// BackoffFactor multiplies the wait after each failed attempt.
	BackoffFactor = 1.5
	MaxRetryAfter = 30 * time.Second
	DefaultJobs   = 4
	DefaultAgent  = "modelci"
	// MaxBackoff caps the growing wait between attempts.
	MaxBackoff = 30 * time.Second
)

// Default waits of one registry request (see Access): connecting, the
// first byte of the response once the request is sent, and a body (either
// way) that moves no byte.
const (
	DefaultConnectTimeout   = 30 * time.Second
	DefaultFirstByteTimeout = 2 * time.Minute
	DefaultIdleTimeout      = 2 * time.Minute
)

// DefaultChunkSize is the most bytes one PATCH of a blob upload carries.
const DefaultChunkSize int64 = 16 << 20

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
	// Backoff is the first wait between attempts, growing by BackoffFactor
	// each time; 0 means DefaultBackoff, below 0 means no wait.
	Backoff time.Duration
	// MaxRetryAfter caps how long a Retry-After header may make a request
	// wait; 0 means MaxRetryAfter, below 0 means not at all.
	MaxRetryAfter time.Duration
	// Jobs is how many blobs upload at once; 0 or less means DefaultJobs.
	Jobs int
	// UserAgent defaults to DefaultAgent.
	UserAgent string
	// Transport is the HTTP transport under the timeouts and the
	// Retry-After handling; nil means remote.DefaultTransport.
	Transport http.RoundTripper

	// ConnectTimeout bounds getting a connection (TCP and TLS) to the
	// registry; FirstByteTimeout the wait for a response once the request
	// is sent; IdleTimeout how long a request or response body may move no
	// byte. Each applies to every attempt of every request; one that runs
	// out fails that attempt with a *TimeoutError (ErrTimeout). A stalled
	// body is retried as other transient failures are (an upload resumes
	// where the registry stands); no connection or no answer is not, so a
	// silent registry fails after about one wait. 0 means the default
	// (DefaultConnectTimeout, DefaultFirstByteTimeout, DefaultIdleTimeout),
	// below 0 no limit.
	ConnectTimeout, FirstByteTimeout, IdleTimeout time.Duration
	// ChunkSize is the most bytes one PATCH of a blob upload carries (for
	// registries that cap a request's size, and so that a broken
	// connection costs at most one chunk); 0 means DefaultChunkSize, below
	// 0 one PATCH per blob.
	ChunkSize int64
}

// WithTimeout returns a with every wait set from d: the first byte and
// idle waits to d, the connect wait to d or DefaultConnectTimeout,
// whichever is shorter. d <= 0 means the defaults.
func (a Access) WithTimeout(d time.Duration) Access {
	if d <= 0 {
		a.ConnectTimeout, a.FirstByteTimeout, a.IdleTimeout = 0, 0, 0
		return a
	}
	a.ConnectTimeout = min(d, DefaultConnectTimeout)
	a.FirstByteTimeout, a.IdleTimeout = d, d
	return a
}

// Timeouts returns the effective waits; 0 is no limit.
func (a Access) Timeouts() (connect, firstByte, idle time.Duration) {
	eff := func(d, def time.Duration) time.Duration {
		switch {
		case d == 0:
			return def
		case d < 0:
			return 0
		}
		return d
	}
	return eff(a.ConnectTimeout, DefaultConnectTimeout), eff(a.FirstByteTimeout, DefaultFirstByteTimeout), eff(a.IdleTimeout, DefaultIdleTimeout)
}

// Chunk returns the effective chunk size of blob uploads; 0 means one PATCH
// per blob.
func (a Access) Chunk() int64 {
	switch {
	case a.ChunkSize == 0:
		return DefaultChunkSize
	case a.ChunkSize < 0:
		return 0
	}
	return a.ChunkSize
}

// HTTPTransport is the transport every registry request goes through,
// without retries: Transport (or remote.DefaultTransport) under the
// timeouts, under the Retry-After handling.
func (a Access) HTTPTransport() http.RoundTripper {
	inner := a.Transport
	if inner == nil {
		inner = remote.DefaultTransport
	}
	_, _, maxRetryAfter := a.Retry()
	connect, firstByte, idle := a.Timeouts()
	return &retryAfter{
		inner: &timeouts{inner: inner, connect: connect, firstByte: firstByte, idle: idle},
		max:   maxRetryAfter,
	}
}

// Agent returns the effective user agent.
func (a Access) Agent() string {
	if a.UserAgent == "" {
		return DefaultAgent
	}
	return a.UserAgent
}

// Auth returns the authenticator for a registry: the explicit credentials,
// else those in the environment, else the keychain's (anonymous when it
// has none).
func (a Access) Auth(res authn.Resource) (authn.Authenticator, error) {
	if auth := a.Authenticator(); auth != nil {
		return auth, nil
	}
	k := a.Keychain
	if k == nil {
		k = authn.DefaultKeychain
	}
	return k.Resolve(res)
}

// BackoffFor returns the wait before attempt i (from 0; attempt 0 waits
// nothing): the first backoff, multiplied by BackoffFactor for each attempt
// after the second, capped at MaxBackoff.
func (a Access) BackoffFor(i int) time.Duration {
	_, backoff, _ := a.Retry()
	if i <= 0 || backoff <= 0 {
		return 0
	}
	d := float64(backoff)
	for range i - 1 {
		d *= BackoffFactor
		if d >= float64(MaxBackoff) {
			return MaxBackoff
		}
	}
	return time.Duration(d)
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
// transport under the timeouts and Retry-After handling (HTTPTransport),
// retries of transient failures
// only (5xx, 408, 429, broken connections; never 401, 403, 404 or a refused
// dial), jobs, user agent and credentials.
func (a Access) RemoteOptions(ctx context.Context) []remote.Option {
	attempts, backoff, _ := a.Retry()
	jobs := a.Jobs
	if jobs <= 0 {
		jobs = DefaultJobs
	}
	ro := []remote.Option{
		remote.WithContext(ctx),
		remote.WithJobs(jobs),
		remote.WithUserAgent(a.Agent()),
		remote.WithTransport(a.HTTPTransport()),
		remote.WithRetryBackoff(remote.Backoff{Duration: backoff, Factor: BackoffFactor, Jitter: 0.1, Steps: attempts}),
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

// What a registry said of the credentials (registry.Preflight).
var (
	// ErrNoCredentials: no credentials were given (explicitly, in the
	// environment or the keychain) and the registry demands them.
	ErrNoCredentials = errors.New("registry demands credentials and none were given")
	// ErrCredentialsRefused: the registry refused the credentials given
	// (401 with credentials).
	ErrCredentialsRefused = errors.New("registry refused the credentials")
	// ErrNoPushPermission: the registry accepted the credentials (or needs
	// none) but refused to start an upload to the repository (403, or a 401
	// for want of push scope).
	ErrNoPushPermission = errors.New("registry allows no push to the repository")
)
