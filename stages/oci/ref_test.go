package oci_test

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/oci"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var h64 = v1.Hash{Algorithm: "sha256", Hex: hex64}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in                     string
		wantErr                error
		layout, tag, digest    string
		registry, repo, scheme string
	}{
		{in: "127.0.0.1:5000/models/m@sha256:" + hex64, digest: "sha256:" + hex64, registry: "127.0.0.1:5000", repo: "models/m", scheme: "http"},
		{in: "localhost:5000/m:1.0.0", tag: "1.0.0", registry: "localhost:5000", repo: "m", scheme: "http"},
		{in: "localhost/m:1.0.0", tag: "1.0.0", registry: "localhost", repo: "m", scheme: "http"},
		{in: "[::1]:5000/m:1.0.0_build", tag: "1.0.0_build", registry: "[::1]:5000", repo: "m", scheme: "http"},
		{in: "registry.example:443/team/m:2", tag: "2", registry: "registry.example:443", repo: "team/m", scheme: "https"},
		{in: "oci-layout:///tmp/out/oci@sha256:" + hex64, layout: "/tmp/out/oci", digest: "sha256:" + hex64},
		{in: "oci-layout:///tmp/out/../oci@sha256:" + hex64, layout: "/tmp/oci", digest: "sha256:" + hex64},
		{in: "m:1.0.0", wantErr: oci.ErrBadRef},
		{in: "team/m:1.0.0", wantErr: oci.ErrBadRef},
		{in: "registry.example/m", wantErr: oci.ErrBadRef},
		{in: "registry.example/M:1", wantErr: oci.ErrBadRef},
		{in: "registry.example/m:1+build", wantErr: oci.ErrBadRef},
		{in: "registry.example/m@sha256:abc", wantErr: oci.ErrBadRef},
		{in: "registry.example/m@md5:" + hex64[:32], wantErr: oci.ErrBadRef},
		{in: "oci-layout://relative@sha256:" + hex64, wantErr: oci.ErrBadRef},
		{in: "oci-layout:///abs", wantErr: oci.ErrBadRef},
		{in: "oci-layout:///abs@sha256:" + strings.ToUpper(hex64), wantErr: oci.ErrBadRef},
		{in: "", wantErr: oci.ErrBadRef},
		{in: "/m:1", wantErr: oci.ErrBadRef},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := oci.ParseRef(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "\""+tc.in+"\"") {
					t.Fatalf("error %q does not name the input %q", err, tc.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Layout() != tc.layout || r.Tag() != tc.tag || (tc.digest != "" && r.Digest().String() != tc.digest) {
				t.Fatalf("got layout %q tag %q digest %s", r.Layout(), r.Tag(), r.Digest())
			}
			if r.HasDigest() != (tc.digest != "") {
				t.Fatalf("HasDigest() = %v, want %v", r.HasDigest(), tc.digest != "")
			}
			if tc.layout != "" {
				if !r.IsLayout() || r.Name() != nil || !r.Context().IsZero() || r.RequireRegistry() == nil {
					t.Fatalf("layout ref %+v", r)
				}
				return
			}
			c := r.Name().Context()
			if c.RegistryStr() != tc.registry || c.RepositoryStr() != tc.repo || c.Scheme() != tc.scheme {
				t.Fatalf("registry %q repo %q scheme %q; want %q %q %q", c.RegistryStr(), c.RepositoryStr(), c.Scheme(), tc.registry, tc.repo, tc.scheme)
			}
			if got := r.Repository(); got != tc.registry+"/"+tc.repo {
				t.Fatalf("Repository() = %q, want %q", got, tc.registry+"/"+tc.repo)
			}
			if r.String() != tc.in {
				t.Fatalf("String() = %q, want %q", r.String(), tc.in)
			}
		})
	}
}

