package registry_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/modelci/modelci/stages/registry"
)

// diskFull fails manifest file writes as a full disk does (half the bytes,
// then ENOSPC): the write numbered failAt (from 1), every write when
// failAt is -1, none when 0.
type diskFull struct {
	calls, failAt atomic.Int32
}

func (d *diskFull) write(f *os.File, b []byte) (int, error) {
	n := d.calls.Add(1)
	if at := d.failAt.Load(); at == -1 || at == n {
		k, _ := f.Write(b[:len(b)/2])
		return k, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.Write(b)
}

// arm makes the nth write from now fail (-1: all of them, 0: none).
func (d *diskFull) arm(nth int32) {
	d.calls.Store(0)
	d.failAt.Store(nth)
}

// A manifest write that fails (here the disk is full: 507) leaves no
// phantom: the tag and the digest are not served, before or after a
// restart, and the files under root/manifests are as they were, whichever
// of the two files (digest entry, then tag) failed. Once there is space, a
// re-push succeeds.
func TestServeManifestWriteFailure(t *testing.T) {
	tests := []struct {
		name     string
		existing bool  // tag x already holds X; the PUT moves it to Y
		failAt   int32 // which manifest file write fails
		byDigest bool
	}{
		{"new tag, digest entry fails", false, 1, false},
		{"new tag, tag entry fails", false, 2, false},
		{"moving tag, digest entry fails", true, 1, false},
		{"moving tag, tag entry fails", true, 2, false},
		{"by digest", false, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			disk := &diskFull{}
			s := startServer(t, root, registry.WithManifestWriter(disk.write))
			const repo = "team/m"
			img := newImageFixture(t, s.base, repo)
			x := img.manifest
			y := x.with(func(m *mfst) { m.Layers = nil })
			xb, yb := x.bytes(t), y.bytes(t)
			if tc.existing {
				if code, _, body := call(t, "PUT", s.base+"/v2/"+repo+"/manifests/x", xb, "Content-Type", ociManifest); code != http.StatusCreated {
					t.Fatalf("PUT X: %d %s", code, body)
				}
			}
			target := "x"
			if tc.byDigest {
				target = sha(yb)
			}
			type state struct {
				tag, digest int
				tagBody     string
			}
			look := func() state {
				code, _, body := getManifest(t, s.base, repo, target)
				dcode, _, _ := getManifest(t, s.base, repo, sha(yb))
				return state{code, dcode, body}
			}
			before, files := look(), tree(t, filepath.Join(root, "manifests"))

			disk.arm(tc.failAt)
			code, _, body := call(t, "PUT", s.base+"/v2/"+repo+"/manifests/"+target, yb, "Content-Type", ociManifest)
			if code != http.StatusInsufficientStorage || !strings.Contains(body, "storage is full") || !strings.Contains(body, "no space left") {
				t.Fatalf("PUT on a full disk: %d %s, want 507 saying storage is full", code, body)
			}
			if got := look(); got != before {
				t.Fatalf("after the failed PUT: %+v, before %+v", got, before)
			}
			sameTree(t, "root/manifests", files, tree(t, filepath.Join(root, "manifests")))
			s.restart()
			if got := look(); got != before {
				t.Fatalf("after the failed PUT and a restart: %+v, before %+v", got, before)
			}

			disk.arm(0)
			if code, _, body := call(t, "PUT", s.base+"/v2/"+repo+"/manifests/"+target, yb, "Content-Type", ociManifest); code != http.StatusCreated {
				t.Fatalf("re-push with space: %d %s", code, body)
			}
			s.restart()
			if got := look(); got != (state{200, 200, string(yb)}) {
				t.Fatalf("after the re-push and a restart: %+v, want Y at %s", got, target)
			}
		})
	}
}

// A client push that meets a full disk fails, leaves nothing to resolve,
// and the same push succeeds once there is space.
func TestServeFullDiskClientPush(t *testing.T) {
	ctx := context.Background()
	disk := &diskFull{}
	s := startServer(t, t.TempDir(), registry.WithManifestWriter(disk.write))
	img := randomImage(t, 7)
	disk.arm(-1)
	if _, err := registry.Push(ctx, img, s.host+"/team/full", registry.WithTags("1.0.0"), fast); err == nil || !strings.Contains(err.Error(), "507") {
		t.Fatalf("push on a full disk: %v, want an error with HTTP 507", err)
	}
	if _, err := registry.Resolve(ctx, s.host+"/team/full:1.0.0", fast); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("tag after the failed push: %v, want ErrNotFound", err)
	}
	disk.arm(0)
	p, err := registry.Push(ctx, img, s.host+"/team/full", registry.WithTags("1.0.0"), fast)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := registry.Resolve(ctx, s.host+"/team/full:1.0.0", fast); err != nil || h != p.Digest {
		t.Fatalf("after the re-push: %s, %v; want %s", h, err, p.Digest)
	}
}
