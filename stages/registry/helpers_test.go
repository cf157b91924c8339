package registry_test

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/registry"
)

// fast keeps retries quick in tests, and the read-back of tags written to
// registries that do not check conditional writes (go-containerregistry's
// in-process registry is one); the policy (attempts, no retry on 4xx, the
// read-back) is what is under test, not the waiting.
var fast = registry.All(registry.WithRetry(3, time.Millisecond), registry.WithTagSettle(time.Millisecond))

// layer returns an uncompressed tar layer holding size pseudo-random bytes
// from seed at path: the shape of a weights layer.
func layer(t testing.TB, path string, size int, seed uint64) v1.Layer {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 0))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// ociImage stacks layers into an OCI image for linux/amd64.
func ociImage(t testing.TB, layers ...v1.Layer) v1.Image { return ociImageFor(t, "amd64", layers...) }

func ociImageFor(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// randomImage is a small two-layer image: a runtime layer and a model layer.
func randomImage(t testing.TB, seed uint64) v1.Image {
	return ociImage(t, layer(t, "ko-app/runtime", 3000, seed), layer(t, "model/weights.bin", 5000, seed+1))
}

// ociIndex is an OCI index of two small images, for amd64 and arm64, in
// the shape stages/image builds (entries without artifactType).
func ociIndex(t testing.TB, seed uint64) v1.ImageIndex {
	t.Helper()
	var (
		imgs      []v1.Image
		platforms []v1.Platform
	)
	for i, arch := range []string{"amd64", "arm64"} {
		s := seed + 10*uint64(i)
		imgs = append(imgs, ociImageFor(t, arch, layer(t, "ko-app/runtime", 3000, s), layer(t, "model/weights.bin", 5000, s+1)))
		platforms = append(platforms, v1.Platform{OS: "linux", Architecture: arch})
	}
	idx, err := image.NewIndex(imgs, platforms, map[string]string{"org.opencontainers.image.version": "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func digestOf(t testing.TB, a interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := a.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// fault decides how to answer a request instead of the registry; it
// returns false to let the registry answer.
type fault func(w http.ResponseWriter, r *http.Request) bool

// server is go-containerregistry's in-process registry on 127.0.0.1 behind
// a handler that injects faults and counts what reaches the registry.
type server struct {
	*httptest.Server
	Host string // 127.0.0.1:PORT

	mu           sync.Mutex
	fault        fault
	commits      map[string]int // blob digest → completed uploads
	requests     map[string]int // "METHOD /path?mount=…" → count
	manifestPUTs int
	bytesIn      int64 // blob bytes received
}

func newServer(t testing.TB) *server {
	return serverFor(t, ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
}

func serverFor(t testing.TB, inner http.Handler) *server {
	s := &server{commits: map[string]int{}, requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.count(r)
		s.mu.Lock()
		f := s.fault
		s.mu.Unlock()
		if f != nil && f(w, r) {
			return
		}
		if isBlobUpload(r) {
			r.Body = &countingReader{r: r.Body, n: &s.bytesIn, mu: &s.mu}
		}
		sw := &statusWriter{ResponseWriter: w}
		inner.ServeHTTP(sw, r)
		s.mu.Lock()
		defer s.mu.Unlock()
		if d := r.URL.Query().Get("digest"); r.Method == http.MethodPut && d != "" && sw.status == http.StatusCreated {
			s.commits[d]++
		}
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && sw.status == http.StatusCreated {
			s.manifestPUTs++
		}
	}))
	t.Cleanup(s.Close)
	u, _ := url.Parse(s.URL)
	s.Host = u.Host
	return s
}

func (s *server) count(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := r.Method + " " + r.URL.Path
	if m := r.URL.Query().Get("mount"); m != "" {
		k += "?mount=" + m
	}
	s.requests[k]++
}

func (s *server) setFault(f fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// reset forgets the counts.
func (s *server) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits, s.requests, s.manifestPUTs, s.bytesIn = map[string]int{}, map[string]int{}, 0, 0
}

func (s *server) snapshot() (commits, requests map[string]int, manifestPUTs int, bytesIn int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	commits, requests = map[string]int{}, map[string]int{}
	for k, v := range s.commits {
		commits[k] = v
	}
	for k, v := range s.requests {
		requests[k] = v
	}
	return commits, requests, s.manifestPUTs, s.bytesIn
}

func isBlobUpload(r *http.Request) bool {
	return (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.Contains(r.URL.Path, "/blobs/uploads/")
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

type countingReader struct {
	r  io.ReadCloser
	n  *int64
	mu *sync.Mutex
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.mu.Lock()
	*c.n += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// status answers matching requests with code (and Retry-After when set),
// at most n times (n < 0: always).
func status(match func(*http.Request) bool, code, n int, retryAfter string) fault {
	var mu sync.Mutex
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if n == 0 {
			return false
		}
		n--
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, `{"errors":[{"code":"UNKNOWN","message":"injected"}]}`)
		return true
	}
}

// resetMidBody reads half of the first n matching request bodies, then
// resets the connection (TCP RST).
func resetMidBody(match func(*http.Request) bool, n int) fault {
	var mu sync.Mutex
	return func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) {
			return false
		}
		mu.Lock()
		if n == 0 {
			mu.Unlock()
			return false
		}
		n--
		mu.Unlock()
		if r.ContentLength > 0 {
			io.CopyN(io.Discard, r.Body, r.ContentLength/2)
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		conn.Close()
		return true
	}
}

func isPatch(r *http.Request) bool { return r.Method == http.MethodPatch }
func isPost(r *http.Request) bool  { return r.Method == http.MethodPost }
func anyRequest(r *http.Request) bool {
	return r.URL.Path != "/v2/" // the ping stays healthy
}

// slowBody makes matching request bodies trickle in small reads.
func slowBody(match func(*http.Request) bool) fault {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if match(r) {
			r.Body = &slowReader{r.Body}
		}
		return false
	}
}

type slowReader struct{ io.ReadCloser }

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(50 * time.Microsecond)
	return s.ReadCloser.Read(p[:min(len(p), 4096)])
}

func writeDockerConfig(t testing.TB, dir, host, user, pass string) {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	cfg := `{"auths":{"` + host + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkBlobs reads every blob under a (a pulled image or index) and checks
// it against its digest and size.
func checkBlobs(t testing.TB, a any) {
	t.Helper()
	switch a := a.(type) {
	case v1.ImageIndex:
		im, err := a.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range im.Manifests {
			img, err := a.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkBlobs(t, img)
		}
	case v1.Image:
		raw, err := a.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		m, err := a.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if h, _, _ := v1.SHA256(bytes.NewReader(raw)); h != m.Config.Digest {
			t.Fatalf("config digest %s, manifest says %s", h, m.Config.Digest)
		}
		for _, d := range m.Layers {
			l, err := a.LayerByDigest(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			h, n, err := v1.SHA256(rc)
			rc.Close()
			if err != nil {
				t.Fatalf("read layer %s: %v", d.Digest, err)
			}
			if h != d.Digest || n != d.Size {
				t.Fatalf("layer %s: read %s (%d bytes), want %d bytes", d.Digest, h, n, d.Size)
			}
		}
	default:
		t.Fatalf("%T is neither an image nor an index", a)
	}
}
