package registry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/registry"
)

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

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
		{in: "m:1.0.0", wantErr: registry.ErrBadRef},
		{in: "team/m:1.0.0", wantErr: registry.ErrBadRef},
		{in: "registry.example/m", wantErr: registry.ErrBadRef},
		{in: "registry.example/M:1", wantErr: registry.ErrBadRef},
		{in: "registry.example/m:1+build", wantErr: registry.ErrBadRef},
		{in: "registry.example/m@sha256:abc", wantErr: registry.ErrBadRef},
		{in: "registry.example/m@md5:" + hex64[:32], wantErr: registry.ErrBadRef},
		{in: "oci-layout://relative@sha256:" + hex64, wantErr: registry.ErrBadRef},
		{in: "oci-layout:///abs", wantErr: registry.ErrBadRef},
		{in: "oci-layout:///abs@sha256:" + strings.ToUpper(hex64), wantErr: registry.ErrBadRef},
		{in: "", wantErr: registry.ErrBadRef},
		{in: "/m:1", wantErr: registry.ErrBadRef},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := registry.ParseRef(tc.in)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Layout != tc.layout || r.Tag != tc.tag || (tc.digest != "" && r.Digest.String() != tc.digest) {
				t.Fatalf("got %+v", r)
			}
			if tc.layout != "" {
				if !r.IsLayout() || r.Name != nil {
					t.Fatalf("layout ref %+v", r)
				}
				return
			}
			c := r.Name.Context()
			if c.RegistryStr() != tc.registry || c.RepositoryStr() != tc.repo || c.Scheme() != tc.scheme {
				t.Fatalf("registry %q repo %q scheme %q; want %q %q %q", c.RegistryStr(), c.RepositoryStr(), c.Scheme(), tc.registry, tc.repo, tc.scheme)
			}
			if r.String() != tc.in {
				t.Fatalf("String() = %q, want %q", r.String(), tc.in)
			}
		})
	}
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:5000/models/m@sha256:" + hex64, "localhost/m:1", "[::1]:5000/m:1",
		"oci-layout:///tmp/oci@sha256:" + hex64, "m:1", "a.b/c/d/e:f", "oci-layout://x@",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := registry.ParseRef(s)
		if err != nil {
			if !errors.Is(err, registry.ErrBadRef) {
				t.Fatalf("ParseRef(%q) error %v is not ErrBadRef", s, err)
			}
			return
		}
		// What parses, prints as something that parses to the same.
		again, err := registry.ParseRef(r.String())
		if err != nil {
			t.Fatalf("ParseRef(%q) = %q, which does not parse: %v", s, r.String(), err)
		}
		if again.String() != r.String() || again.Digest != r.Digest || again.Tag != r.Tag {
			t.Fatalf("ParseRef(%q) = %+v, reparsed %+v", s, r, again)
		}
	})
}
