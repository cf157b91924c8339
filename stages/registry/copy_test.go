package registry_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// Copy moves images and indexes between registries and layouts by digest,
// unchanged.
func TestCopyKeepsDigest(t *testing.T) {
	ctx := context.Background()
	a, b := newServer(t), newServer(t)
	for _, tc := range []struct {
		name string
		art  registry.Artifact
	}{{"image", randomImage(t, 7)}, {"index", ociIndex(t, 70)}} {
		t.Run(tc.name, func(t *testing.T) {
			want := digestOf(t, tc.art)
			src, err := registry.Push(ctx, tc.art, a.Host+"/src/"+tc.name, registry.WithTags("1.0.0"), fast)
			if err != nil {
				t.Fatal(err)
			}
			layoutDir := t.TempDir()
			steps := []struct{ src, dst, wantRef string }{
				// Tag-less destination: the source's tag comes along.
				{a.Host + "/src/" + tc.name + ":1.0.0", b.Host + "/dst/" + tc.name, b.Host + "/dst/" + tc.name + "@" + want.String()},
				{src.Ref, oci.LayoutScheme + layoutDir, oci.LayoutScheme + layoutDir + "@" + want.String()},
				{oci.LayoutScheme + layoutDir + "@" + want.String(), b.Host + "/back/" + tc.name + ":2.0.0", b.Host + "/back/" + tc.name + "@" + want.String()},
			}
			for _, s := range steps {
				got, err := registry.Copy(ctx, s.src, s.dst, fast)
				if err != nil {
					t.Fatalf("copy %s %s: %v", s.src, s.dst, err)
				}
				if got.Digest != want || got.Ref != s.wantRef {
					t.Fatalf("copy %s %s = %+v, want %s", s.src, s.dst, got, s.wantRef)
				}
				h, err := registry.Resolve(ctx, got.Ref, fast)
				if err != nil || h != want {
					t.Fatalf("resolve %s = %s, %v; want %s", got.Ref, h, err, want)
				}
				pulled, err := registry.Pull(ctx, got.Ref, fast)
				if err != nil {
					t.Fatal(err)
				}
				checkBlobs(t, pulled)
			}
			for _, ref := range []string{b.Host + "/dst/" + tc.name + ":1.0.0", b.Host + "/back/" + tc.name + ":2.0.0"} {
				if h, err := registry.Resolve(ctx, ref, fast); err != nil || h != want {
					t.Fatalf("tag %s = %s, %v; want %s", ref, h, err, want)
				}
			}
			// A layout without a tag to give gets one named for the digest.
			idx, err := os.ReadFile(filepath.Join(layoutDir, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(idx), "sha256-"+want.Hex) {
				t.Fatalf("layout index.json %s has no sha256-%s tag", idx, want.Hex)
			}
		})
	}
}

func TestCopyErrors(t *testing.T) {
	ctx := context.Background()
	srv := newServer(t)
	img, other := randomImage(t, 1), randomImage(t, 2)
	p, err := registry.Push(ctx, img, srv.Host+"/m", registry.WithTags("1.0.0"), fast)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(ctx, other, srv.Host+"/taken", registry.WithTags("1.0.0"), fast); err != nil {
		t.Fatal(err)
	}
	missing := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	for _, tc := range []struct {
		name, src, dst string
		opts           []registry.Option
		want           error
	}{
		{"malformed source", "m:1.0.0", srv.Host + "/x", nil, registry.ErrBadRef},
		{"malformed destination", p.Ref, "not a ref", nil, registry.ErrBadRef},
		{"relative layout", p.Ref, oci.LayoutScheme + "relative/dir", nil, registry.ErrBadRef},
		{"missing source", srv.Host + "/m@" + missing.String(), srv.Host + "/x", nil, registry.ErrNotFound},
		{"missing layout", oci.LayoutScheme + t.TempDir() + "/none@" + missing.String(), srv.Host + "/x", nil, registry.ErrNotFound},
		{"destination digest differs", p.Ref, srv.Host + "/x@" + missing.String(), nil, registry.ErrDigestMismatch},
		{"tag taken", p.Ref, srv.Host + "/taken:1.0.0", nil, registry.ErrTagExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.Copy(ctx, tc.src, tc.dst, append(tc.opts, fast)...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Copy(%q, %q) err = %v, want %v", tc.src, tc.dst, err, tc.want)
			}
		})
	}
	// WithAllowOverwrite moves the taken tag.
	if _, err := registry.Copy(ctx, p.Ref, srv.Host+"/taken:1.0.0", registry.WithAllowOverwrite(), fast); err != nil {
		t.Fatal(err)
	}
	if h, err := registry.Resolve(ctx, srv.Host+"/taken:1.0.0", fast); err != nil || h != p.Digest {
		t.Fatalf("overwritten tag = %s, %v; want %s", h, err, p.Digest)
	}
}
