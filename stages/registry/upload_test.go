package registry_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/registry"
)

// call sends one request to the embedded registry and returns the status,
// the headers and the body.
func call(t *testing.T, method, url string, body []byte, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// The upload protocol of the distribution spec, against Serve: sessions
// with chunks and Content-Range, monolithic POSTs, mounts, cancels, and
// digest checks that keep a wrong blob out.
func TestServeUploads(t *testing.T) {
	root := t.TempDir()
	host, _ := serve(t, root)
	base := "http://" + host
	blob := []byte(strings.Repeat("weights ", 1000))
	digest := sha(blob)

	// A session in two chunks; a chunk that does not start where the upload
	// stands is refused and changes nothing.
	code, h, body := call(t, "POST", base+"/v2/team/m/blobs/uploads/", nil)
	if code != http.StatusAccepted || h.Get("Location") == "" {
		t.Fatalf("POST: %d %q, want 202 with a Location", code, body)
	}
	loc := base + h.Get("Location")
	if code, h, body = call(t, "PATCH", loc, blob[:3000], "Content-Range", "0-2999"); code != http.StatusAccepted || h.Get("Range") != "0-2999" {
		t.Fatalf("PATCH 1: %d, Range %q, %q", code, h.Get("Range"), body)
	}
	if code, _, body = call(t, "PATCH", loc, blob[3000:], "Content-Range", "2000-7999"); code != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("PATCH at the wrong offset: %d %q, want 416", code, body)
	}
	if code, h, body = call(t, "PATCH", loc, blob[3000:6000], "Content-Range", "3000-5999"); code != http.StatusAccepted || h.Get("Range") != "0-5999" {
		t.Fatalf("PATCH 2: %d, Range %q, %q", code, h.Get("Range"), body)
	}
	if code, h, body = call(t, "PUT", loc+"?digest="+digest, blob[6000:]); code != http.StatusCreated || h.Get("Docker-Content-Digest") != digest {
		t.Fatalf("PUT: %d %q, want 201 with the digest", code, body)
	}
	if code, _, body = call(t, "GET", base+"/v2/team/m/blobs/"+digest, nil); code != http.StatusOK || body != string(blob) {
		t.Fatalf("GET blob: %d, %d bytes, want the %d uploaded", code, len(body), len(blob))
	}
	if code, _, _ = call(t, "PATCH", loc, blob); code != http.StatusNotFound {
		t.Fatalf("PATCH after PUT: %d, want 404", code)
	}

	// A mount of a blob the registry holds needs no upload.
	if code, h, _ = call(t, "POST", base+"/v2/other/m/blobs/uploads/?mount="+digest+"&from=team/m", nil); code != http.StatusCreated || h.Get("Docker-Content-Digest") != digest {
		t.Fatalf("mount: %d, want 201", code)
	}

	other := []byte("a config")
	tests := []struct {
		name, digest string
		monolithic   bool
		want         int
	}{
		{"monolithic", sha(other), true, http.StatusCreated},
		{"monolithic, wrong digest", sha([]byte("else")), true, http.StatusBadRequest},
		{"session, wrong digest", sha([]byte("else")), false, http.StatusBadRequest},
		{"session, malformed digest", "sha256:xyz", false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := base + "/v2/team/m/blobs/uploads/?digest=" + tt.digest
			method := "POST"
			if !tt.monolithic {
				_, h, _ := call(t, "POST", base+"/v2/team/m/blobs/uploads/", nil)
				url, method = base+h.Get("Location")+"?digest="+tt.digest, "PUT"
			}
			if code, _, body := call(t, method, url, other); code != tt.want {
				t.Fatalf("%s: %d %q, want %d", method, code, body, tt.want)
			}
			code, _, _ := call(t, "HEAD", base+"/v2/team/m/blobs/"+tt.digest, nil)
			if stored := code == http.StatusOK; stored != (tt.want == http.StatusCreated) {
				t.Fatalf("HEAD after the upload: %d", code)
			}
		})
	}

	// A cancelled session is gone.
	_, h, _ = call(t, "POST", base+"/v2/team/m/blobs/uploads/", nil)
	loc = base + h.Get("Location")
	if code, _, _ = call(t, "DELETE", loc, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d, want 204", code)
	}
	if code, _, _ = call(t, "PATCH", loc, blob); code != http.StatusNotFound {
		t.Fatalf("PATCH after DELETE: %d, want 404", code)
	}
	// Unknown sessions and bad names are refused.
	if code, _, _ = call(t, "PATCH", base+"/v2/team/m/blobs/uploads/nope", blob); code != http.StatusNotFound {
		t.Fatalf("PATCH to an unknown upload: %d, want 404", code)
	}
	if code, _, _ = call(t, "POST", base+"/v2/Team/m/blobs/uploads/", nil); code != http.StatusBadRequest {
		t.Fatalf("POST with a bad name: %d, want 400", code)
	}
	// Finished and failed uploads leave no files behind.
	left, err := os.ReadDir(filepath.Join(root, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("%d upload files left after every session ended", len(left))
	}
}

