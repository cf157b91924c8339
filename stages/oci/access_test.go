package oci_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/modelci/modelci/stages/oci"
)

// authRegistry is a real in-process registry behind basic auth. While
// fail is above zero, it answers manifest GETs with 503 and counts down.
func authRegistry(t *testing.T, user, pass string) (host string, fail *atomic.Int32) {
	t.Helper()
	reg := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
	fail = &atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") && fail.Add(-1) >= 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), fail
}

type noKeychain struct{}

func (noKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return authn.Anonymous, nil }

// The environment's credentials apply when Access has none; explicit ones
// win over the environment; the keychain is used only without either.
func TestAccessCredentials(t *testing.T) {
	host, _ := authRegistry(t, "alice", "s3cret")
	ref, err := oci.ParseRef(host + "/m:1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := remote.Write(ref.Name(), img, oci.Access{Credentials: &authn.Basic{Username: "alice", Password: "s3cret"}}.RemoteOptions(ctx)...); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		access oci.Access
		env    [2]string
		wantOK bool
	}{
		{"keychain only", oci.Access{Keychain: noKeychain{}}, [2]string{}, false},
		{"environment", oci.Access{Keychain: noKeychain{}}, [2]string{"alice", "s3cret"}, true},
		{"explicit over environment", oci.Access{Keychain: noKeychain{}}.WithCredentials("alice", "s3cret"), [2]string{"alice", "wrong"}, true},
		{"explicit wrong", oci.Access{Keychain: noKeychain{}}.WithCredentials("alice", "wrong"), [2]string{"alice", "s3cret"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(oci.EnvUsername, tc.env[0])
			t.Setenv(oci.EnvPassword, tc.env[1])
			_, err := remote.Head(ref.Name(), tc.access.RemoteOptions(ctx)...)
			if (err == nil) != tc.wantOK {
				t.Fatalf("Head with remote options: %v, want ok %v", err, tc.wantOK)
			}
			// cosign's client reaches the registry the same way.
			_, err = ociremote.SignedEntity(ref.Name(), tc.access.CosignOptions(ctx)...)
			if (err == nil) != tc.wantOK {
				t.Fatalf("cosign SignedEntity: %v, want ok %v", err, tc.wantOK)
			}
		})
	}
}

// Transient failures are retried, through both option sets, as many times
// as Attempts allows.
func TestAccessRetries(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		attempts int
		fail     int32
		wantOK   bool
	}{
		{"retried", 3, 2, true},
		{"out of attempts", 2, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, fail := authRegistry(t, "u", "p")
			ref, _ := oci.ParseRef(host + "/m:1")
			a := oci.Access{Attempts: tc.attempts, Backoff: time.Millisecond, MaxRetryAfter: -1}.WithCredentials("u", "p")
			img, _ := random.Image(64, 1)
			if err := remote.Write(ref.Name(), img, a.RemoteOptions(ctx)...); err != nil {
				t.Fatal(err)
			}
			fail.Store(tc.fail)
			_, err := ociremote.SignedImage(ref.Name(), a.CosignOptions(ctx)...)
			if (err == nil) != tc.wantOK {
				t.Fatalf("cosign read after %d failures with %d attempts: %v, want ok %v", tc.fail, tc.attempts, err, tc.wantOK)
			}
			// Each attempt took one failure: all of them when retried,
			// as many as there were attempts otherwise.
			if left, want := max(fail.Load(), 0), max(tc.fail-int32(tc.attempts), 0); left != want {
				t.Fatalf("%d failures left, want %d", left, want)
			}
		})
	}
}

func TestAccessRetryDefaults(t *testing.T) {
	for _, tc := range []struct {
		a                 oci.Access
		attempts          int
		backoff, maxAfter time.Duration
	}{
		{oci.Access{}, oci.DefaultAttempts, oci.DefaultBackoff, oci.MaxRetryAfter},
		{oci.Access{Attempts: -3, Backoff: -1, MaxRetryAfter: -1}, 1, 0, 0},
		{oci.Access{Attempts: 2, Backoff: time.Millisecond, MaxRetryAfter: time.Second}, 2, time.Millisecond, time.Second},
	} {
		n, b, m := tc.a.Retry()
		if n != tc.attempts || b != tc.backoff || m != tc.maxAfter {
			t.Errorf("%+v.Retry() = %d, %s, %s; want %d, %s, %s", tc.a, n, b, m, tc.attempts, tc.backoff, tc.maxAfter)
		}
	}
}
