package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
)

// MaxManifestBytes bounds a manifest PUT, as distribution registries do.
const MaxManifestBytes = 4 << 20

// ServeOption configures Serve and NewHandler.
type ServeOption func(*serveOptions)

type serveOptions struct {
	requests io.Writer
	onListen func(net.Addr)
}

// WithRequestLog logs every request to w (one line each).
func WithRequestLog(w io.Writer) ServeOption { return func(o *serveOptions) { o.requests = w } }

// OnListen is called with the bound address before Serve accepts
// connections (useful with port 0).
func OnListen(f func(net.Addr)) ServeOption { return func(o *serveOptions) { o.onListen = f } }

// Serve serves the OCI distribution API on addr from root until ctx ends,
// then shuts down gracefully. Blobs live under root/blobs and manifests
// under root/manifests, so both survive a restart.
func Serve(ctx context.Context, addr, root string, opts ...ServeOption) error {
	o := &serveOptions{}
	for _, opt := range opts {
		opt(o)
	}
	h, err := NewHandler(root, opts...)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("registry serve: %w", err)
	}
	if o.onListen != nil {
		o.onListen(ln.Addr())
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	fresh := &freshConns{conns: map[net.Conn]bool{}}
	srv.ConnState = fresh.track
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("registry serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	fresh.closeAll()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 25*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("registry serve %s: shutdown: %w", ln.Addr(), err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("registry serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// freshConns closes, at shutdown, connections that have not sent a request:
// HTTP clients open spare ones, and Shutdown would wait seconds for each
// before calling it idle.
type freshConns struct {
	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]bool
}

func (f *freshConns) track(c net.Conn, state http.ConnState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case state == http.StateNew && f.closing:
		c.Close()
	case state == http.StateNew:
		f.conns[c] = true
	default:
		delete(f.conns, c)
	}
}

func (f *freshConns) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing = true
	for c := range f.conns {
		c.Close()
	}
	clear(f.conns)
}

// NewHandler returns go-containerregistry's registry with blobs on disk
// under root/blobs (uploads streamed there, never held in memory) and
// manifests persisted under root/manifests: every
// manifest PUT it accepts is written (atomically) before the client hears
// 201, every DELETE removes the file, and the files are replayed into the
// in-memory manifest store on start.
func NewHandler(root string, opts ...ServeOption) (http.Handler, error) {
	o := &serveOptions{requests: io.Discard}
	for _, opt := range opts {
		opt(o)
	}
	blobs := filepath.Join(root, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, fmt.Errorf("registry root %s: %w", root, err)
	}
	logger := log.New(o.requests, "", log.LstdFlags)
	up, err := newUploads(root, logger)
	if err != nil {
		return nil, fmt.Errorf("registry root %s: %w", root, err)
	}
	s := &store{
		dir: filepath.Join(root, "manifests"),
		inner: ggcr.New(
			ggcr.WithBlobHandler(ggcr.NewDiskBlobHandler(blobs)),
			ggcr.Logger(logger),
		),
		uploads: up,
	}
	if err := s.replay(); err != nil {
		return nil, fmt.Errorf("registry root %s: %w", root, err)
	}
	return s, nil
}

// store persists the manifests of the in-memory registry it wraps, at
// dir/<repo>/_manifests/<tag or sha256:hex>: the content type on the first
// line, then the manifest bytes. "_manifests" cannot be a repository path
// component, so repositories nest without clashing with tags.
type store struct {
	dir     string
	inner   http.Handler
	uploads *uploads // blob uploads stream to disk; the rest goes to inner
	// mu orders manifest writes so that the files end as memory does.
	mu sync.Mutex
}

var (
	repoComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	digestRE        = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// manifestTarget splits /v2/<repo>/manifests/<target>.
func manifestTarget(path string) (repo, target string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+len("/manifests/"):], true
}

