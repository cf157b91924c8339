package registry_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// Preflight against the embedded registry with an htpasswd file: the
// credentials' fate is named, and a preflight that passes leaves no upload
// behind.
func TestPreflight(t *testing.T) {
	const user, pass = "ci", "s3cret"
	root := t.TempDir()
	h, err := registry.NewHandler(root, registry.WithHtpasswd(writeHtpasswd(t, bcryptEntry(t, user, pass), bcryptEntry(t, "reader", "r"))))
	if err != nil {
		t.Fatal(err)
	}
	// reader may log in, but not start uploads: 403, as a registry with
	// per-repository permissions answers.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, _, ok := r.BasicAuth(); ok && u == "reader" && r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/blobs/uploads/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`))
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name string
		repo string
		opts []registry.Option
		want error
	}{
		{"right credentials", host + "/team/m", []registry.Option{registry.WithCredentials(user, pass)}, nil},
		{"no credentials", host + "/team/m", nil, registry.ErrNoCredentials},
		{"wrong password", host + "/team/m", []registry.Option{registry.WithCredentials(user, "nope")}, registry.ErrCredentialsRefused},
		{"unknown user", host + "/team/m", []registry.Option{registry.WithCredentials("who", "x")}, registry.ErrCredentialsRefused},
		{"no push permission", host + "/team/m", []registry.Option{registry.WithCredentials("reader", "r")}, registry.ErrNoPushPermission},
		{"nothing listening", closed + "/team/m", nil, registry.ErrUnreachable},
		{"bad repository", host + "/Team", nil, registry.ErrBadRef},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", t.TempDir()) // no ambient credentials
			t.Setenv(registry.EnvUsername, "")
			t.Setenv(registry.EnvPassword, "")
			err := registry.Preflight(context.Background(), tc.repo, append(tc.opts, fast)...)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			credential := tc.want == registry.ErrNoCredentials || tc.want == registry.ErrCredentialsRefused || tc.want == registry.ErrNoPushPermission
			if credential != errors.Is(err, registry.ErrUnauthorized) {
				t.Errorf("err = %v: ErrUnauthorized %v, want %v", err, !credential, credential)
			}
			for _, other := range []error{registry.ErrNoCredentials, registry.ErrCredentialsRefused, registry.ErrNoPushPermission} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err = %v is also %v", err, other)
				}
			}
			t.Logf("error: %v", err)
		})
	}
	// The upload the preflight started was cancelled.
	left, err := os.ReadDir(filepath.Join(root, "uploads"))
	if err != nil || len(left) != 0 {
		t.Fatalf("uploads left after the preflights: %d (%v)", len(left), err)
	}
	// The docker config's credentials count as given.
	t.Run("docker config", func(t *testing.T) {
		dir := t.TempDir()
		writeDockerConfig(t, dir, host, user, "nope")
		t.Setenv("DOCKER_CONFIG", dir)
		if err := registry.Preflight(context.Background(), host+"/team/m", fast); !errors.Is(err, oci.ErrCredentialsRefused) {
			t.Fatalf("err = %v, want ErrCredentialsRefused", err)
		}
	})
}

// A registry without authentication passes, and a timeout is named.
func TestPreflightOpenAndSilent(t *testing.T) {
	host, _ := serve(t, t.TempDir())
	if err := registry.Preflight(context.Background(), host+"/m", fast); err != nil {
		t.Fatal(err)
	}
	silent := stallServer(t, func(w http.ResponseWriter, r *http.Request, done <-chan struct{}) bool {
		<-done
		return true
	})
	err := registry.Preflight(context.Background(), silent+"/m", fast, registry.WithTimeout(200*time.Millisecond))
	if !errors.Is(err, oci.ErrTimeout) {
		t.Fatalf("err = %v, want oci.ErrTimeout", err)
	}
}
