package registry_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/modelci/modelci/stages/registry"
)

func TestPushRoundTrip(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	img := randomImage(t, 1)
	idx := ociIndex(t, 10)
	for _, tc := range []struct {
		name string
		a    registry.Artifact
	}{{"image", img}, {"index", idx}} {
		t.Run(tc.name, func(t *testing.T) {
			repo := srv.Host + "/models/" + tc.name
			got, err := registry.Push(ctx, tc.a, repo, registry.WithTags("1.0.0"), fast)
			if err != nil {
				t.Fatal(err)
			}
			want := digestOf(t, tc.a)
			if got.Digest != want || got.Ref != repo+"@"+want.String() {
				t.Fatalf("pushed %+v, want digest %s", got, want)
			}
			if len(got.Tags) != 1 || got.Tags[0] != "1.0.0" {
				t.Fatalf("tags = %v, want [1.0.0]", got.Tags)
			}
			for _, ref := range []string{repo + ":1.0.0", got.Ref} {
				h, err := registry.Resolve(ctx, ref)
				if err != nil || h != want {
					t.Fatalf("resolve %s = %s, %v; want %s", ref, h, err, want)
				}
				pulled, err := registry.Pull(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				checkBlobs(t, pulled)
			}
		})
	}
}

// Without tags, Push writes the manifest by digest alone, to
// go-containerregistry's registry and to the embedded one: the repository
// lists no tag and the digest resolves (stages/artifact relies on it).
func TestPushByDigestOnly(t *testing.T) {
	embedded, _ := serve(t, t.TempDir())
	ctx := context.Background()
	img := randomImage(t, 7)
	for name, host := range map[string]string{"ggcr": newServer(t).Host, "embedded": embedded} {
		t.Run(name, func(t *testing.T) {
			repo := host + "/by/digest"
			got, err := registry.Push(ctx, img, repo, fast)
			if err != nil {
				t.Fatal(err)
			}
			want := digestOf(t, img)
			if got.Ref != repo+"@"+want.String() || len(got.Tags) != 0 {
				t.Fatalf("pushed %+v, want %s@%s and no tags", got, repo, want)
			}
			if tags, err := registry.ListTags(ctx, repo, fast); err != nil || len(tags) != 0 {
				t.Fatalf("tags %v, %v; want none", tags, err)
			}
			if h, err := registry.Resolve(ctx, got.Ref, fast); err != nil || h != want {
				t.Fatalf("resolve %s = %s, %v", got.Ref, h, err)
			}
		})
	}
}

// A retrain keeps the runtime layer and changes the model layer: only the
// model layer and the config go up; an unchanged re-push uploads nothing.
func TestPushUploadsOnlyWhatChanged(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	repo := srv.Host + "/models/diabetes"
	runtime := layer(t, "ko-app/runtime", 40000, 1)
	first := ociImage(t, runtime, layer(t, "model/weights.bin", 20000, 2))
	retrain := ociImage(t, runtime, layer(t, "model/weights.bin", 20000, 3))

	if _, err := registry.Push(ctx, first, repo, registry.WithTags("1.0.0"), fast); err != nil {
		t.Fatal(err)
	}
	srv.reset()
	if _, err := registry.Push(ctx, first, repo, registry.WithTags("1.0.0"), fast); err != nil {
		t.Fatal(err)
	}
	commits, _, puts, bytesIn := srv.snapshot()
	if len(commits) != 0 || puts != 0 || bytesIn != 0 {
		t.Fatalf("unchanged re-push: %d blob uploads %v, %d manifest PUTs, %d bytes; want none", len(commits), commits, puts, bytesIn)
	}

	srv.reset()
	if _, err := registry.Push(ctx, retrain, repo, registry.WithTags("1.0.1"), fast); err != nil {
		t.Fatal(err)
	}
	commits, _, _, bytesIn = srv.snapshot()
	m, err := retrain.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{m.Config.Digest.String(): 1, m.Layers[1].Digest.String(): 1}
	if !equalCounts(commits, want) {
		t.Fatalf("retrain uploaded %v, want only the model layer and config %v", commits, want)
	}
	if wantBytes := m.Config.Size + m.Layers[1].Size; bytesIn != wantBytes {
		t.Fatalf("retrain uploaded %d bytes, want %d", bytesIn, wantBytes)
	}
	t.Logf("retrain uploaded %d of %d bytes (%.3f of the image)", bytesIn, imageSize(t, retrain), float64(bytesIn)/float64(imageSize(t, retrain)))
}

func imageSize(t testing.TB, img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestTagImmutability(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	repo := srv.Host + "/models/m"
	a, b := randomImage(t, 100), randomImage(t, 200)
	da, db := digestOf(t, a), digestOf(t, b)

	if _, err := registry.Push(ctx, a, repo, registry.WithTags("1.0.0"), fast); err != nil {
		t.Fatal(err)
	}

	srv.reset()
	got, err := registry.Push(ctx, a, repo, registry.WithTags("1.0.0"), fast)
	if err != nil {
		t.Fatalf("same version, same digest: %v, want a no-op", err)
	}
	if _, _, puts, _ := srv.snapshot(); puts != 0 || len(got.Tags) != 1 {
		t.Fatalf("same digest re-push made %d manifest PUTs (tags %v), want 0", puts, got.Tags)
	}

	srv.reset()
	_, err = registry.Push(ctx, b, repo, registry.WithTags("1.0.0"), fast)
	if !errors.Is(err, registry.ErrTagExists) {
		t.Fatalf("same version, other digest: err = %v, want ErrTagExists", err)
	}
	for _, d := range []v1.Hash{da, db} {
		if !strings.Contains(err.Error(), d.String()) {
			t.Errorf("error %q does not name %s", err, d)
		}
	}
	if commits, _, _, _ := srv.snapshot(); len(commits) != 0 {
		t.Errorf("refused push uploaded blobs %v", commits)
	}
	if h, err := registry.Resolve(ctx, repo+":1.0.0"); err != nil || h != da {
		t.Fatalf("tag after refusal = %s, %v; want %s", h, err, da)
	}

	if _, err := registry.Push(ctx, b, repo, registry.WithTags("1.0.0"), registry.WithAllowOverwrite(), fast); err != nil {
		t.Fatalf("allow overwrite: %v", err)
	}
	if h, err := registry.Resolve(ctx, repo+":1.0.0"); err != nil || h != db {
		t.Fatalf("tag after overwrite = %s, %v; want %s", h, err, db)
	}

	// latest moves without asking, and only when asked.
	if _, err := registry.Push(ctx, a, repo, registry.WithTags("0.9.0"), fast); err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Resolve(ctx, repo+":latest"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("latest without WithLatest: err = %v, want ErrNotFound", err)
	}
	for _, img := range []v1.Image{a, b} {
		if _, err := registry.Push(ctx, img, repo, registry.WithLatest(), fast); err != nil {
			t.Fatal(err)
		}
		if h, err := registry.Resolve(ctx, repo+":latest"); err != nil || h != digestOf(t, img) {
			t.Fatalf("latest = %s, %v; want %s", h, err, digestOf(t, img))
		}
	}
}

func TestPushBadInput(t *testing.T) {
	srv := newServer(t)
	img := randomImage(t, 1)
	for _, tc := range []struct {
		name, repo string
		opts       []registry.Option
		want       error
	}{
		{"no host", "models/m", nil, registry.ErrBadRef},
		{"upper case", srv.Host + "/Models", nil, registry.ErrBadRef},
		{"tag in repo", srv.Host + "/m:1", nil, registry.ErrBadRef},
		{"bad tag", srv.Host + "/m", []registry.Option{registry.WithTags("1.0.0+build")}, registry.ErrBadRef},
		{"empty", "", nil, registry.ErrBadRef},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := registry.Push(context.Background(), img, tc.repo, append(tc.opts, fast)...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Push(%q) err = %v, want %v", tc.repo, err, tc.want)
			}
		})
	}
	if _, _, puts, _ := srv.snapshot(); puts != 0 {
		t.Fatalf("bad input reached the registry: %d manifest PUTs", puts)
	}
}

