package registry

import (
	"context"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/stages/oci"
)

// Environment variables holding registry credentials, used when no
// explicit credentials are given (oci.Access).
const (
	EnvUsername = oci.EnvUsername
	EnvPassword = oci.EnvPassword
)

// Option configures Push, Copy, Pull and Resolve.
type Option func(*options)

type options struct {
	access         oci.Access
	tags           []string
	latest         bool
	allowOverwrite bool
	deferTags      bool
	progress       io.Writer
	log            io.Writer
	tagSettle      time.Duration
	// mountFrom is the repository of the destination's registry the
	// artifact comes from (Copy): its blobs are mounted, not uploaded.
	mountFrom string
	// beforeTagWrite runs just before a tag's conditional PUT (tests).
	beforeTagWrite func(tag string)
}

func makeOptions(opts []Option) *options {
	o := &options{log: io.Discard}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithAccess sets how registries are reached (credentials, plain HTTP,
// retries, transport), replacing what earlier options set; later options
// adjust it.
func WithAccess(a oci.Access) Option { return func(o *options) { o.access = a } }

// WithTags moves these tags to the pushed digest once everything is in
// place. Tags are immutable: see ErrTagExists and WithAllowOverwrite.
func WithTags(tags ...string) Option {
	return func(o *options) { o.tags = append(o.tags, tags...) }
}

// WithDeferredTags checks the tags before the push, as WithTags does, but
// leaves them where they are: the caller moves them with a later Copy of
// the digest once it is signed, so a version tag never names an unsigned
// image. Pushed.Tags then lists none.
func WithDeferredTags() Option { return func(o *options) { o.deferTags = true } }

// WithLatest also moves the "latest" tag, which is never immutable.
func WithLatest() Option { return func(o *options) { o.latest = true } }

// WithAllowOverwrite lets a tag move from another digest.
func WithAllowOverwrite() Option { return func(o *options) { o.allowOverwrite = true } }

// WithTagSettle sets how long a push waits, after writing a tag to a
// registry that does not check conditional writes, before reading the tag
// back to find out whether a concurrent push overwrote it (default
// DefaultTagSettle).
func WithTagSettle(d time.Duration) Option {
	return func(o *options) {
		o.tagSettle = d
		if d <= 0 {
			o.tagSettle = time.Nanosecond
		}
	}
}

// WithTimeout sets every wait of a registry request from d
// (oci.Access.WithTimeout): the first byte and idle waits to d, the
// connect wait to d or oci.DefaultConnectTimeout, whichever is shorter.
func WithTimeout(d time.Duration) Option {
	return func(o *options) { o.access = o.access.WithTimeout(d) }
}

// WithChunkSize sets the most bytes one PATCH of a blob upload carries
// (oci.Access.ChunkSize): 0 for oci.DefaultChunkSize, below 0 one PATCH per
// blob.
func WithChunkSize(n int64) Option { return func(o *options) { o.access.ChunkSize = n } }

// WithInsecure reaches every registry over plain HTTP (loopback hosts
// always are): oci.Access.Insecure.
func WithInsecure() Option { return func(o *options) { o.access.Insecure = true } }

// WithCredentials uses basic credentials instead of the environment and the
// Docker config keychain: oci.Access.Credentials.
func WithCredentials(username, password string) Option {
	return func(o *options) { o.access = o.access.WithCredentials(username, password) }
}

// WithKeychain replaces the Docker config keychain, the default source of
// credentials when none are given explicitly or in the environment.
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.access.Keychain = k } }

// WithJobs sets how many blobs upload at once (default 4).
func WithJobs(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.access.Jobs = n
		}
	}
}

// WithRetry sets the number of attempts per request or blob upload and the
// first wait between them, which grows by oci.BackoffFactor each time.
// Attempts below 1 mean 1.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(o *options) {
		o.access.Attempts = max(attempts, 1)
		o.access.Backoff = backoff
		if backoff <= 0 {
			o.access.Backoff = -1 // no wait, not the default
		}
	}
}

// WithMaxRetryAfter caps how long a Retry-After header may make us wait.
func WithMaxRetryAfter(d time.Duration) Option {
	return func(o *options) {
		o.access.MaxRetryAfter = d
		if d <= 0 {
			o.access.MaxRetryAfter = -1 // never wait, not the default
		}
	}
}

// WithProgress reports upload progress to w: a bar redrawn in place when w
// is a terminal, plain lines otherwise.
func WithProgress(w io.Writer) Option { return func(o *options) { o.progress = w } }

// WithLog receives warnings (a layout tag that moved).
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// remote returns go-containerregistry options for ctx.
func (o *options) remote(ctx context.Context) []remote.Option {
	return o.access.RemoteOptions(ctx)
}
