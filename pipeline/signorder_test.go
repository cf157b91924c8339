package pipeline_test

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	ggcr "github.com/google/go-containerregistry/pkg/registry"

	"github.com/modelci/modelci/internal/ocitest"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/sign"
)

// A version tag never names an unsigned image: when the signature cannot
// be written, the digest is pushed but nothing tags it.
func TestSigningFailureLeavesTheVersionUntagged(t *testing.T) {
	h := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/sha256-") {
			refused.Add(1)
			http.Error(w, `{"errors":[{"code":"DENIED","message":"no signatures here"}]}`, http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := host + "/models/diabetes"

	const password = "sign-order-test"
	keys := ocitest.NewKeys(t, password)
	dir := project(t, func(s string) string { return s + "sign:\n  key: cosign.key\n" })
	b, err := os.ReadFile(keys.PrivPath)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cosign.key"), b, 0o600)
	t.Setenv(sign.EnvKeyPassword, password)

	_, err = runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)), pipeline.WithRepository(repo))
	if err == nil || !strings.Contains(err.Error(), "sign") {
		t.Fatalf("err = %v, want the sign stage's error", err)
	}
	if refused.Load() == 0 {
		t.Fatal("the run never tried to write a signature")
	}
	resp, err := http.Head(srv.URL + "/v2/models/diabetes/manifests/" + image.Tag("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD version tag: %d, want 404: the tag names an unsigned image", resp.StatusCode)
	}
	tags, err := http.Get(srv.URL + "/v2/models/diabetes/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(tags.Body)
	tags.Body.Close()
	if strings.Contains(string(body), `"1.0.0"`) {
		t.Fatalf("tags %s hold the version", body)
	}
}
