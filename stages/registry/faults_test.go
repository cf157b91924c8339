package registry_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/modelci/modelci/internal/ocitest"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// faultProxy is an httputil.ReverseProxy in front of a registry that
// answers a share of the requests itself, drawn from a seeded RNG, with a
// 503 or a 429 (with Retry-After), and can cut upload bodies mid-way: it
// forwards the first bytes to the registry, then resets the client's
// connection (TCP RST). It counts the upload body bytes clients sent it.
type faultProxy struct {
	*httptest.Server
	Host string

	mu         sync.Mutex
	rng        *rand.Rand
	p503, p429 float64
	retryAfter string
	// cuts cuts the next upload bodies whose Content-Range starts at
	// cutFrom or later, one per entry, after that many bytes.
	cuts      []int64
	cutFrom   int64
	injected  map[int]int
	resets    int
	bodyBytes int64 // PATCH and PUT upload body bytes read from clients
}

type proxyState struct{ cut bool }

type proxyKey struct{}

func newFaultProxy(t *testing.T, upstream string, seed uint64) *faultProxy {
	t.Helper()
	target, err := url.Parse("http://" + upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{rng: rand.New(rand.NewPCG(seed, 1)), injected: map[int]int{}}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = nil
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if st, _ := r.Context().Value(proxyKey{}).(*proxyState); st != nil && st.cut {
			resetConn(w)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		roll := p.rng.Float64()
		var cut int64 = -1
		upload := isBlobUpload(r) && r.ContentLength > 0
		switch {
		case roll < p.p503:
			p.injected[http.StatusServiceUnavailable]++
		case roll < p.p503+p.p429:
			p.injected[http.StatusTooManyRequests]++
		case upload && len(p.cuts) > 0 && r.ContentLength > p.cuts[0] && rangeStart(r) >= p.cutFrom:
			cut, p.cuts = p.cuts[0], p.cuts[1:]
			p.resets++
		}
		p.mu.Unlock()
		switch {
		case roll < p.p503:
			writeJSONError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "")
			return
		case roll < p.p503+p.p429:
			writeJSONError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", p.retryAfter)
			return
		}
		st := &proxyState{}
		r = r.WithContext(context.WithValue(r.Context(), proxyKey{}, st))
		if upload {
			r.Body = &proxyBody{r: r.Body, p: p, cut: cut, st: st}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	p.Host = strings.TrimPrefix(p.URL, "http://")
	return p
}

func (p *faultProxy) set(f func(p *faultProxy)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *faultProxy) counts() (injected map[int]int, resets int, bodyBytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	injected = map[int]int{}
	for k, v := range p.injected {
		injected[k] = v
	}
	return injected, p.resets, p.bodyBytes
}

// rangeStart is where a request's Content-Range starts (0 without one).
func rangeStart(r *http.Request) int64 {
	var start, end int64
	fmt.Sscanf(r.Header.Get("Content-Range"), "%d-%d", &start, &end)
	return start
}

var errCut = errors.New("injected: connection cut mid-body")

// proxyBody counts what the client sends and, at cut, fails: the proxy's
// request to the registry breaks off there, and the client's connection is
// reset.
type proxyBody struct {
	r    io.ReadCloser
	p    *faultProxy
	cut  int64 // -1: never
	read int64
	st   *proxyState
}

func (b *proxyBody) Read(q []byte) (int, error) {
	if b.cut >= 0 {
		if b.read >= b.cut {
			b.st.cut = true
			return 0, errCut
		}
		q = q[:min(int64(len(q)), b.cut-b.read)]
	}
	n, err := b.r.Read(q)
	b.read += int64(n)
	b.p.mu.Lock()
	b.p.bodyBytes += int64(n)
	b.p.mu.Unlock()
	return n, err
}

func (b *proxyBody) Close() error { return b.r.Close() }

func resetConn(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

func writeJSONError(w http.ResponseWriter, code int, errCode, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"injected"}]}`, errCode)
}

// bigLayer is an uncompressed tar layer of one file of size bytes, all
// zero but for seed in the first eight: distinct digests, cheaply.
func bigLayer(t testing.TB, size int, seed uint64) v1.Layer {
	t.Helper()
	data := make([]byte, size)
	binary.BigEndian.PutUint64(data, seed)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "model/weights.bin", Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// weightsMB is the layer of the fault tests: 45 MB.
const weightsMB = 45

// registries are the registries the fault tests run against, by name: the
// embedded one, and docker-registry where it is installed.
func registries(t *testing.T) map[string]string {
	out := map[string]string{}
	host, _ := serve(t, t.TempDir())
	out["embedded"] = host
	if _, err := exec.LookPath("docker-registry"); err == nil {
		out["docker-registry"] = ocitest.Distribution(t)
	} else {
		t.Log("docker-registry not on PATH: the embedded registry only")
	}
	return out
}

// At 30 % of requests answered 503, or 429 with Retry-After, pushes of a
// 45 MB layer still land: at least 95 % of them, over 20 pushes per
// registry and fault, within the retry budget of the default attempts.
func TestPushSurvivesTransientFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 45 MB 80 times")
	}
	const pushes = 20
	for name, host := range registries(t) {
		for _, fault := range []struct {
			name       string
			p503, p429 float64
		}{{"30% 503", 0.3, 0}, {"30% 429", 0, 0.3}} {
			t.Run(name+"/"+fault.name, func(t *testing.T) {
				t.Parallel()
				proxy := newFaultProxy(t, host, 42)
				repo := proxy.Host + "/faults/" + strings.ReplaceAll(strings.TrimSuffix(fault.name, "%"), "% ", "-")
				ok := 0
				start := time.Now()
				var errs []string
				for i := range pushes {
					img := ociImage(t, bigLayer(t, weightsMB*1000*1000, uint64(1000*i+int(fault.p429*10))))
					proxy.set(func(p *faultProxy) { p.p503, p.p429, p.retryAfter = fault.p503, fault.p429, "1" })
					_, err := registry.Push(context.Background(), img, repo,
						registry.WithTags(fmt.Sprintf("1.0.%d", i)),
						// The default attempts; waits kept short: Retry-After
						// is honoured up to 25 ms here (TestPushHonoursRetryAfter
						// checks the whole wait).
						registry.WithRetry(oci.DefaultAttempts, time.Millisecond), registry.WithMaxRetryAfter(25*time.Millisecond),
						registry.WithTagSettle(time.Millisecond))
					proxy.set(func(p *faultProxy) { p.p503, p.p429 = 0, 0 })
					if err != nil {
						errs = append(errs, err.Error())
						continue
					}
					ok++
					got, err := registry.Resolve(context.Background(), repo+":"+fmt.Sprintf("1.0.%d", i), fast)
					if err != nil || got != digestOf(t, img) {
						t.Fatalf("push %d: the tag names %s (%v), want %s", i, got, err, digestOf(t, img))
					}
				}
				injected, _, _ := proxy.counts()
				t.Logf("%s, %s: %d of %d pushes of %d MB succeeded (%.0f%%) in %s; injected %v",
					name, fault.name, ok, pushes, weightsMB, 100*float64(ok)/pushes, time.Since(start).Round(time.Millisecond), injected)
				for _, e := range errs {
					t.Logf("failed: %s", e)
				}
				if float64(ok) < 0.95*pushes {
					t.Fatalf("%d of %d pushes succeeded, want at least 95%%", ok, pushes)
				}
			})
		}
	}
}

// A connection reset mid-chunk costs at most that chunk: the push asks the
// registry where the upload stands and sends from there, never again what
// the registry acknowledged. Counted: the upload body bytes the proxy read
// beyond the blobs' sizes.
func TestPushResumesAfterReset(t *testing.T) {
	const chunk = 16 << 20
	for name, host := range registries(t) {
		t.Run(name, func(t *testing.T) {
			proxy := newFaultProxy(t, host, 7)
			img := ociImage(t, bigLayer(t, weightsMB*1000*1000, 77))
			// Cut the second chunk half-way, then the third a quarter in.
			proxy.set(func(p *faultProxy) { p.cutFrom, p.cuts = chunk, []int64{chunk / 2, chunk / 4} })
			p, err := registry.Push(context.Background(), img, proxy.Host+"/resume/m", registry.WithTags("1.0.0"),
				registry.WithChunkSize(chunk), fast)
			if err != nil {
				t.Fatal(err)
			}
			if p.Digest != digestOf(t, img) {
				t.Fatalf("pushed %s, want %s", p.Digest, digestOf(t, img))
			}
			pulled, err := registry.Pull(context.Background(), proxy.Host+"/resume/m:1.0.0", fast)
			if err != nil {
				t.Fatal(err)
			}
			checkBlobs(t, pulled)
			_, resets, sent := proxy.counts()
			blobs := imageSize(t, img) - manifestSize(t, img)
			resent := sent - blobs
			t.Logf("%s: %d resets, %d body bytes for %d bytes of blobs: %d re-sent (%.2f chunks of %d MiB)",
				name, resets, sent, blobs, resent, float64(resent)/chunk, chunk>>20)
			if resets != 2 {
				t.Fatalf("%d resets, want 2", resets)
			}
			if name == "embedded" && resent > int64(resets)*chunk {
				t.Fatalf("re-sent %d bytes after %d resets, want at most one chunk (%d) each", resent, resets, chunk)
			}
		})
	}
}

func manifestSize(t testing.TB, img v1.Image) int64 {
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(raw))
}
