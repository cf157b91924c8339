package registry_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/stages/registry"
)

// serve runs Serve on 127.0.0.1:0 over root with opts; stop shuts it down
// and returns Serve's error.
func serve(t *testing.T, root string, opts ...registry.ServeOption) (host string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	opts = append(opts, registry.OnListen(func(a net.Addr) { addrs <- a }))
	go func() {
		errc <- registry.Serve(ctx, "127.0.0.1:0", root, opts...)
	}()
	select {
	case a := <-addrs:
		host = a.String()
	case err := <-errc:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-errc
	}
	t.Cleanup(func() { stop() })
	return host, stop
}

// Blobs and manifests (by digest and by tag, images and indexes) survive a
// restart on the same root; so does a deleted tag's absence.
func TestServeSurvivesRestart(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	host, stop := serve(t, root, registry.WithDelete(true))
	img, idx := randomImage(t, 1), ociIndex(t, 50)
	pi, err := registry.Push(ctx, img, host+"/team/models/m", registry.WithTags("1.0.0", "gone"), fast)
	if err != nil {
		t.Fatal(err)
	}
	px, err := registry.Push(ctx, idx, host+"/team/models/m", registry.WithTags("2.0.0"), fast)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := name.ParseReference(host+"/team/models/m:gone", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(gone); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}

	host2, _ := serve(t, root, registry.WithDelete(true))
	moved := func(ref string) string { return strings.Replace(ref, host, host2, 1) }
	for _, tc := range []struct {
		ref  string
		want string
	}{
		{moved(pi.Ref), pi.Digest.String()},
		{host2 + "/team/models/m:1.0.0", pi.Digest.String()},
		{moved(px.Ref), px.Digest.String()},
		{host2 + "/team/models/m:2.0.0", px.Digest.String()},
	} {
		h, err := registry.Resolve(ctx, tc.ref, fast)
		if err != nil || h.String() != tc.want {
			t.Fatalf("after restart, %s = %s, %v; want %s", tc.ref, h, err, tc.want)
		}
		a, err := registry.Pull(ctx, tc.ref, fast)
		if err != nil {
			t.Fatal(err)
		}
		checkBlobs(t, a)
	}
	if _, err := registry.Resolve(ctx, host2+"/team/models/m:gone", fast); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted tag after restart: err = %v, want ErrNotFound", err)
	}
}

// Names that would escape the root or are not OCI names never reach the disk.
func TestServeRejectsBadNames(t *testing.T) {
	root := t.TempDir()
	h, err := registry.NewHandler(root)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/v2/../../etc/manifests/x", http.StatusBadRequest},
		{"/v2/a/manifests/..", http.StatusBadRequest},
		{"/v2/A/manifests/1", http.StatusBadRequest},
		{"/v2/a/_manifests/manifests/1", http.StatusBadRequest},
		{"/v2/a/manifests/sha256:xyz", http.StatusBadRequest},
	} {
		req, err := http.NewRequest(http.MethodPut, srv.URL+tc.path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = tc.path // keep the dots: no client-side cleaning
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("PUT %s = %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestServeAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = registry.Serve(context.Background(), ln.Addr().String(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v, want address already in use", err)
	}
}
