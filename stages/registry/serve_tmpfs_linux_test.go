package registry_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The same as TestServeManifestWriteFailure on a real full file system: a
// 1 MiB tmpfs filled to the last page. It needs root (mount); the injected
// failure covers the code path everywhere else.
func TestServeFullTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; TestServeManifestWriteFailure injects the failure instead")
	}
	root := t.TempDir()
	if err := syscall.Mount("tmpfs", root, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v); TestServeManifestWriteFailure injects the failure instead", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(root, 0); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})
	s := startServer(t, root)
	const repo = "team/m"
	img := newImageFixture(t, s.base, repo)
	mb := img.manifest.bytes(t)

	filler := filepath.Join(root, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()
	files := tree(t, filepath.Join(root, "manifests"))

	code, _, body := call(t, "PUT", s.base+"/v2/"+repo+"/manifests/1.0.0", mb, "Content-Type", ociManifest)
	if code != http.StatusInsufficientStorage || !strings.Contains(body, "no space left") {
		t.Fatalf("PUT on a full tmpfs: %d %s, want 507", code, body)
	}
	for _, ref := range []string{"1.0.0", sha(mb)} {
		if code, _, _ := getManifest(t, s.base, repo, ref); code != http.StatusNotFound {
			t.Fatalf("GET %s after the failed PUT: %d, want 404", ref, code)
		}
	}
	sameTree(t, "root/manifests", files, tree(t, filepath.Join(root, "manifests")))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, _, body := call(t, "PUT", s.base+"/v2/"+repo+"/manifests/1.0.0", mb, "Content-Type", ociManifest); code != http.StatusCreated {
		t.Fatalf("re-push with space: %d %s", code, body)
	}
	s.restart()
	if code, _, got := getManifest(t, s.base, repo, "1.0.0"); code != http.StatusOK || got != string(mb) {
		t.Fatalf("after re-push and restart: %d %q", code, got)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
}
