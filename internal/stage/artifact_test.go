package stage

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/modelci/modelci/stages/artifact"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// runStep runs `stage ARGS…` in-process and returns what it printed on
// stdout, trimmed.
func runStep(t *testing.T, args ...string) (string, error) {
	t.Helper()
	stdout := os.Stdout
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = w
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		out <- b
	}()
	err = Run(context.Background(), args, decisionCode)
	w.Close()
	os.Stdout = stdout
	return string(bytes.TrimSpace(<-out)), err
}

// authRegistry serves the embedded registry behind basic authentication
// for user:pass over real HTTP on loopback and returns its host:port.
func authRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+strings.Replace(string(h), "$2a$", "$2y$", 1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	handler, err := registry.NewHandler(t.TempDir(), registry.WithHtpasswd(htpasswd))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// dockerConfig writes a Docker config directory with credentials for host,
// as a Secret mounted in a pod, and points DOCKER_CONFIG at it.
func dockerConfig(t *testing.T, host, user, pass string) {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	cfg := `{"auths":{"` + host + `":{"auth":"` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

// A training Job's pod: `stage put` pushes the trainer's outputs by digest
// with the credentials of the mounted Docker config, prints the reference
// and writes it to the termination log; `stage fetch` pulls it back.
func TestPutAndFetch(t *testing.T) {
	t.Setenv(oci.EnvUsername, "")
	t.Setenv(oci.EnvPassword, "")
	host := authRegistry(t, "trainer", "s3cret")
	dockerConfig(t, host, "trainer", "s3cret")
	out := t.TempDir()
	for name, body := range map[string]string{"model/model.json": `{"w":[1,2]}`, "train.json": `{"loss":[3,2,1]}`} {
		p := filepath.Join(out, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	termLog := filepath.Join(t.TempDir(), "termination-log")
	ref, err := runStep(t, "put", "--dir", out, "--to", host+"/jobs/out", "--termination-log", termLog)
	if err != nil {
		t.Fatal(err)
	}
	r, err := oci.ParseRef(ref)
	if err != nil || !r.HasDigest() || r.Repository() != host+"/jobs/out" {
		t.Fatalf("put printed %q (%v), want %s/jobs/out@sha256:…", ref, err, host)
	}
	if b, err := os.ReadFile(termLog); err != nil || string(b) != ref {
		t.Errorf("termination log %q, %v; want %q", b, err, ref)
	}

	dest := filepath.Join(t.TempDir(), "pulled")
	got, err := runStep(t, "fetch", "--ref", ref, "--dir", dest, "--artifact-type", artifact.ArtifactTypeTrainingOutput)
	if err != nil {
		t.Fatal(err)
	}
	if got != ref {
		t.Errorf("fetch printed %q, want %q", got, ref)
	}
	if b, err := os.ReadFile(filepath.Join(dest, artifact.OutPath, "model", "model.json")); err != nil || string(b) != `{"w":[1,2]}` {
		t.Errorf("fetched model.json %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, artifact.OutPath, "train.json")); err != nil || string(b) != `{"loss":[3,2,1]}` {
		t.Errorf("fetched train.json %q, %v", b, err)
	}

	// Asked for the inputs' type, fetch refuses the outputs.
	if _, err := runStep(t, "fetch", "--ref", ref, "--dir", filepath.Join(t.TempDir(), "in"), "--artifact-type", artifact.ArtifactTypeTrainingInput); !errors.Is(err, artifact.ErrNotArtifact) {
		t.Errorf("fetch of the outputs as inputs: %v, want ErrNotArtifact", err)
	}
	// Without the Docker config's credentials the registry refuses both.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := runStep(t, "put", "--dir", out, "--to", host+"/jobs/out"); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("put without credentials: %v, want ErrUnauthorized", err)
	}
	if _, err := runStep(t, "fetch", "--ref", ref, "--dir", filepath.Join(t.TempDir(), "in")); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("fetch without credentials: %v, want ErrUnauthorized", err)
	}
}

// Missing flags are usage errors; a reference by tag is refused before
// the registry is asked.
func TestFetchPutRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want error
	}{
		{"fetch without ref", []string{"fetch", "--dir", t.TempDir()}, ErrUsage},
		{"fetch with an argument", []string{"fetch", "--ref", "127.0.0.1:1/x@sha256:" + strings.Repeat("0", 64), "--dir", "d", "extra"}, ErrUsage},
		{"put without to", []string{"put", "--dir", t.TempDir()}, ErrUsage},
		{"put unknown flag", []string{"put", "--dir", t.TempDir(), "--to", "127.0.0.1:1/x", "--username", "u"}, ErrUsage},
		{"fetch by tag", []string{"fetch", "--ref", "127.0.0.1:1/x:latest", "--dir", filepath.Join(t.TempDir(), "in")}, oci.ErrNotDigest},
		{"put to a tag", []string{"put", "--dir", t.TempDir(), "--to", "127.0.0.1:1/x:latest"}, oci.ErrBadRef},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := runStep(t, tc.args...); !errors.Is(err, tc.want) {
				t.Fatalf("stage %v: %v, want %v", tc.args, err, tc.want)
			}
		})
	}
}