// Access.Insecure makes every host plain HTTP; loopback hosts already are.
func TestAccessParseRefInsecure(t *testing.T) {
	for _, tc := range []struct {
		in       string
		insecure bool
		scheme   string
	}{
		{"registry.example/m:1", false, "https"},
		{"registry.example/m:1", true, "http"},
		{"127.0.0.1:5000/m:1", false, "http"},
	} {
		r, err := oci.Access{Insecure: tc.insecure}.ParseRef(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		repo, err := oci.Access{Insecure: tc.insecure}.ParseRepository(strings.TrimSuffix(tc.in, ":1"))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Name().Context().Scheme(); got != tc.scheme {
			t.Errorf("ParseRef(%q), insecure %v: scheme %q, want %q", tc.in, tc.insecure, got, tc.scheme)
		}
		if got := repo.Name().Scheme(); got != tc.scheme {
			t.Errorf("ParseRepository(%q), insecure %v: scheme %q, want %q", tc.in, tc.insecure, got, tc.scheme)
		}
	}
}

func TestParseLayoutRef(t *testing.T) {
	tests := []struct {
		ref     string
		dir     string
		wantErr error
	}{
		{"oci-layout:///tmp/out/oci@sha256:" + hex64, "/tmp/out/oci", nil},
		{"oci-layout:///tmp/a@b/oci/@sha256:" + hex64, "/tmp/a@b/oci", nil},
		{"oci-layout:///@sha256:" + hex64, "/", nil},
		{"registry.test/repo@sha256:" + hex64, "", oci.ErrNotLayout},
		{"/tmp/out/oci@sha256:" + hex64, "", oci.ErrNotLayout},
		{"oci-layout:///tmp/out/oci", "", oci.ErrBadRef},
		{"oci-layout://tmp/out/oci@sha256:" + hex64, "", oci.ErrBadRef},
		{"oci-layout://@sha256:" + hex64, "", oci.ErrBadRef},
		{"oci-layout:///tmp/oci@sha256:" + strings.ToUpper(hex64), "", oci.ErrBadRef},
		{"oci-layout:///tmp/oci@sha256:" + hex64[:63], "", oci.ErrBadRef},
		{"oci-layout:///tmp/oci@sha512:" + hex64 + hex64, "", oci.ErrBadRef},
		{"oci-layout:///tmp/oci@" + hex64, "", oci.ErrBadRef},
		{"oci-layout:///tmp/oci:1.0.0", "", oci.ErrBadRef},
	}
	for _, tt := range tests {
		r, err := oci.ParseLayoutRef(tt.ref)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("ParseLayoutRef(%q): error %v, want %v", tt.ref, err, tt.wantErr)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), "\""+tt.ref+"\"") {
			t.Errorf("ParseLayoutRef(%q): error %q does not name the input", tt.ref, err)
		}
		if err == nil && (r.Layout() != tt.dir || r.Digest().String() != "sha256:"+hex64 || r.RequireLayout() != nil) {
			t.Errorf("ParseLayoutRef(%q) = %q, %s", tt.ref, r.Layout(), r.Digest())
		}
	}
}

func TestLayoutRef(t *testing.T) {
	r, err := oci.LayoutRef("/tmp/x/../oci", h64)
	if err != nil {
		t.Fatal(err)
	}
	if want := "oci-layout:///tmp/oci@sha256:" + hex64; r.String() != want {
		t.Fatalf("LayoutRef = %q, want %q", r, want)
	}
	rel, err := oci.LayoutRef("oci", h64)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(rel.Layout()) {
		t.Fatalf("LayoutRef(oci) = %q, not absolute", rel)
	}
	if _, err := oci.LayoutRef("/tmp/oci", v1.Hash{Algorithm: "sha512", Hex: hex64}); !errors.Is(err, oci.ErrBadRef) {
		t.Fatalf("LayoutRef with a sha512 digest: %v, want ErrBadRef", err)
	}
}

