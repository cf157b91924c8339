package sign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// target is a resolved image: its digest reference and manifest annotations.
type target struct {
	digest      name.Digest
	desc        v1.Descriptor
	annotations map[string]string
}

// parseRef parses a registry reference through stages/oci: the host is
// required (a bare PATH:TAG would silently mean Docker Hub), loopback hosts
// are plain HTTP, and an oci-layout:// reference is ErrLayoutRef.
func (o *options) parseRef(s string) (name.Reference, error) {
	r, err := o.access.ParseRef(s)
	if err == nil {
		err = r.RequireRegistry()
	}
	if err != nil {
		if errors.Is(err, ErrLayoutRef) {
			return nil, fmt.Errorf("signing needs a registry reference, not an OCI layout: %w", err)
		}
		return nil, err
	}
	return r.Name(), nil
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