// 401 and 403 fail at once with ErrUnauthorized: no request is repeated.
func TestPushUnauthorizedNoRetry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match func(*http.Request) bool
		code  int
	}{
		{"401 on everything", anyRequest, http.StatusUnauthorized},
		{"403 on everything", anyRequest, http.StatusForbidden},
		{"401 on blob uploads", isPost, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			srv.setFault(status(tc.match, tc.code, -1, ""))
			_, err := registry.Push(context.Background(), randomImage(t, 1), srv.Host+"/m", registry.WithTags("1"), fast)
			if !errors.Is(err, registry.ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
			// Each attempt at a blob starts with a HEAD of it; upload
			// starts (POST) do not name the blob, so count them all.
			_, requests, _, _ := srv.snapshot()
			for k, n := range requests {
				if n > 1 && k != "GET /v2/" && !strings.HasPrefix(k, "POST ") {
					t.Errorf("%s sent %d times, want no retries", k, n)
				}
			}
			if n := requests["POST /v2/m/blobs/uploads/"]; n > 3 {
				t.Errorf("%d upload starts for 3 blobs, want no retries", n)
			}
		})
	}
}

func TestPushUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = registry.Push(context.Background(), randomImage(t, 1), addr+"/m", fast)
	if !errors.Is(err, registry.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	t.Logf("error: %v", err)
}