func TestRequire(t *testing.T) {
	for _, tc := range []struct {
		in               string
		registry, digest error
	}{
		{"registry.test/m@sha256:" + hex64, nil, nil},
		{"registry.test/m:1.0.0", nil, oci.ErrNotDigest},
		{"registry.test/m:1.0.0@sha256:" + hex64, nil, nil},
		{"oci-layout:///tmp/oci@sha256:" + hex64, oci.ErrLayoutRef, nil},
	} {
		r, err := oci.ParseRef(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			what      string
			got, want error
		}{{"RequireRegistry", r.RequireRegistry(), tc.registry}, {"RequireDigest", r.RequireDigest(), tc.digest}} {
			if !errors.Is(c.got, c.want) || (c.want == nil) != (c.got == nil) {
				t.Errorf("%s(%q) = %v, want %v", c.what, tc.in, c.got, c.want)
			}
			if c.got != nil && !strings.Contains(c.got.Error(), tc.in) {
				t.Errorf("%s(%q) = %q: does not name the reference", c.what, tc.in, c.got)
			}
		}
	}
	if err := (oci.Ref{}).RequireDigest(); !errors.Is(err, oci.ErrNotDigest) {
		t.Errorf("zero Ref: RequireDigest() = %v", err)
	}
}

func TestWithDigest(t *testing.T) {
	other := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("f", 64)}
	for _, tc := range []struct{ in, want string }{
		{"registry.test:5000/team/m:1.0.0", "registry.test:5000/team/m@" + other.String()},
		{"registry.test/m@sha256:" + hex64, "registry.test/m@" + other.String()},
		{"oci-layout:///tmp/oci@sha256:" + hex64, "oci-layout:///tmp/oci@" + other.String()},
	} {
		r, err := oci.ParseRef(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		d := r.WithDigest(other)
		if d.String() != tc.want || d.Digest() != other || d.Tag() != "" || d.IsLayout() != r.IsLayout() {
			t.Errorf("ParseRef(%q).WithDigest = %q (tag %q), want %q", tc.in, d, d.Tag(), tc.want)
		}
		if !d.IsLayout() && d.DigestName().String() != tc.want {
			t.Errorf("DigestName() = %q, want %q", d.DigestName(), tc.want)
		}
	}
	if !(oci.Ref{}).WithDigest(other).IsZero() {
		t.Error("zero Ref.WithDigest is not zero")
	}
}

func TestParseRepository(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr error
	}{
		{"registry.test:5000/team/m", nil},
		{"localhost/m", nil},
		{"team/m", oci.ErrBadRef},
		{"m", oci.ErrBadRef},
		{"registry.test/Team", oci.ErrBadRef},
		{"registry.test/m:1", oci.ErrBadRef},
		{"registry.test/m@sha256:" + hex64, oci.ErrBadRef},
		{"", oci.ErrBadRef},
	} {
		r, err := oci.ParseRepository(tc.in)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("ParseRepository(%q) = %v, want %v", tc.in, err, tc.wantErr)
			continue
		}
		if cerr := oci.CheckRepository(tc.in); !errors.Is(cerr, tc.wantErr) || (tc.wantErr == nil) != (cerr == nil) {
			t.Errorf("CheckRepository(%q) = %v, want %v", tc.in, cerr, tc.wantErr)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "\""+tc.in+"\"") {
				t.Errorf("ParseRepository(%q): error %q does not name the input", tc.in, err)
			}
			continue
		}
		if r.String() != tc.in {
			t.Errorf("String() = %q, want %q", r, tc.in)
		}
		if d := r.Digest(h64); d.String() != tc.in+"@sha256:"+hex64 || d.Repository() != tc.in {
			t.Errorf("Digest = %q", d)
		}
		tag, err := r.Tag("1.0.0_b")
		if err != nil || tag.String() != tc.in+":1.0.0_b" || tag.Tag() != "1.0.0_b" {
			t.Errorf("Tag = %q, %v", tag, err)
		}
		if _, err := r.Tag("1.0.0+b"); !errors.Is(err, oci.ErrBadRef) || !strings.Contains(err.Error(), "1.0.0+b") {
			t.Errorf("Tag(1.0.0+b) = %v, want ErrBadRef naming the tag", err)
		}
	}
}

