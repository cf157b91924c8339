package registry

import (
	"context"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Environment variables holding registry credentials, used when no
// WithCredentials option is given.
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
)

// Option configures Push, Copy, Pull and Resolve.
type Option func(*options)

type options struct {
	tags           []string
	latest         bool
	allowOverwrite bool
	insecure       bool
	username       string
	password       string
	hasCredentials bool
	keychain       authn.Keychain
	jobs           int
	attempts       int
	backoff        time.Duration
	maxRetryAfter  time.Duration
	progress       io.Writer
	log            io.Writer
	userAgent      string
}

func makeOptions(opts []Option) *options {
	o := &options{
		keychain:      authn.DefaultKeychain,
		jobs:          DefaultJobs,
		attempts:      DefaultAttempts,
		backoff:       DefaultBackoff,
		maxRetryAfter: MaxRetryAfter,
		log:           io.Discard,
		userAgent:     "modelci",
	}
	for _, opt := range opts {
		opt(o)
	}
	if !o.hasCredentials {
		if u, p := os.Getenv(EnvUsername), os.Getenv(EnvPassword); u != "" || p != "" {
			o.username, o.password, o.hasCredentials = u, p, true
		}
	}
	return o
}

// WithTags moves these tags to the pushed digest once everything is in
// place. Tags are immutable: see ErrTagExists and WithAllowOverwrite.
func WithTags(tags ...string) Option {
	return func(o *options) { o.tags = append(o.tags, tags...) }
}

// WithLatest also moves the "latest" tag, which is never immutable.
func WithLatest() Option { return func(o *options) { o.latest = true } }

// WithAllowOverwrite lets a tag move from another digest.
func WithAllowOverwrite() Option { return func(o *options) { o.allowOverwrite = true } }

// WithInsecure reaches every registry over plain HTTP (loopback hosts
// always are).
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithCredentials uses basic credentials instead of the environment and the
// Docker config keychain.
func WithCredentials(username, password string) Option {
	return func(o *options) { o.username, o.password, o.hasCredentials = username, password, true }
}

// WithKeychain replaces the Docker config keychain, the default source of
// credentials when none are given explicitly or in the environment.
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithJobs sets how many blobs upload at once (default 4).
func WithJobs(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.jobs = n
		}
	}
}

// WithRetry sets the number of attempts per request or blob upload and the
// first wait between them, which doubles each time. Attempts below 1 mean 1.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(o *options) {
		o.attempts, o.backoff = max(attempts, 1), backoff
	}
}

// WithMaxRetryAfter caps how long a Retry-After header may make us wait.
func WithMaxRetryAfter(d time.Duration) Option { return func(o *options) { o.maxRetryAfter = d } }

// WithProgress reports upload progress to w: a bar redrawn in place when w
// is a terminal, plain lines otherwise.
func WithProgress(w io.Writer) Option { return func(o *options) { o.progress = w } }

// WithLog receives warnings (a layout tag that moved).
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// remote returns go-containerregistry options for ctx.
func (o *options) remote(ctx context.Context) []remote.Option {
	ro := []remote.Option{
		remote.WithContext(ctx),
		remote.WithJobs(o.jobs),
		remote.WithUserAgent(o.userAgent),
		remote.WithTransport(&retryAfter{inner: remote.DefaultTransport, max: o.maxRetryAfter}),
		remote.WithRetryBackoff(remote.Backoff{Duration: o.backoff, Factor: 2, Jitter: 0.1, Steps: o.attempts}),
		remote.WithRetryPredicate(retryable),
		remote.WithRetryStatusCodes(retryStatusCodes...),
	}
	if o.hasCredentials {
		ro = append(ro, remote.WithAuth(&authn.Basic{Username: o.username, Password: o.password}))
	} else {
		ro = append(ro, remote.WithAuthFromKeychain(o.keychain))
	}
	return ro
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