// Transient faults are retried and the push lands with the right digest;
// faults that outlast the retries fail with the registry's error.
func TestPushFaults(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault fault
		fails bool
	}{
		{"503 twice on each upload start", status(isPost, http.StatusServiceUnavailable, 2, ""), false},
		{"500 on a manifest PUT", status(isManifestPut, http.StatusInternalServerError, 1, ""), false},
		{"429 on a blob body", status(isPatch, http.StatusTooManyRequests, 1, "0"), false},
		{"connection reset mid-blob", resetMidBody(isPatch, 2), false},
		{"slow bodies", slowBody(isPatch), false}, // never answers itself
		{"503 forever", status(isPost, http.StatusServiceUnavailable, -1, ""), true},
		{"reset forever", resetMidBody(isPatch, -1), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			var fired atomic.Int32
			srv.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				if tc.fault(w, r) {
					fired.Add(1)
					return true
				}
				return false
			})
			img := ociImage(t, layer(t, "a", 300000, 1), layer(t, "b", 200000, 2))
			repo := srv.Host + "/m"
			got, err := registry.Push(context.Background(), img, repo, registry.WithTags("1"), fast)
			srv.setFault(nil)
			if fired.Load() == 0 && tc.name != "slow bodies" {
				t.Fatal("the fault never fired")
			}
			if tc.fails {
				if err == nil {
					t.Fatal("push succeeded, want an error")
				}
				t.Logf("error: %v", err)
				if _, err := registry.Resolve(context.Background(), repo+":1"); !errors.Is(err, registry.ErrNotFound) {
					t.Fatalf("tag after a failed push: %v, want ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := digestOf(t, img)
			if got.Digest != want {
				t.Fatalf("digest = %s, want %s", got.Digest, want)
			}
			pulled, err := registry.Pull(context.Background(), repo+":1")
			if err != nil {
				t.Fatal(err)
			}
			checkBlobs(t, pulled)
		})
	}
}

func isManifestPut(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/")
}

// Bounded: a fault that never clears costs exactly the configured attempts
// per blob, then a clear error.
func TestPushRetriesAreBounded(t *testing.T) {
	srv := newServer(t)
	srv.setFault(status(isPost, http.StatusServiceUnavailable, -1, ""))
	img := randomImage(t, 1)
	// One job: the first blob exhausts its attempts and the push stops.
	_, err := registry.Push(context.Background(), img, srv.Host+"/m", registry.WithRetry(3, time.Millisecond), registry.WithJobs(1))
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want the registry's 503", err)
	}
	_, requests, _, _ := srv.snapshot()
	if n := requests["POST /v2/m/blobs/uploads/"]; n != 3 {
		t.Errorf("%d upload starts, want 3 attempts", n)
	}
}

