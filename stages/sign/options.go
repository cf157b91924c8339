package sign

import (
	"context"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
)

// Option configures Sign, Attest, AttachMetrics, Verify and FetchMetrics.
type Option func(*options)

type options struct {
	log         io.Writer
	transport   http.RoundTripper
	keychain    authn.Keychain
	insecure    bool
	runID       string
	annotations map[string]string
	appendAtt   bool
	userAgent   string
	auth        authn.Authenticator
}

func makeOptions(opts []Option) *options {
	o := &options{
		log:       io.Discard,
		transport: remote.DefaultTransport,
		keychain:  authn.DefaultKeychain,
		userAgent: "modelci",
	}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithLog receives warnings (a tag resolved to a digest).
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// WithTransport sets the HTTP transport used for the registry.
func WithTransport(t http.RoundTripper) Option { return func(o *options) { o.transport = t } }

// WithKeychain replaces the Docker config keychain as the source of
// registry credentials.
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.keychain = k } }

// WithCredentials uses basic credentials for the registry instead of the
// keychain.
func WithCredentials(username, password string) Option {
	return func(o *options) { o.auth = &authn.Basic{Username: username, Password: password} }
}

// WithInsecure reaches every registry over plain HTTP (loopback hosts
// always are).
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithRunID records the pipeline run in the signature's annotations.
func WithRunID(id string) Option { return func(o *options) { o.runID = id } }

// WithAnnotations adds annotations to the signed payload (Sign) or to the
// signature layers (Attest, AttachMetrics).
func WithAnnotations(a map[string]string) Option {
	return func(o *options) {
		if o.annotations == nil {
			o.annotations = map[string]string{}
		}
		for k, v := range a {
			o.annotations[k] = v
		}
	}
}

// WithAppend keeps earlier attestations of the same predicate type next to
// the new one (promotion history). By default Attest replaces them, so an
// image carries one gate verdict: the latest.
func WithAppend() Option { return func(o *options) { o.appendAtt = true } }

func (o *options) remote(ctx context.Context) []remote.Option {
	ro := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(o.transport),
		remote.WithUserAgent(o.userAgent),
	}
	if o.auth != nil {
		return append(ro, remote.WithAuth(o.auth))
	}
	return append(ro, remote.WithAuthFromKeychain(o.keychain))
}

func (o *options) ociremote(ctx context.Context) []ociremote.Option {
	return []ociremote.Option{ociremote.WithRemoteOptions(o.remote(ctx)...)}
}