// A large layer streams into the embedded registry: the bytes allocated
// while pushing a 64 MiB weights layer (client and server are both in this
// process) stay far below its size. go-containerregistry's own upload
// handler gathers each blob in a growing buffer, which costs more than
// the blob.
func TestServeStreamsUploads(t *testing.T) {
	const size = 64 << 20
	ctx := context.Background()
	host, _ := serve(t, t.TempDir())
	model := t.TempDir()
	f, err := os.Create(filepath.Join(model, "weights.bin"))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for range size / len(chunk) {
		for i := range chunk {
			chunk[i] = byte(r.Uint32())
		}
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := image.Run(ctx, image.Input{
		ModelDir: model, Name: "big", Version: "1.0.0", Layout: filepath.Join(t.TempDir(), "oci"),
		Runtime: func(context.Context, v1.Platform) (string, error) { return bin, nil },
	})
	if err != nil {
		t.Fatal(err)
	}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	p, err := registry.Copy(ctx, out.Ref, host+"/models/big", fast)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if p.Digest != out.Digest {
		t.Fatalf("pushed %s, built %s", p.Digest, out.Digest)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Errorf("pushing a %d MiB layer allocated %d MiB: the upload does not stream", size>>20, alloc>>20)
	} else {
		t.Logf("pushing a %d MiB layer allocated %.1f MiB", size>>20, float64(alloc)/(1<<20))
	}
	pulled, err := registry.Pull(ctx, p.Ref, fast)
	if err != nil {
		t.Fatal(err)
	}
	checkBlobs(t, pulled)
}

// Blob uploads must hash to the digest the client names, whichever way
// they arrive (monolithic POST, POST then PUT, chunks, a mount), and must
// be the size they say: a refusal has the status and code distribution
// gives, stores nothing (root/blobs unchanged, the digest not served,
// before and after a restart) and leaves no upload file behind.
func TestServeUploadChecks(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, root)
	blob := []byte(strings.Repeat("weights ", 500))
	wrong := sha([]byte("something else"))
	start := func(t *testing.T) string {
		t.Helper()
		code, h, body := call(t, "POST", s.base+"/v2/team/m/blobs/uploads/", nil)
		if code != http.StatusAccepted {
			t.Fatalf("POST: %d %s", code, body)
		}
		return s.base + h.Get("Location")
	}
	tests := []struct {
		name   string
		upload func(t *testing.T) (int, string) // the last response
		status int
		code   string
	}{
		{"monolithic POST, wrong digest", func(t *testing.T) (int, string) {
			code, _, body := call(t, "POST", s.base+"/v2/team/m/blobs/uploads/?digest="+wrong, blob)
			return code, body
		}, 400, "DIGEST_INVALID"},
		{"monolithic POST, malformed digest", func(t *testing.T) (int, string) {
			code, _, body := call(t, "POST", s.base+"/v2/team/m/blobs/uploads/?digest=sha256:"+strings.Repeat("A", 64), blob)
			return code, body
		}, 400, "DIGEST_INVALID"},
		{"POST then PUT, wrong digest", func(t *testing.T) (int, string) {
			code, _, body := call(t, "PUT", start(t)+"?digest="+wrong, blob)
			return code, body
		}, 400, "DIGEST_INVALID"},
		{"chunks then PUT, wrong digest", func(t *testing.T) (int, string) {
			loc := start(t)
			if code, _, body := call(t, "PATCH", loc, blob[:100], "Content-Range", "0-99"); code != http.StatusAccepted {
				t.Fatalf("PATCH: %d %s", code, body)
			}
			code, _, body := call(t, "PUT", loc+"?digest="+wrong, blob[100:])
			return code, body
		}, 400, "DIGEST_INVALID"},
		{"chunks then PUT of the right digest, a byte short", func(t *testing.T) (int, string) {
			loc := start(t)
			call(t, "PATCH", loc, blob[:100], "Content-Range", "0-99")
			code, _, body := call(t, "PUT", loc+"?digest="+sha(blob), blob[100:len(blob)-1])
			return code, body
		}, 400, "DIGEST_INVALID"},
		{"Content-Range longer than the body", func(t *testing.T) (int, string) {
			loc := start(t)
			code, _, body := call(t, "PATCH", loc, blob[:100], "Content-Range", "0-199")
			// The refused chunk was not kept: the upload is still empty.
			if c, h, _ := call(t, "GET", loc, nil); c != http.StatusNoContent || h.Get("Range") != "0-0" {
				t.Errorf("upload after the refused chunk: %d, Range %q, want 204 0-0", c, h.Get("Range"))
			}
			call(t, "DELETE", loc, nil)
			return code, body
		}, 400, "SIZE_INVALID"},
		{"body shorter than its Content-Length", func(t *testing.T) (int, string) {
			// Raw HTTP: the client promises more than it sends, then stops.
			loc := start(t)
			conn, err := net.Dial("tcp", s.host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			path := strings.TrimPrefix(loc, s.base)
			fmt.Fprintf(conn, "PUT %s?digest=%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", path, sha(blob), s.host, len(blob))
			conn.Write(blob[:len(blob)/2])
			conn.(*net.TCPConn).CloseWrite()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}, 400, "BLOB_UPLOAD_INVALID"},
	}
	blobs := func() map[string]string { return tree(t, filepath.Join(root, "blobs")) }
	before := blobs()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := tc.upload(t)
			if code != tc.status || errCode(body) != tc.code {
				t.Fatalf("%d %s, want %d %s", code, body, tc.status, tc.code)
			}
			for _, d := range []string{sha(blob), wrong} {
				if code, _, _ := call(t, "HEAD", s.base+"/v2/team/m/blobs/"+d, nil); code != http.StatusNotFound {
					t.Errorf("HEAD %s after the refusal: %d, want 404", d, code)
				}
			}
			sameTree(t, "root/blobs", before, blobs())
			if left, err := os.ReadDir(filepath.Join(root, "uploads")); err != nil || len(left) != 0 {
				t.Errorf("upload files left: %d (%v)", len(left), err)
			}
		})
	}

	// A mount of a blob the registry does not hold starts an upload; it
	// does not pretend the blob is there.
	code, h, _ := call(t, "POST", s.base+"/v2/other/m/blobs/uploads/?mount="+sha(blob)+"&from=team/m", nil)
	if code != http.StatusAccepted || h.Get("Location") == "" {
		t.Fatalf("mount of an absent blob: %d, want 202 and an upload", code)
	}
	call(t, "DELETE", s.base+h.Get("Location"), nil)

	s.restart()
	if code, _, _ := call(t, "HEAD", s.base+"/v2/team/m/blobs/"+sha(blob), nil); code != http.StatusNotFound {
		t.Errorf("after restart, HEAD: %d, want 404", code)
	}
	sameTree(t, "root/blobs after restart", before, blobs())
	// The right upload still works.
	if code, _, body := call(t, "POST", s.base+"/v2/team/m/blobs/uploads/?digest="+sha(blob), blob); code != http.StatusCreated {
		t.Fatalf("upload: %d %s", code, body)
	}
}