// Retry-After is honoured: the next attempt waits at least that long even
// though the backoff is a millisecond.
func TestPushHonoursRetryAfter(t *testing.T) {
	srv := newServer(t)
	var (
		mu    sync.Mutex
		times []time.Time
	)
	throttle := status(isPost, http.StatusTooManyRequests, 1, "1")
	srv.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if isPost(r) {
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
		}
		return throttle(w, r)
	})
	_, err := registry.Push(context.Background(), randomImage(t, 1), srv.Host+"/m", fast, registry.WithJobs(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(times) < 2 {
		t.Fatalf("saw %d upload starts, want a retry", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Fatalf("retried after %v, want at least the 1s Retry-After", gap)
	}
}

// When a blob upload fails, nothing is tagged (or stored by digest); a
// re-run uploads only the blobs that did not make it.
func TestFailedPushLeavesNoTagAndResumes(t *testing.T) {
	srv := newServer(t)
	ctx := context.Background()
	repo := srv.Host + "/m"
	img := ociImage(t, layer(t, "a", 1000, 1), layer(t, "b", 1000, 2), layer(t, "c", 1000, 3))
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	broken := m.Layers[1].Digest.String()
	srv.setFault(status(func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Query().Get("digest") == broken
	}, http.StatusBadRequest, -1, ""))
	if _, err := registry.Push(ctx, img, repo, registry.WithTags("1.0.0"), registry.WithLatest(), fast); err == nil {
		t.Fatal("push succeeded with a blob failing, want an error")
	}
	srv.setFault(nil)
	for _, ref := range []string{repo + ":1.0.0", repo + ":latest", repo + "@" + digestOf(t, img).String()} {
		if _, err := registry.Resolve(ctx, ref); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("%s after failed push: err = %v, want ErrNotFound", ref, err)
		}
	}
	firstRun, _, _, _ := srv.snapshot()
	if firstRun[broken] != 0 {
		t.Fatalf("the broken blob was committed")
	}

	srv.reset()
	if _, err := registry.Push(ctx, img, repo, registry.WithTags("1.0.0"), fast); err != nil {
		t.Fatal(err)
	}
	rerun, _, _, _ := srv.snapshot()
	for d := range firstRun {
		if rerun[d] != 0 {
			t.Errorf("re-run uploaded %s again", d)
		}
	}
	if rerun[broken] != 1 {
		t.Errorf("re-run uploads = %v, want the missing blob %s once", rerun, broken)
	}
}

func TestPushCredentials(t *testing.T) {
	const user, pass = "ci", "s3cret"
	srv := newServer(t)
	srv.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if u, p, ok := r.BasicAuth(); ok && u == user && p == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	dockerConfig := t.TempDir()
	writeDockerConfig(t, dockerConfig, srv.Host, user, pass)

	for _, tc := range []struct {
		name   string
		opts   []registry.Option
		env    map[string]string
		wantOK bool
	}{
		{"anonymous", nil, nil, false},
		{"explicit", []registry.Option{registry.WithCredentials(user, pass)}, nil, true},
		{"explicit wrong", []registry.Option{registry.WithCredentials(user, "nope")}, nil, false},
		{"environment", nil, map[string]string{registry.EnvUsername: user, registry.EnvPassword: pass}, true},
		{"docker config", nil, map[string]string{"DOCKER_CONFIG": dockerConfig}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DOCKER_CONFIG", t.TempDir()) // no ambient credentials
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := registry.Push(context.Background(), randomImage(t, 1), srv.Host+"/m", append(tc.opts, fast)...)
			if tc.wantOK && err != nil {
				t.Fatal(err)
			}
			if !tc.wantOK && !errors.Is(err, registry.ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
		})
	}
}

func TestPushProgressLines(t *testing.T) {
	srv := newServer(t)
	var out bytes.Buffer
	img := ociImage(t, layer(t, "a", 200000, 1))
	if _, err := registry.Push(context.Background(), img, srv.Host+"/m", registry.WithProgress(&out), fast); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 || !strings.Contains(lines[len(lines)-1], "100%") {
		t.Fatalf("progress = %q, want plain lines ending at 100%%", out.String())
	}
	if strings.Contains(out.String(), "\r") {
		t.Fatalf("progress to a non-terminal has carriage returns: %q", out.String())
	}
}

// Blob uploads run in parallel: with WithJobs(3), two blob bodies are in
// flight at once (each waits at a barrier until the other arrives).
func TestPushUploadsInParallel(t *testing.T) {
	srv := newServer(t)
	var (
		mu       sync.Mutex
		inflight int
	)
	both := make(chan struct{})
	srv.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !isPatch(r) {
			return false
		}
		mu.Lock()
		inflight++
		if inflight == 2 {
			close(both)
		}
		mu.Unlock()
		select {
		case <-both:
		case <-time.After(30 * time.Second): // only when uploads are serial
		}
		return false
	})
	img := ociImage(t, layer(t, "a", 1000, 1), layer(t, "b", 1000, 2))
	if _, err := registry.Push(context.Background(), img, srv.Host+"/m", registry.WithJobs(3), fast); err != nil {
		t.Fatal(err)
	}
	select {
	case <-both:
	default:
		t.Fatal("blob uploads never overlapped")
	}
}
