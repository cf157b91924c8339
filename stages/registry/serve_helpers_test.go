package registry_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/registry"
)

// regServer is registry.Serve on 127.0.0.1:0 over root, over real HTTP,
// that a test can restart on the same root.
type regServer struct {
	t    *testing.T
	root string
	opts []registry.ServeOption
	host string // 127.0.0.1:port
	base string // http://127.0.0.1:port
	stop func() error
}

func startServer(t *testing.T, root string, opts ...registry.ServeOption) *regServer {
	t.Helper()
	s := &regServer{t: t, root: root, opts: opts}
	s.host, s.stop = serve(t, root, opts...)
	s.base = "http://" + s.host
	return s
}

// restart stops the server gracefully and starts another on the same root
// (and a new port): what it serves is what was on disk.
func (s *regServer) restart() {
	s.t.Helper()
	if err := s.stop(); err != nil {
		s.t.Fatalf("graceful stop: %v", err)
	}
	s.host, s.stop = serve(s.t, s.root, s.opts...)
	s.base = "http://" + s.host
}

// errCode is the first error code of a distribution API error body.
func errCode(body string) string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal([]byte(body), &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// tree maps every file under dir (relative path) to its content and every
// directory to "<dir>"; a missing dir is an empty tree.
func tree(t testing.TB, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return fs.SkipAll
		}
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			got[rel] = "<dir>"
			return nil
		}
		b, err := os.ReadFile(p)
		got[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameTree(t testing.TB, what string, before, after map[string]string) {
	t.Helper()
	if !maps.Equal(before, after) {
		var added, removed, changed []string
		for k, v := range after {
			if old, ok := before[k]; !ok {
				added = append(added, k)
			} else if old != v {
				changed = append(changed, k)
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				removed = append(removed, k)
			}
		}
		slices.Sort(added)
		slices.Sort(removed)
		slices.Sort(changed)
		t.Errorf("%s changed: added %q, removed %q, changed %q", what, added, removed, changed)
	}
}

// desc and mfst write manifests field by field, so that tests can build
// the wrong ones.
type desc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	URLs        []string          `json:"urls,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type mfst struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	Config        *desc             `json:"config,omitempty"`
	Layers        []desc            `json:"layers,omitempty"`
	Manifests     []desc            `json:"manifests,omitempty"`
	Subject       *desc             `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

func (m mfst) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// with returns a deep copy of m changed by f.
func (m mfst) with(f func(*mfst)) mfst {
	if m.Config != nil {
		c := *m.Config
		m.Config = &c
	}
	m.Layers = slices.Clone(m.Layers)
	m.Manifests = slices.Clone(m.Manifests)
	f(&m)
	return m
}

// pushBlob uploads b to repo in one POST and returns its digest.
func pushBlob(t *testing.T, base, repo string, b []byte) string {
	t.Helper()
	d := sha(b)
	if code, _, body := call(t, "POST", base+"/v2/"+repo+"/blobs/uploads/?digest="+d, b); code != http.StatusCreated {
		t.Fatalf("push blob %s: %d %s", d, code, body)
	}
	return d
}

// getManifest returns the status, Content-Type and body of a manifest GET.
func getManifest(t *testing.T, base, repo, ref string) (int, string, string) {
	t.Helper()
	code, h, body := call(t, "GET", base+"/v2/"+repo+"/manifests/"+ref, nil,
		"Accept", string(types.OCIManifestSchema1)+","+string(types.OCIImageIndex)+","+
			string(types.DockerManifestSchema2)+","+string(types.DockerManifestList))
	return code, h.Get("Content-Type"), body
}

// imageFixture is an OCI image's config and layer, pushed as blobs, and
// its manifest (not pushed).
type imageFixture struct {
	cfg, layer []byte
	manifest   mfst
}

func newImageFixture(t *testing.T, base, repo string) imageFixture {
	t.Helper()
	f := imageFixture{
		cfg:   []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`),
		layer: []byte("weights: 0.25 0.5 0.75 1.0\n"),
	}
	f.manifest = mfst{
		SchemaVersion: 2,
		MediaType:     string(types.OCIManifestSchema1),
		Config:        &desc{MediaType: string(types.OCIConfigJSON), Digest: pushBlob(t, base, repo, f.cfg), Size: int64(len(f.cfg))},
		Layers:        []desc{{MediaType: string(types.OCIUncompressedLayer), Digest: pushBlob(t, base, repo, f.layer), Size: int64(len(f.layer))}},
	}
	return f
}
