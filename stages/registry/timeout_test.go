package registry_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
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
