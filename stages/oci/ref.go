// Package oci owns image references and registry access for every stage:
// the one parser of HOST[:PORT]/PATH(:TAG|@sha256:…) and
// oci-layout://ABS_PATH@sha256:… (ARCHITECTURE.md, "Outputs and
// references"), the sentinels callers act on, and Access, which turns
// credentials, plain HTTP, retries and a transport into go-containerregistry
// and cosign options, so that every stage reaches a registry the same way.
package oci

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayoutScheme prefixes references to images in an OCI image layout.
const LayoutScheme = "oci-layout://"

var (
	// ErrBadRef: the string is neither HOST[:PORT]/PATH(:TAG|@sha256:…) nor
	// oci-layout://ABS_PATH@sha256:… (nor HOST[:PORT]/PATH where a
	// repository is asked for).
	ErrBadRef = errors.New("malformed reference")
	// ErrLayoutRef: an oci-layout:// reference where a registry is needed
	// (signatures live next to the image in a registry; a cluster cannot
	// pull from a layout).
	ErrLayoutRef = errors.New("oci-layout reference where a registry reference is needed")
	// ErrNotDigest: the reference names a tag, not a digest, where a digest
	// is needed (a tag can move).
	ErrNotDigest = errors.New("reference is not by digest")
	// ErrNotLayout: a registry reference where an oci-layout:// one is
	// needed.
	ErrNotLayout = errors.New("not an oci-layout reference")
)

var (
	tagRE    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidTag reports whether tag follows the OCI distribution tag grammar,
// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
func ValidTag(tag string) bool { return tagRE.MatchString(tag) }

// Ref is a parsed image reference: a registry reference (by tag or by
// digest) or an OCI layout reference (always by digest). The zero Ref is no
// reference.
type Ref struct {
	name   name.Reference // nil for a layout
	layout string         // the layout's clean absolute directory
	digest v1.Hash
	tag    string
}

// ParseRef parses HOST[:PORT]/PATH:TAG, HOST[:PORT]/PATH@sha256:… or
// oci-layout://ABS_PATH@sha256:…. The registry host is required: a bare
// PATH:TAG would silently mean Docker Hub. Loopback hosts are reached over
// plain HTTP. Every error wraps ErrBadRef and names s.
func ParseRef(s string) (Ref, error) { return parseRef(s, false) }

func parseRef(s string, insecure bool) (Ref, error) {
	if strings.HasPrefix(s, LayoutScheme) {
		return parseLayout(s)
	}
	if err := checkHost(s); err != nil {
		return Ref{}, err
	}
	ref, err := name.ParseReference(s, nameOptions(s, insecure)...)
	if err != nil {
		return Ref{}, fmt.Errorf("reference %q: %w: %w", s, ErrBadRef, err)
	}
	out := Ref{name: ref}
	switch r := ref.(type) {
	case name.Digest:
		h, err := v1.NewHash(r.DigestStr())
		if err != nil {
			return Ref{}, fmt.Errorf("reference %q: %w: %w", s, ErrBadRef, err)
		}
		out.digest = h
	case name.Tag:
		out.tag = r.TagStr()
	}
	return out, nil
}

// ParseLayoutRef parses oci-layout://ABS_PATH@sha256:… alone: anything
// without the scheme is ErrNotLayout, a malformed layout reference
// ErrBadRef; both name s.
func ParseLayoutRef(s string) (Ref, error) {
	if !strings.HasPrefix(s, LayoutScheme) {
		return Ref{}, fmt.Errorf("reference %q: %w", s, ErrNotLayout)
	}
	return parseLayout(s)
}

// parseLayout splits oci-layout://ABS_DIR@sha256:HEX into the cleaned
// directory and the digest.
func parseLayout(s string) (Ref, error) {
	rest, _ := strings.CutPrefix(s, LayoutScheme)
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return Ref{}, fmt.Errorf("reference %q: %w: no @sha256: digest", s, ErrBadRef)
	}
	dir, digest := rest[:at], rest[at+1:]
	if !filepath.IsAbs(dir) {
		return Ref{}, fmt.Errorf("reference %q: %w: path %q is not absolute", s, ErrBadRef, dir)
	}
	h, err := parseDigest(digest)
	if err != nil {
		return Ref{}, fmt.Errorf("reference %q: %w: %w", s, ErrBadRef, err)
	}
	return Ref{layout: filepath.Clean(dir), digest: h}, nil
}