func validRepo(repo string) bool {
	for c := range strings.SplitSeq(repo, "/") {
		if !repoComponentRE.MatchString(c) {
			return false
		}
	}
	return len(repo) <= 255
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if repo, id, ok := uploadPath(r.URL.Path); ok {
		s.uploads.ServeHTTP(w, r, repo, id)
		return
	}
	repo, target, ok := manifestTarget(r.URL.Path)
	if !ok || (r.Method != http.MethodPut && r.Method != http.MethodDelete) {
		s.inner.ServeHTTP(w, r)
		return
	}
	// The target becomes a file name: check both before going near the disk.
	if !validRepo(repo) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("invalid repository name %q", repo))
		return
	}
	if !oci.ValidTag(target) && !digestRE.MatchString(target) {
		writeError(w, http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf("invalid tag or digest %q", target))
		return
	}
	var body []byte
	if r.Method == http.MethodPut {
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxManifestBytes+1))
		if err != nil {
			writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
			return
		}
		if len(b) > MaxManifestBytes {
			writeError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", fmt.Sprintf("manifest over %d bytes", MaxManifestBytes))
			return
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	rec := &recorder{header: http.Header{}}
	s.inner.ServeHTTP(rec, r)
	var err error
	switch {
	case r.Method == http.MethodPut && rec.status == http.StatusCreated:
		err = s.write(repo, target, r.Header.Get("Content-Type"), body)
		if err == nil && !digestRE.MatchString(target) {
			// Keep the digest entry too, for a tag that moves later.
			err = s.write(repo, rec.header.Get("Docker-Content-Digest"), r.Header.Get("Content-Type"), body)
		}
	case r.Method == http.MethodDelete && rec.status == http.StatusAccepted:
		err = os.Remove(s.path(repo, target))
		if errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "persist manifest: "+err.Error())
		return
	}
	maps.Copy(w.Header(), rec.header)
	w.WriteHeader(rec.status)
	w.Write(rec.body.Bytes())
}

func (s *store) path(repo, target string) string {
	return filepath.Join(s.dir, filepath.FromSlash(repo), "_manifests", target)
}

func (s *store) write(repo, target, contentType string, body []byte) error {
	if !digestRE.MatchString(target) && !oci.ValidTag(target) {
		return fmt.Errorf("bad manifest target %q", target)
	}
	p := s.path(repo, target)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	w := bufio.NewWriter(f)
	w.WriteString(strings.ReplaceAll(contentType, "\n", "") + "\n")
	w.Write(body)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

type saved struct {
	repo, target, contentType string
	body                      []byte
}

// replay PUTs every saved manifest into the fresh in-memory store: images
// first, then indexes until none is left, since an index PUT needs its
// children present.
func (s *store) replay() error {
	var all []saved
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == s.dir {
			return fs.SkipAll
		}
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return err
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		repo, target, ok := strings.Cut(filepath.ToSlash(rel), "/_manifests/")
		if !ok || strings.Contains(target, "/") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ct, body, ok := bytes.Cut(raw, []byte("\n"))
		if !ok {
			return fmt.Errorf("manifest file %s: no content type line", p)
		}
		all = append(all, saved{repo: repo, target: target, contentType: string(ct), body: body})
		return nil
	})
	if err != nil {
		return fmt.Errorf("read manifests: %w", err)
	}
	// Images before indexes.
	slices.SortStableFunc(all, func(a, b saved) int {
		return boolCmp(types.MediaType(a.contentType).IsIndex(), types.MediaType(b.contentType).IsIndex())
	})
	for len(all) > 0 {
		var left []saved
		var last error
		for _, m := range all {
			if err := s.put(m); err != nil {
				left, last = append(left, m), err
			}
		}
		if len(left) == len(all) {
			return fmt.Errorf("replay manifests: %d cannot be restored: %w", len(left), last)
		}
		all = left
	}
	return nil
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}

func (s *store) put(m saved) error {
	req, err := http.NewRequest(http.MethodPut, "/v2/"+m.repo+"/manifests/"+m.target, bytes.NewReader(m.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", m.contentType)
	rec := &recorder{header: http.Header{}}
	s.inner.ServeHTTP(rec, req)
	if rec.status != http.StatusCreated {
		return fmt.Errorf("manifest %s:%s: status %d: %s", m.repo, m.target, rec.status, rec.body.String())
	}
	return nil
}

// recorder buffers a (small) manifest response until it is on disk.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

// writeError answers in the distribution API's error format.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	type diag struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Errors []diag `json:"errors"`
	}{[]diag{{code, msg}}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
