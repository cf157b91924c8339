// Package ocitest holds the test fixtures several packages share: an
// in-process OCI registry over real HTTP, cosign key pairs on disk, and
// model images pushed, signed and attested as `modelci run` publishes them.
package ocitest

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/sign"
)

// Registry starts an in-process registry over real HTTP on loopback and
// returns its host:port; it stops when the test ends.
func Registry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Recorded is a registry like Registry's that keeps what crossed the wire:
// every request URL and body and every response body, for tests that
// search it (a secret that must never reach a registry).
type Recorded struct {
	// Host is the registry's host:port.
	Host string
	mu   sync.Mutex
	seen bytes.Buffer
}

// RecordingRegistry starts a Recorded registry; it stops when the test ends.
func RecordingRegistry(t testing.TB) *Recorded {
	t.Helper()
	r := &Recorded{}
	h := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
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
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// Contents is everything the registry has seen so far.
func (r *Recorded) Contents() string {
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

// Keys is a cosign key pair written to a temporary directory.
type Keys struct {
	Priv, Pub         []byte
	PrivPath, PubPath string
	// Signer decrypts the private key once for every signature.
	Signer sign.SignerSource
}

// NewKeys generates a key pair encrypted with password.
func NewKeys(t testing.TB, password string) Keys {
	t.Helper()
	priv, pub, err := sign.GenerateKeys([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := Keys{Priv: priv, Pub: pub, PrivPath: filepath.Join(dir, "cosign.key"), PubPath: filepath.Join(dir, "cosign.pub"), Signer: sign.Key(priv, []byte(password))}
	if err := os.WriteFile(k.PrivPath, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.PubPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// PushModel pushes a random image of layers layers of size bytes each,
// annotated as model name@version, to repo (HOST:PORT/PATH) under tag, and
// returns its digest.
func PushModel(t testing.TB, repo, tag, name, version string, size, layers int64) v1.Hash {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.Annotations(img, map[string]string{sign.AnnotationModelName: name, sign.AnnotationModelVersion: version}).(v1.Image)
	r, err := oci.ParseRef(repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r.Name(), img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Published says what Publish adds to the pushed image.
type Published struct {
	// Verdict is the gate attestation's verdict; none when empty.
	Verdict modelgate.Verdict
	// Unsigned leaves the image without a signature.
	Unsigned bool
	// Metrics attaches a metrics artifact.
	Metrics bool
	// Gate is the gate policy the attestation says it was made under (its
	// policy_digest), as a spec's deploy, promote and rollback require.
	Gate *modelgate.Policy
}

// Publish pushes name@version to repo tagged with the version, as modelci
// run does, signs it with keys, attests a gate verdict and attaches the
// metrics as p says, and returns the digest.
func Publish(t testing.TB, repo, name, version string, keys Keys, p Published) string {
	t.Helper()
	d := PushModel(t, repo, modelgate.Tag(version), name, version, 1024, 2)
	byDigest := repo + "@" + d.String()
	ctx := t.Context()
	if !p.Unsigned {
		if _, err := sign.Sign(ctx, byDigest, keys.Signer); err != nil {
			t.Fatal(err)
		}
	}
	if p.Verdict != "" {
		g := modelgate.GatePredicate{Model: modelgate.ModelRef{Name: name, Version: version}, Verdict: p.Verdict,
			Dataset: modelgate.DatasetRef{Digest: "sha256:" + strings.Repeat("ab", 32), Rows: 442}}
		if p.Gate != nil {
			g.Policy, g.PolicyDigest = *p.Gate, p.Gate.Digest()
		}
		if _, err := sign.Attest(ctx, byDigest, modelgate.GatePredicateType, g, keys.Signer); err != nil {
			t.Fatal(err)
		}
	}
	if p.Metrics {
		m := &modelgate.Metrics{
			Schema:  modelgate.MetricsSchema,
			Train:   modelgate.TrainMetrics{Loss: []float64{9, 4, 3}},
			Eval:    modelgate.EvalMetrics{Loss: 2, PerExample: []float64{1, 2, 3}},
			Dataset: modelgate.DatasetInfo{Digest: "sha256:" + strings.Repeat("ab", 32), Rows: 15},
			Split:   modelgate.SplitInfo{TestDigest: "sha256:" + strings.Repeat("cd", 32), TestRows: 3, Seed: 42, TestFraction: 0.2},
		}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sign.AttachMetrics(ctx, byDigest, b, keys.Signer); err != nil {
			t.Fatal(err)
		}
	}
	return d.String()
}