func parseDigest(s string) (v1.Hash, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok || !sha256RE.MatchString(hexPart) {
		return v1.Hash{}, fmt.Errorf("digest %q is not sha256: and 64 lower-case hex digits", s)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hexPart}, nil
}

// SplitPinned splits a container image pinned by digest, NAME@sha256:…,
// into its name and digest. Unlike ParseRef it accepts a name without a
// registry host (a trainer image such as python@sha256:…, which the
// container runtime resolves); the name is not resolved. Errors wrap
// ErrNotDigest and name s.
func SplitPinned(s string) (string, v1.Hash, error) {
	repo, dg, ok := strings.Cut(s, "@")
	if !ok || repo == "" {
		return "", v1.Hash{}, fmt.Errorf("image %q: %w: want NAME@sha256:…", s, ErrNotDigest)
	}
	h, err := parseDigest(dg)
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("image %q: %w: %w", s, ErrNotDigest, err)
	}
	return repo, h, nil
}

// LayoutRef returns the reference to digest in the OCI layout at dir
// (made absolute).
func LayoutRef(dir string, digest v1.Hash) (Ref, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Ref{}, fmt.Errorf("layout reference for %s: %w", dir, err)
	}
	if digest.Algorithm != "sha256" || !sha256RE.MatchString(digest.Hex) {
		return Ref{}, fmt.Errorf("layout reference for %s: %w: digest %q is not sha256: and 64 lower-case hex digits", dir, ErrBadRef, digest)
	}
	return Ref{layout: filepath.Clean(abs), digest: digest}, nil
}

// IsZero reports whether r is no reference.
func (r Ref) IsZero() bool { return r.name == nil && r.layout == "" }

// IsLayout reports whether r points into an OCI layout.
func (r Ref) IsLayout() bool { return r.layout != "" }

// Layout is the layout's clean absolute directory; empty for a registry
// reference.
func (r Ref) Layout() string { return r.layout }

// Digest is the digest r names; the zero Hash when r is by tag.
func (r Ref) Digest() v1.Hash { return r.digest }

// HasDigest reports whether r names a digest.
func (r Ref) HasDigest() bool { return r.digest != (v1.Hash{}) }

// Tag is the tag r names; empty when r is by digest or a layout.
func (r Ref) Tag() string { return r.tag }

// Name is the go-containerregistry reference; nil for a layout.
func (r Ref) Name() name.Reference { return r.name }

// Context is the repository of a registry reference; the zero Repository
// for a layout.
func (r Ref) Context() Repository {
	if r.name == nil {
		return Repository{}
	}
	return Repository{repo: r.name.Context()}
}

// Repository is Context's HOST[:PORT]/PATH; empty for a layout.
func (r Ref) Repository() string { return r.Context().String() }

// DigestName is r as a go-containerregistry digest reference. r must name
// a digest and a registry (see RequireDigest and RequireRegistry).
func (r Ref) DigestName() name.Digest {
	if r.name == nil || !r.HasDigest() {
		return name.Digest{}
	}
	return r.name.Context().Digest(r.digest.String())
}

// String returns the reference in the form ParseRef accepts.
func (r Ref) String() string {
	switch {
	case r.IsLayout():
		return LayoutScheme + r.layout + "@" + r.digest.String()
	case r.name == nil:
		return ""
	}
	return r.name.String()
}

// WithDigest returns the reference to h in r's repository or layout, by
// digest alone (a tag r named is dropped).
func (r Ref) WithDigest(h v1.Hash) Ref {
	switch {
	case r.IsLayout():
		return Ref{layout: r.layout, digest: h}
	case r.name == nil:
		return Ref{}
	}
	return Ref{name: r.name.Context().Digest(h.String()), digest: h}
}

// RequireRegistry refuses a layout reference with ErrLayoutRef.
func (r Ref) RequireRegistry() error {
	if r.IsLayout() {
		return fmt.Errorf("reference %q: %w", r, ErrLayoutRef)
	}
	return nil
}

