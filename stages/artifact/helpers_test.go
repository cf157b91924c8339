package artifact_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/artifact"
	"github.com/modelci/modelci/stages/registry"
)

// fast keeps retries quick: the refusals under test are not retried, and
// a tampered blob is refused whatever the attempts.
var fast = artifact.WithRegistryOptions(registry.WithRetry(2, time.Millisecond))

// server is go-containerregistry's registry over real HTTP on loopback,
// counting blob uploads, with an optional hook that rewrites a blob's
// bytes as they are served (a registry that cannot be trusted).
type server struct {
	Host string

	mu      sync.Mutex
	uploads int
	tamper  func(digest string, body []byte) []byte
}

func newServer(t testing.TB) *server {
	t.Helper()
	s := &server{}
	reg := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/blobs/uploads/") {
			s.mu.Lock()
			s.uploads++
			s.mu.Unlock()
		}
		s.mu.Lock()
		tamper := s.tamper
		s.mu.Unlock()
		_, digest, isBlob := strings.Cut(r.URL.Path, "/blobs/")
		if tamper == nil || r.Method != http.MethodGet || !isBlob || strings.HasPrefix(digest, "uploads") {
			reg.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		body := tamper(digest, rec.Body.Bytes())
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	s.Host = strings.TrimPrefix(srv.URL, "http://")
	return s
}

func (s *server) Uploads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.uploads
}

func (s *server) Tamper(f func(digest string, body []byte) []byte) {
	s.mu.Lock()
	s.tamper = f
	s.mu.Unlock()
}

// writeFiles creates files (slash-separated names; a trailing * makes the
// file executable) under a new temporary directory and returns it.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		mode := os.FileMode(0o600)
		if n, ok := strings.CutSuffix(name, "*"); ok {
			name, mode = n, 0o700
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o700); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tree lists dir as "name" → content for files ("name*" when executable)
// and "name/" → "" for directories.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		if !d.Type().IsRegular() {
			t.Errorf("%s is a %v", p, d.Type())
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if fi.Mode()&0o111 != 0 {
			rel += "*"
		}
		out[rel] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// entry is a tar entry for handmade layers.
type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, body}
}

func dir(name string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}, ""}
}

func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawLayer is a handmade layer: its bytes, media type and path annotation.
type rawLayer struct {
	path, mediaType string
	data            []byte
}

// pushRaw pushes a handmade artifact (as a hostile pusher could) to repo by
// digest and returns its reference.
func pushRaw(t testing.TB, repo, artifactType string, layers ...rawLayer) string {
	t.Helper()
	cfg := []byte("{}")
	ch, cn, _ := v1.SHA256(bytes.NewReader(cfg))
	c := &core{config: cfg, layers: map[v1.Hash]partial.CompressedLayer{}}
	m := map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "artifactType": artifactType,
		"config": v1.Descriptor{MediaType: artifact.MediaTypeEmptyConfig, Digest: ch, Size: cn},
	}
	var descs []v1.Descriptor
	for _, l := range layers {
		sl := static.NewLayer(l.data, types.MediaType(l.mediaType))
		d, _ := sl.Digest()
		descs = append(descs, v1.Descriptor{MediaType: types.MediaType(l.mediaType), Digest: d, Size: int64(len(l.data)),
			Annotations: map[string]string{artifact.AnnotationPath: l.path}})
		c.layers[d] = sl
	}
	m["layers"] = descs
	var err error
	if c.manifest, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	img, err := partial.CompressedToImage(c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := registry.Push(t.Context(), img, repo, registry.WithRetry(1, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return p.Ref
}

type core struct {
	manifest, config []byte
	layers           map[v1.Hash]partial.CompressedLayer
}

func (c *core) RawConfigFile() ([]byte, error)      { return c.config, nil }
func (c *core) RawManifest() ([]byte, error)        { return c.manifest, nil }
func (c *core) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (c *core) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := c.layers[h]; ok {
		return l, nil
	}
	return nil, os.ErrNotExist
}