func TestParseDest(t *testing.T) {
	for _, tc := range []struct {
		in                string
		repo, layout, tag string
		digest            v1.Hash
		wantErr           error
	}{
		{in: "registry.test/m", repo: "registry.test/m"},
		{in: "registry.test/m:2", repo: "registry.test/m", tag: "2"},
		{in: "registry.test/m@sha256:" + hex64, repo: "registry.test/m", digest: h64},
		{in: "oci-layout:///tmp/x/../oci", layout: "/tmp/oci"},
		{in: "oci-layout:///tmp/oci@sha256:" + hex64, layout: "/tmp/oci", digest: h64},
		{in: "oci-layout://relative", wantErr: oci.ErrBadRef},
		{in: "not a ref", wantErr: oci.ErrBadRef},
		{in: "m:1", wantErr: oci.ErrBadRef},
	} {
		d, err := oci.ParseDest(tc.in)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("ParseDest(%q) = %v, want %v", tc.in, err, tc.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "\""+tc.in+"\"") {
				t.Errorf("ParseDest(%q): error %q does not name the input", tc.in, err)
			}
			continue
		}
		if d.Repository.String() != tc.repo || d.Layout != tc.layout || d.Tag != tc.tag || d.Digest != tc.digest {
			t.Errorf("ParseDest(%q) = %+v", tc.in, d)
		}
	}
}

func TestValidTag(t *testing.T) {
	for tag, want := range map[string]bool{
		"1.0.0": true, "1.0.0_b": true, "_x": true, strings.Repeat("a", 128): true,
		"": false, ".x": false, "-x": false, "1.0.0+b": false, strings.Repeat("a", 129): false,
	} {
		if got := oci.ValidTag(tag); got != want {
			t.Errorf("ValidTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:5000/models/m@sha256:" + hex64, "localhost/m:1", "[::1]:5000/m:1",
		"oci-layout:///tmp/oci@sha256:" + hex64, "m:1", "a.b/c/d/e:f", "oci-layout://x@",
		"oci-layout:///a@b@sha256:" + hex64, "a.b/c:t@sha256:" + hex64,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := oci.ParseRef(s)
		if err != nil {
			if !errors.Is(err, oci.ErrBadRef) {
				t.Fatalf("ParseRef(%q) error %v is not ErrBadRef", s, err)
			}
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("ParseRef(%q) error %q does not name the input", s, err)
			}
			return
		}
		if r.IsZero() {
			t.Fatalf("ParseRef(%q) = the zero Ref", s)
		}
		// What parses, prints as something that parses to the same.
		again, err := oci.ParseRef(r.String())
		if err != nil {
			t.Fatalf("ParseRef(%q) = %q, which does not parse: %v", s, r.String(), err)
		}
		if again.String() != r.String() || again.Digest() != r.Digest() || again.Tag() != r.Tag() || again.Layout() != r.Layout() {
			t.Fatalf("ParseRef(%q) = %q, reparsed %q", s, r, again)
		}
		if r.IsLayout() {
			if !filepath.IsAbs(r.Layout()) || len(r.Digest().Hex) != 64 {
				t.Fatalf("ParseRef(%q): layout %q, digest %s", s, r.Layout(), r.Digest())
			}
			return
		}
		// A registry reference names its repository, which parses on its own.
		if _, err := oci.ParseRepository(r.Repository()); err != nil {
			t.Fatalf("ParseRef(%q).Repository() = %q: %v", s, r.Repository(), err)
		}
		if r.HasDigest() == (r.RequireDigest() != nil) {
			t.Fatalf("ParseRef(%q): HasDigest %v, RequireDigest %v", s, r.HasDigest(), r.RequireDigest())
		}
	})
}

func TestSplitPinned(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in, repo string
		ok       bool
	}{
		{"python@" + d, "python", true},
		{"ghcr.example/team/trainer@" + d, "ghcr.example/team/trainer", true},
		{"127.0.0.1:5000/t@" + d, "127.0.0.1:5000/t", true},
		{"python:3.11", "", false},
		{"@" + d, "", false},
		{"python@sha256:abc", "", false},
		{"python@md5:" + strings.Repeat("a", 32), "", false},
	} {
		repo, h, err := oci.SplitPinned(tc.in)
		if tc.ok != (err == nil) || (tc.ok && (repo != tc.repo || h.String() != d)) {
			t.Errorf("SplitPinned(%q) = %q, %v, %v", tc.in, repo, h, err)
		}
		if err != nil && !errors.Is(err, oci.ErrNotDigest) {
			t.Errorf("SplitPinned(%q): %v, want ErrNotDigest", tc.in, err)
		}
	}
}
