// Package registry pushes, pulls and copies OCI images and indexes by
// digest, keeps version tags immutable, and serves an embedded OCI
// distribution registry from disk (ARCHITECTURE.md, "Versions and tags").
package registry

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/image"
)

var (
	// ErrBadRef: the string is neither HOST[:PORT]/PATH(:TAG|@sha256:…) nor
	// oci-layout://ABS_PATH@sha256:….
	ErrBadRef = errors.New("malformed reference")
	// ErrTagExists: the repository holds the tag on another digest; tags are
	// immutable unless WithAllowOverwrite.
	ErrTagExists = errors.New("tag exists with another digest")
	// ErrUnauthorized: the registry answered 401 or 403.
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrUnreachable: no connection to the registry could be made.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrNotFound: the repository, manifest or blob does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch: a reference names a digest other than the content's.
	ErrDigestMismatch = errors.New("digest mismatch")
)

// Ref is a parsed image reference: a registry reference (by tag or by
// digest) or an OCI layout reference.
type Ref struct {
	// Name is the registry reference; nil for a layout.
	Name name.Reference
	// Layout is the layout's absolute directory; empty for a registry.
	Layout string
	// Digest is set when the reference names one.
	Digest v1.Hash
	// Tag is set when the reference names one.
	Tag string
}

// IsLayout reports whether r points into an OCI layout.
func (r Ref) IsLayout() bool { return r.Layout != "" }

// String returns the reference in the form ParseRef accepts.
func (r Ref) String() string {
	if r.IsLayout() {
		s, _ := image.LayoutRef(r.Layout, r.Digest)
		return s
	}
	if r.Name == nil {
		return ""
	}
	return r.Name.String()
}

// ParseRef parses HOST[:PORT]/PATH:TAG, HOST[:PORT]/PATH@sha256:… or
// oci-layout://ABS_PATH@sha256:…. The registry host is required: a bare
// PATH:TAG would silently mean Docker Hub. Loopback hosts are reached over
// plain HTTP.
func ParseRef(s string) (Ref, error) { return parseRef(s, false) }

func parseRef(s string, insecure bool) (Ref, error) {
	if strings.HasPrefix(s, image.LayoutScheme) {
		dir, h, err := image.ParseLayoutRef(s)
		if err != nil {
			return Ref{}, fmt.Errorf("%w: %w", ErrBadRef, err)
		}
		return Ref{Layout: dir, Digest: h}, nil
	}
	if err := checkHost(s); err != nil {
		return Ref{}, err
	}
	ref, err := name.ParseReference(s, nameOptions(s, insecure)...)
	if err != nil {
		return Ref{}, fmt.Errorf("reference %q: %w: %w", s, ErrBadRef, err)
	}
	out := Ref{Name: ref}
	switch r := ref.(type) {
	case name.Digest:
		h, err := v1.NewHash(r.DigestStr())
		if err != nil {
			return Ref{}, fmt.Errorf("reference %q: %w: %w", s, ErrBadRef, err)
		}
		out.Digest = h
	case name.Tag:
		out.Tag = r.TagStr()
	}
	return out, nil
}

// parseRepo parses HOST[:PORT]/PATH, the target of a push.
func parseRepo(s string, insecure bool) (name.Repository, error) {
	if err := checkHost(s); err != nil {
		return name.Repository{}, err
	}
	repo, err := name.NewRepository(s, nameOptions(s, insecure)...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("repository %q: %w: %w", s, ErrBadRef, err)
	}
	return repo, nil
}

// checkHost insists on an explicit registry host, as Docker recognises one:
// the first path element has a dot or a port, or is localhost.
func checkHost(s string) error {
	host, _, ok := strings.Cut(s, "/")
	if !ok || host == "" {
		return fmt.Errorf("reference %q: %w: want HOST[:PORT]/PATH", s, ErrBadRef)
	}
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return fmt.Errorf("reference %q: %w: %q is not a registry host (want HOST[:PORT]/PATH)", s, ErrBadRef, host)
	}
	return nil
}

func nameOptions(s string, insecure bool) []name.Option {
	opts := []name.Option{name.StrictValidation}
	host, _, _ := strings.Cut(s, "/")
	if insecure || isLoopback(host) {
		opts = append(opts, name.Insecure)
	}
	return opts
}

// isLoopback reports whether host[:port] names this machine, which is
// reached over plain HTTP without asking.
func isLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckRepository says whether s is a valid push target, HOST[:PORT]/PATH.
func CheckRepository(s string) error {
	_, err := parseRepo(s, false)
	return err
}
