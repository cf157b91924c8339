package sign_test

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

const testPassword = "correct-horse-battery-staple-7f3a"

// testRegistry is an in-process registry over real HTTP that records every
// request and response body (the password test searches them).
type testRegistry struct {
	host string
	mu   sync.Mutex
	seen bytes.Buffer
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, req)
		r.mu.Lock()
		r.seen.WriteString(req.URL.String())
		r.seen.Write(body)
		r.seen.Write(rec.body.Bytes())
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *testRegistry) contents() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen.String()
}

type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

// pushModel pushes a random image annotated as model name/version and
// returns it by digest.
func pushModel(t testing.TB, r *testRegistry, repo, model, version string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Annotations(img, map[string]string{
		sign.AnnotationModelName:    model,
		sign.AnnotationModelVersion: version,
	}).(v1.Image)
	ref, err := name.ParseReference(r.host+"/"+repo+":"+version, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return r.host + "/" + repo + "@" + d.String()
}

// keyPair generates a cosign key pair and writes it to a temporary
// directory.
type keyPair struct {
	priv, pub         []byte
	privPath, pubPath string
	src               sign.SignerSource
}

func newKeyPair(t testing.TB) keyPair {
	t.Helper()
	priv, pub, err := sign.GenerateKeys([]byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := keyPair{priv: priv, pub: pub, privPath: filepath.Join(dir, "cosign.key"), pubPath: filepath.Join(dir, "cosign.pub")}
	// One source per key: it decrypts the key (scrypt) once.
	k.src = sign.Key(priv, []byte(testPassword))
	if err := os.WriteFile(k.privPath, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.pubPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k keyPair) source() sign.SignerSource { return k.src }

func gate(model, version string, v modelgate.Verdict) modelgate.GatePredicate {
	return modelgate.GatePredicate{
		Model:   modelgate.ModelRef{Name: model, Version: version},
		Verdict: v,
		Dataset: modelgate.DatasetRef{Digest: "sha256:" + strings.Repeat("ab", 32), Rows: 442},
	}
}

func provenance(t testing.TB, model, version string) *sign.Provenance {
	t.Helper()
	p, err := sign.NewProvenance(sign.ProvenanceInput{
		BuilderID:             "https://modelci.dev/builders/local",
		ModelciVersion:        "0.1.0",
		RunID:                 "run-1",
		Model:                 modelgate.ModelRef{Name: model, Version: version},
		DatasetURI:            "data/diabetes.csv",
		DatasetDigest:         "sha256:" + strings.Repeat("ab", 32),
		SourceURI:             "git+https://example.invalid/models.git",
		SourceRevision:        strings.Repeat("c", 40),
		BuiltinTrainer:        "linear",
		BuiltinTrainerVersion: "1",
		Parameters:            map[string]any{"epochs": 300},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctx(t testing.TB) context.Context {
	return t.Context()
}
