package registry_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/registry"
)

// putManifest PUTs m at repo:ref with the headers given (name, value…).
func putManifest(t *testing.T, base, repo, ref string, m []byte, header ...string) (int, http.Header, string) {
	t.Helper()
	return call(t, "PUT", base+"/v2/"+repo+"/manifests/"+ref, m, append([]string{"Content-Type", string(types.OCIManifestSchema1)}, header...)...)
}

// Conditional tag writes: If-None-Match: * creates a tag only where there
// is none, If-Match: "<digest>" moves it only from that digest; a failed
// precondition is a 412 that changes nothing, on disk or in memory, and
// survives a restart as such.
func TestServeConditionalTags(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, root)
	f := newImageFixture(t, s.base, "team/m")
	a := f.manifest.with(func(m *mfst) { m.Annotations = map[string]string{"v": "a"} }).bytes(t)
	b := f.manifest.with(func(m *mfst) { m.Annotations = map[string]string{"v": "b"} }).bytes(t)
	c := f.manifest.with(func(m *mfst) { m.Annotations = map[string]string{"v": "c"} }).bytes(t)
	da, db, dc := sha(a), sha(b), sha(c)

	steps := []struct {
		name    string
		body    []byte
		header  []string
		want    int
		wantTag string // the digest 1.0.0 names afterwards
	}{
		{"create where there is none", a, []string{"If-None-Match", "*"}, http.StatusCreated, da},
		{"create over another digest", b, []string{"If-None-Match", "*"}, http.StatusPreconditionFailed, da},
		{"create over the same digest", a, []string{"If-None-Match", "*"}, http.StatusPreconditionFailed, da},
		{"move from a digest it does not name", b, []string{"If-Match", `"` + dc + `"`}, http.StatusPreconditionFailed, da},
		{"move from the digest it names", b, []string{"If-Match", `"` + da + `"`}, http.StatusCreated, db},
		{"move with a list that names it", c, []string{"If-Match", `"` + da + `", W/"` + db + `"`}, http.StatusCreated, dc},
		{"move with *", a, []string{"If-Match", "*"}, http.StatusCreated, da},
		{"unconditional", b, nil, http.StatusCreated, db},
	}
	for _, st := range steps {
		code, h, body := putManifest(t, s.base, "team/m", "1.0.0", st.body, st.header...)
		if code != st.want {
			t.Fatalf("%s: %d %s, want %d", st.name, code, body, st.want)
		}
		switch {
		case code == http.StatusPreconditionFailed:
			if h.Get("Docker-Content-Digest") == "" || errCode(body) != "PRECONDITION_FAILED" {
				t.Errorf("%s: 412 without the current digest or code: %v %s", st.name, h, body)
			}
		case st.header != nil && h.Get(registry.ConditionHeader) != "checked":
			t.Errorf("%s: 201 without %s", st.name, registry.ConditionHeader)
		case st.header == nil && h.Get(registry.ConditionHeader) != "":
			t.Errorf("%s: an unconditional PUT says %s", st.name, registry.ConditionHeader)
		}
		if _, _, got := getManifest(t, s.base, "team/m", "1.0.0"); sha([]byte(got)) != st.wantTag {
			t.Fatalf("%s: the tag names %s, want %s", st.name, sha([]byte(got)), st.wantTag)
		}
	}
	// If-Match on a tag that does not exist fails.
	if code, _, body := putManifest(t, s.base, "team/m", "2.0.0", a, "If-Match", `"`+da+`"`); code != http.StatusPreconditionFailed {
		t.Fatalf("If-Match on an absent tag: %d %s, want 412", code, body)
	}
	if code, _, _ := getManifest(t, s.base, "team/m", "2.0.0"); code != http.StatusNotFound {
		t.Fatalf("a refused If-Match created the tag: %d", code)
	}
	before := tree(t, root+"/manifests")
	s.restart()
	sameTree(t, "manifests after restart", before, tree(t, root+"/manifests"))
	if _, _, got := getManifest(t, s.base, "team/m", "1.0.0"); sha([]byte(got)) != db {
		t.Fatalf("after restart the tag names %s, want %s", sha([]byte(got)), db)
	}
	if code, _, body := putManifest(t, s.base, "team/m", "1.0.0", c, "If-None-Match", "*"); code != http.StatusPreconditionFailed {
		t.Fatalf("after restart, If-None-Match over the tag: %d %s, want 412", code, body)
	}
}

// Writers racing to create one tag with If-None-Match: * all at once:
// exactly one 201, every other a 412, every round.
func TestServeConditionalTagRace(t *testing.T) {
	s := startServer(t, t.TempDir())
	f := newImageFixture(t, s.base, "team/m")
	const writers, rounds = 8, 20
	for round := range rounds {
		tag := fmt.Sprintf("1.0.%d", round)
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			codes = map[int]int{}
			won   string
		)
		start := make(chan struct{})
		for i := range writers {
			m := f.manifest.with(func(m *mfst) { m.Annotations = map[string]string{"writer": fmt.Sprint(i)} }).bytes(t)
			wg.Go(func() {
				<-start
				code, _, _ := putManifest(t, s.base, "team/m", tag, m, "If-None-Match", "*")
				mu.Lock()
				defer mu.Unlock()
				codes[code]++
				if code == http.StatusCreated {
					won = sha(m)
				}
			})
		}
		close(start)
		wg.Wait()
		if codes[http.StatusCreated] != 1 || codes[http.StatusPreconditionFailed] != writers-1 {
			t.Fatalf("round %d: answers %v, want one 201 and %d 412", round, codes, writers-1)
		}
		if _, _, got := getManifest(t, s.base, "team/m", tag); sha([]byte(got)) != won {
			t.Fatalf("round %d: the tag names %s, the winner wrote %s", round, sha([]byte(got)), won)
		}
	}
}

// A PATCH whose client goes away mid-body keeps the bytes that arrived: a
// GET of the upload says where it stands, and the upload goes on from
// there to the right digest.
func TestServeUploadResumesAfterBrokenPatch(t *testing.T) {
	s := startServer(t, t.TempDir())
	blob := []byte(strings.Repeat("0123456789", 1000))
	code, h, _ := call(t, "POST", s.base+"/v2/team/m/blobs/uploads/", nil)
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d", code)
	}
	loc := s.base + h.Get("Location")

	// Raw HTTP: a chunk of 6000 bytes of which 2500 are sent.
	conn, err := net.Dial("tcp", s.host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Range: 0-5999\r\nContent-Length: 6000\r\n\r\n", strings.TrimPrefix(loc, s.base), s.host)
	conn.Write(blob[:2500])
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	conn.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("broken PATCH: %d, want 400", resp.StatusCode)
	}

	code, h, _ = call(t, "GET", loc, nil)
	if code != http.StatusNoContent || h.Get("Range") != "0-2499" {
		t.Fatalf("upload status: %d, Range %q, want 204 0-2499", code, h.Get("Range"))
	}
	if code, _, body := call(t, "PATCH", loc, blob[2500:], "Content-Range", fmt.Sprintf("2500-%d", len(blob)-1)); code != http.StatusAccepted {
		t.Fatalf("resumed PATCH: %d %s", code, body)
	}
	if code, _, body := call(t, "PUT", loc+"?digest="+sha(blob), nil); code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, _, body := call(t, "GET", s.base+"/v2/team/m/blobs/"+sha(blob), nil); code != http.StatusOK || body != string(blob) {
		t.Fatalf("GET blob: %d, %d bytes", code, len(body))
	}
}