// RequireLayout refuses a registry reference with ErrNotLayout.
func (r Ref) RequireLayout() error {
	if !r.IsLayout() {
		return fmt.Errorf("reference %q: %w", r, ErrNotLayout)
	}
	return nil
}

// RequireDigest refuses a reference by tag with ErrNotDigest.
func (r Ref) RequireDigest() error {
	if !r.HasDigest() {
		return fmt.Errorf("reference %q: %w", r, ErrNotDigest)
	}
	return nil
}

// Repository is a push target, HOST[:PORT]/PATH. The zero Repository is
// none.
type Repository struct {
	repo name.Repository
}

// ParseRepository parses HOST[:PORT]/PATH. The host is required, as in
// ParseRef; loopback hosts are plain HTTP. Errors wrap ErrBadRef and name s.
func ParseRepository(s string) (Repository, error) { return parseRepository(s, false) }

func parseRepository(s string, insecure bool) (Repository, error) {
	if err := checkHost(s); err != nil {
		return Repository{}, err
	}
	repo, err := name.NewRepository(s, nameOptions(s, insecure)...)
	if err != nil {
		return Repository{}, fmt.Errorf("repository %q: %w: %w", s, ErrBadRef, err)
	}
	return Repository{repo: repo}, nil
}

// CheckRepository says whether s is a valid push target, HOST[:PORT]/PATH.
func CheckRepository(s string) error {
	_, err := ParseRepository(s)
	return err
}

// IsZero reports whether r is no repository.
func (r Repository) IsZero() bool { return r.repo == (name.Repository{}) }

// Name is the go-containerregistry repository.
func (r Repository) Name() name.Repository { return r.repo }

// String returns HOST[:PORT]/PATH.
func (r Repository) String() string {
	if r.IsZero() {
		return ""
	}
	return r.repo.String()
}

// Digest returns the reference to h in r.
func (r Repository) Digest(h v1.Hash) Ref {
	return Ref{name: r.repo.Digest(h.String()), digest: h}
}

// Tag returns the reference to tag in r; a tag outside the OCI grammar is
// ErrBadRef.
func (r Repository) Tag(tag string) (Ref, error) {
	if !ValidTag(tag) {
		return Ref{}, fmt.Errorf("tag %q: %w: want [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag, ErrBadRef)
	}
	return Ref{name: r.repo.Tag(tag), tag: tag}, nil
}

// Dest is a copy destination: a repository or a layout directory, with the
// tag and digest the destination named, if any.
type Dest struct {
	Repository Repository
	Layout     string // clean absolute directory; empty for a registry
	Tag        string
	Digest     v1.Hash
}

// ParseDest parses a copy destination: HOST[:PORT]/PATH,
// HOST[:PORT]/PATH:TAG, HOST[:PORT]/PATH@sha256:…, oci-layout://ABS_PATH or
// oci-layout://ABS_PATH@sha256:…. Errors wrap ErrBadRef and name s.
func ParseDest(s string) (Dest, error) { return parseDest(s, false) }

func parseDest(s string, insecure bool) (Dest, error) {
	if dir, ok := strings.CutPrefix(s, LayoutScheme); ok && !strings.Contains(dir, "@") {
		if !filepath.IsAbs(dir) {
			return Dest{}, fmt.Errorf("reference %q: %w: path %q is not absolute", s, ErrBadRef, dir)
		}
		return Dest{Layout: filepath.Clean(dir)}, nil
	}
	if repo, err := parseRepository(s, insecure); err == nil {
		return Dest{Repository: repo}, nil
	}
	r, err := parseRef(s, insecure)
	if err != nil {
		return Dest{}, err
	}
	if r.IsLayout() {
		return Dest{Layout: r.layout, Digest: r.digest}, nil
	}
	return Dest{Repository: r.Context(), Tag: r.tag, Digest: r.digest}, nil
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
	if insecure || IsLoopback(host) {
		opts = append(opts, name.Insecure)
	}
	return opts
}

// IsLoopback reports whether host[:port] names this machine, which is
// reached over plain HTTP without asking.
func IsLoopback(hostport string) bool {
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
