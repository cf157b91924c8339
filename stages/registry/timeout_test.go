package registry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// stallServer is the embedded registry behind a handler that stalls the
// requests stall matches (until the test ends) in the way it chooses.
func stallServer(t *testing.T, stall func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) bool) string {
	t.Helper()
	inner, err := registry.NewHandler(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stall(w, r, done) {
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // runs first: stalled handlers return
	return strings.TrimPrefix(srv.URL, "http://")
}

// A registry that stops answering fails the push with oci.ErrTimeout,
// naming the wait that ran out, after the configured time per attempt.
func TestPushTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		host  func(t *testing.T) string
		phase string
		size  int
	}{
		{"accepts and never answers", func(t *testing.T) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { io.Copy(io.Discard, c); c.Close() }()
				}
			}()
			return ln.Addr().String()
		}, oci.PhaseFirstByte + "|" + oci.PhaseConnect, 1000}, // https is tried too: its handshake never completes
		{"answers a PATCH's headers, then stalls mid-body", func(t *testing.T) string {
			return stallServer(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) bool {
				if r.Method != http.MethodPatch {
					return false
				}
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Length", "1000")
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, "0123456789")
				w.(http.Flusher).Flush()
				<-done
				return true
			})
		}, oci.PhaseReceive, 1000},
		{"stops reading a PATCH's body", func(t *testing.T) string {
			return stallServer(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) bool {
				if r.Method != http.MethodPatch || r.ContentLength < 1<<20 {
					return false // the config's PATCH goes through
				}
				io.CopyN(io.Discard, r.Body, 1<<20)
				<-done
				return true
			})
		}, oci.PhaseSend, 128 << 20}, // more than the socket buffers hold
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host(t)
			img := ociImage(t, newZeroLayer(t, tc.size))
			_, err := registry.Push(context.Background(), img, host+"/m", registry.WithTags("1.0.0"),
				registry.WithTimeout(time.Second), registry.WithChunkSize(-1), fast)
			if !errors.Is(err, oci.ErrTimeout) {
				t.Fatalf("err = %v, want oci.ErrTimeout", err)
			}
			var te *oci.TimeoutError
			if !errors.As(err, &te) || !slices.Contains(strings.Split(tc.phase, "|"), te.Phase) {
				t.Fatalf("err = %v, want a %q timeout", err, tc.phase)
			}
			t.Logf("error: %v", err)
		})
	}
}

// zeroLayer is a layer of size zero bytes, read as it is sent (not held in
// memory); not a tar, which no registry checks.
type zeroLayer struct {
	size   int64
	digest v1.Hash
}

func newZeroLayer(t testing.TB, size int) *zeroLayer {
	t.Helper()
	l := &zeroLayer{size: int64(size)}
	rc, _ := l.Compressed()
	h, _, err := v1.SHA256(rc)
	if err != nil {
		t.Fatal(err)
	}
	l.digest = h
	return l
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func (l *zeroLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *zeroLayer) DiffID() (v1.Hash, error) { return l.digest, nil }
func (l *zeroLayer) Size() (int64, error)     { return l.size, nil }
func (l *zeroLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(io.LimitReader(zeroReader{}, l.size)), nil
}
func (l *zeroLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l *zeroLayer) MediaType() (types.MediaType, error) {
	return types.OCIUncompressedLayer, nil
}

// Blobs go up in PATCHes of at most the chunk size, each with its
// Content-Range; so a registry that caps a request's size (413 above 1
// MiB here) takes a push in 1 MiB chunks, and refuses it in one PATCH.
func TestPushChunkSize(t *testing.T) {
	const limit = 1 << 20
	for _, tc := range []struct {
		name    string
		chunk   int64
		patches int // of the layer
		fails   bool
	}{
		{"1 MiB chunks", limit, 4, false},
		{"one PATCH per blob", -1, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			var (
				mu      sync.Mutex
				patches []string
			)
			srv.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodPatch {
					return false
				}
				mu.Lock()
				patches = append(patches, r.Header.Get("Content-Range"))
				mu.Unlock()
				if r.ContentLength > limit {
					w.WriteHeader(http.StatusRequestEntityTooLarge)
					return true
				}
				return false
			})
			size := 3*limit + limit/2
			img := ociImage(t, bigLayer(t, size, 3))
			_, err := registry.Push(context.Background(), img, srv.Host+"/m", registry.WithTags("1.0.0"), registry.WithChunkSize(tc.chunk), fast)
			if tc.fails {
				if err == nil || !strings.Contains(err.Error(), "413") {
					t.Fatalf("err = %v, want the registry's 413", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkBlobs(t, mustPull(t, srv.Host+"/m:1.0.0"))
			// The config is one small PATCH; the layer's are in order.
			var layer []string
			for _, cr := range patches {
				if cr != "0-"+fmt.Sprint(configSize(t, img)-1) {
					layer = append(layer, cr)
				}
			}
			want := []string{"0-1048575", "1048576-2097151", "2097152-3145727", fmt.Sprintf("3145728-%d", layerSize(t, img)-1)}
			if !slices.Equal(layer, want) {
				t.Fatalf("the layer's PATCHes carried %q, want %q", layer, want)
			}
		})
	}
}

func mustPull(t *testing.T, ref string) registry.Artifact {
	t.Helper()
	a, err := registry.Pull(context.Background(), ref, fast)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func configSize(t *testing.T, img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.Config.Size
}

func layerSize(t *testing.T, img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.Layers[0].Size
}
