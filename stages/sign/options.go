package sign

import (
	"context"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/modelci/modelci/stages/oci"
)

// Option configures Sign, Attest, AttachMetrics, Verify and FetchMetrics.
type Option func(*options)

type options struct {
	log         io.Writer
	access      oci.Access
	runID       string
	annotations map[string]string
	appendAtt   bool
}

func makeOptions(opts []Option) *options {
	o := &options{log: io.Discard}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithLog receives warnings (a tag resolved to a digest).
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// WithAccess sets how registries are reached (credentials, plain HTTP,
// retries, transport), exactly as stages/registry does, replacing what
// earlier options set; later options adjust it.
func WithAccess(a oci.Access) Option { return func(o *options) { o.access = a } }

// WithTransport sets the HTTP transport used for the registry:
// oci.Access.Transport.
func WithTransport(t http.RoundTripper) Option { return func(o *options) { o.access.Transport = t } }

// WithKeychain replaces the Docker config keychain as the source of
// registry credentials: oci.Access.Keychain.
func WithKeychain(k authn.Keychain) Option { return func(o *options) { o.access.Keychain = k } }

// WithCredentials uses basic credentials for the registry instead of the
// environment (MODELCI_REGISTRY_USERNAME/PASSWORD) and the keychain.
func WithCredentials(username, password string) Option {
	return func(o *options) { o.access = o.access.WithCredentials(username, password) }
}

// WithInsecure reaches every registry over plain HTTP (loopback hosts
// always are): oci.Access.Insecure.
func WithInsecure() Option { return func(o *options) { o.access.Insecure = true } }

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
	return o.access.RemoteOptions(ctx)
}

func (o *options) ociremote(ctx context.Context) []ociremote.Option {
	return o.access.CosignOptions(ctx)
}
