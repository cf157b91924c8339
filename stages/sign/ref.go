package sign

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// layoutScheme prefixes OCI layout references (ARCHITECTURE.md, "Outputs
// and references").
const layoutScheme = "oci-layout://"

// target is a resolved image: its digest reference and manifest annotations.
type target struct {
	digest      name.Digest
	desc        v1.Descriptor
	annotations map[string]string
}

// parseRef parses a registry reference. The host is required (a bare
// PATH:TAG would silently mean Docker Hub); loopback hosts are plain HTTP.
func (o *options) parseRef(s string) (name.Reference, error) {
	if strings.HasPrefix(s, layoutScheme) {
		return nil, fmt.Errorf("%s: %w", s, ErrLayoutRef)
	}
	host, _, ok := strings.Cut(s, "/")
	if !ok || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return nil, fmt.Errorf("%w: %q: want HOST[:PORT]/PATH with a tag or digest", ErrBadRef, s)
	}
	var nopts []name.Option
	if o.insecure || isLoopback(host) {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(s, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadRef, s, err)
	}
	return ref, nil
}

func isLoopback(hostport string) bool {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// resolve finds the digest behind ref (warning when ref is a tag: a tag can
// move, the signature binds the digest) and reads the manifest's
// annotations.
func (o *options) resolve(ctx context.Context, s string) (target, error) {
	ref, err := o.parseRef(s)
	if err != nil {
		return target{}, err
	}
	desc, err := remote.Get(ref, o.remote(ctx)...)
	if err != nil {
		return target{}, fmt.Errorf("fetch %s: %w", ref, err)
	}
	d := ref.Context().Digest(desc.Digest.String())
	if _, isTag := ref.(name.Tag); isTag {
		fmt.Fprintf(o.log, "warning: %s is a tag; using its digest %s\n", ref, desc.Digest)
	}
	// Image manifests and indexes both carry top-level annotations.
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return target{}, fmt.Errorf("manifest of %s: %w", d, err)
	}
	return target{digest: d, desc: desc.Descriptor, annotations: m.Annotations}, nil
}
