package registry

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
)

// MaxManifestBytes bounds a manifest PUT, as distribution registries do.
const MaxManifestBytes = 4 << 20

var (
	// ErrPublicAddress: Serve was asked to listen on an address other
	// machines can reach (any host but 127.0.0.0/8, ::1 and localhost; an
	// empty host or 0.0.0.0 is every interface) without authentication
	// (WithHtpasswd). WithInsecurePublic(true) allows it.
	ErrPublicAddress = errors.New("refusing to serve without authentication on a non-loopback address")
	// ErrTLSConfig: WithTLS needs both a certificate and a key file.
	ErrTLSConfig = errors.New("TLS needs both a certificate file and a key file")
)

// ServeOption configures Serve and NewHandler.
type ServeOption func(*serveOptions)

type serveOptions struct {
	requests       io.Writer
	onListen       func(net.Addr)
	allowDelete    bool
	htpasswd       string
	tlsCert        string
	tlsKey         string
	insecurePublic bool
	// writeManifest writes b to f; tests replace it to fail like a full disk.
	writeManifest func(f *os.File, b []byte) (int, error)
}

func makeServeOptions(opts []ServeOption) *serveOptions {
	o := &serveOptions{requests: io.Discard, writeManifest: (*os.File).Write}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithRequestLog logs every request to w (one line each).
func WithRequestLog(w io.Writer) ServeOption { return func(o *serveOptions) { o.requests = w } }

// OnListen is called with the bound address before Serve accepts
// connections (useful with port 0).
func OnListen(f func(net.Addr)) ServeOption { return func(o *serveOptions) { o.onListen = f } }

// WithDelete enables DELETE of manifests and blobs. Without it they are
// refused with 405 UNSUPPORTED, as distribution does when deletes are not
// enabled. (Cancelling an upload is always allowed.)
func WithDelete(allow bool) ServeOption { return func(o *serveOptions) { o.allowDelete = allow } }

// WithHtpasswd requires HTTP basic authentication, /v2/ included, against
// the bcrypt entries of an htpasswd file (user:$2y$…, `htpasswd -B`). A
// file with any other entry is refused with ErrHtpasswd.
func WithHtpasswd(path string) ServeOption { return func(o *serveOptions) { o.htpasswd = path } }

// WithTLS makes Serve speak HTTPS with the PEM certificate (chain) and key
// in certFile and keyFile; both are needed (ErrTLSConfig otherwise).
func WithTLS(certFile, keyFile string) ServeOption {
	return func(o *serveOptions) { o.tlsCert, o.tlsKey = certFile, keyFile }
}

// WithInsecurePublic lets Serve listen on a non-loopback address without
// WithHtpasswd: anyone who reaches it can push.
func WithInsecurePublic(allow bool) ServeOption {
	return func(o *serveOptions) { o.insecurePublic = allow }
}

// PublicAddress reports whether listening on addr (HOST:PORT) is reachable
// from other machines: true unless HOST is localhost or a loopback IP
// (127.0.0.0/8, ::1). An empty host (":5000") and 0.0.0.0 or :: listen on
// every interface and are public; so is an address that does not parse.
func PublicAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// Serve serves the OCI distribution API on addr from root until ctx ends,
// then shuts down gracefully. Blobs live under root/blobs and manifests
// under root/manifests, so both survive a restart. Every check of the
// options (ErrTLSConfig, ErrPublicAddress, ErrHtpasswd, the TLS files) is
// made before root is touched.
func Serve(ctx context.Context, addr, root string, opts ...ServeOption) error {
	o := makeServeOptions(opts)
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return fmt.Errorf("registry serve: %w", ErrTLSConfig)
	}
	if PublicAddress(addr) && o.htpasswd == "" && !o.insecurePublic {
		return fmt.Errorf("registry serve %s: %w (require credentials with an htpasswd file, or allow it explicitly)", addr, ErrPublicAddress)
	}
	var tlsConfig *tls.Config
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return fmt.Errorf("registry serve: TLS certificate %s, key %s: %w", o.tlsCert, o.tlsKey, err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, TLSConfig: tlsConfig}
	fresh := &freshConns{conns: map[net.Conn]bool{}}
	srv.ConnState = fresh.track
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
			return
		}
		errc <- srv.Serve(ln)
	}()
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
// under root/blobs (uploads streamed there, never held in memory, and
// checked against their digest) and manifests persisted under
// root/manifests. A manifest PUT is validated as distribution does
// (validateManifest) and written durably before the in-memory store hears
// of it and the client hears 201; the files are replayed into the
// in-memory store on start. Deletes are refused unless WithDelete(true);
// WithHtpasswd requires basic authentication. Any refusal changes nothing,
// on disk or in memory.
func NewHandler(root string, opts ...ServeOption) (http.Handler, error) {
	o := makeServeOptions(opts)
	var users map[string][]byte
	if o.htpasswd != "" {
		var err error
		if users, err = loadHtpasswd(o.htpasswd); err != nil {
			return nil, err
		}
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
		dir:   filepath.Join(root, "manifests"),
		blobs: filepath.Join(blobs, "sha256"),
		inner: ggcr.New(
			ggcr.WithBlobHandler(ggcr.NewDiskBlobHandler(blobs)),
			ggcr.Logger(logger),
		),
		uploads:     up,
		log:         logger,
		allowDelete: o.allowDelete,
		writeFile:   o.writeManifest,
	}
	if err := s.replay(); err != nil {
		return nil, fmt.Errorf("registry root %s: %w", root, err)
	}
	if users != nil {
		return &basicAuth{users: users, next: s, good: map[[32]byte]bool{}}, nil
	}
	return s, nil
}

// store persists the manifests of the in-memory registry it wraps, at
// dir/<repo>/_manifests/<tag or sha256:hex>: the content type on the first
// line, then the manifest bytes. "_manifests" cannot be a repository path
// component, so repositories nest without clashing with tags.
type store struct {
	dir     string
	blobs   string // root/blobs/sha256, where the disk blob handler keeps them
	inner   http.Handler
	uploads *uploads // blob uploads stream to disk; the rest goes to inner
	log     *log.Logger

	allowDelete bool
	writeFile   func(f *os.File, b []byte) (int, error)

	// mu orders manifest writes (and their checks) so that the files end
	// as memory does.
	mu sync.Mutex
}

var (
	repoComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	digestRE        = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// manifestTarget splits /v2/<repo>/manifests/<target>.
func manifestTarget(path string) (repo, target string, ok bool) {
	return splitV2(path, "/manifests/")
}

// blobTarget splits /v2/<repo>/blobs/<digest>.
func blobTarget(path string) (repo, digest string, ok bool) {
	return splitV2(path, "/blobs/")
}

func splitV2(path, sep string) (repo, target string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, sep)
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+len(sep):], true
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
	if r.Method == http.MethodDelete && !s.allowDelete {
		s.log.Printf("%s %s refused: deletes are disabled", r.Method, r.URL)
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported,
			"deletes are disabled on this registry (serve with --allow-delete)")
		return
	}
	if repo, digest, ok := blobTarget(r.URL.Path); ok && r.Method == http.MethodDelete {
		switch {
		case !validRepo(repo):
			writeError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("invalid repository name %q", repo))
		case !digestRE.MatchString(digest):
			writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("invalid digest %q", digest))
		case !fileExists(filepath.Join(s.blobs, strings.TrimPrefix(digest, "sha256:"))):
			writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry: "+digest)
		default:
			s.inner.ServeHTTP(w, r)
		}
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
	if r.Method == http.MethodDelete {
		s.deleteManifest(w, r, repo, target)
		return
	}
	s.putManifest(w, r, repo, target)
}

// putManifest validates the manifest, writes it durably (its digest entry,
// then its tag), and only then stores it in memory and answers 201.
func (s *store) putManifest(w http.ResponseWriter, r *http.Request, repo, target string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxManifestBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, err.Error())
		return
	}
	if len(body) > MaxManifestBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("manifest over %d bytes", MaxManifestBytes))
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// The precondition is checked, and the manifest written, under s.mu:
	// of two conditional writers of one tag, exactly one succeeds.
	conditional := r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Match") != ""
	if conditional {
		current, _ := s.manifestDigest(repo, target)
		if msg, ok := preconditions(r.Header, current); !ok {
			s.log.Printf("%s %s refused: %s", r.Method, r.URL, msg)
			if current != "" {
				w.Header().Set("Docker-Content-Digest", current)
			}
			writeError(w, http.StatusPreconditionFailed, codePreconditionFailed, msg)
			return
		}
	}
	m, rerr := validateManifest(target, r.Header.Get("Content-Type"), body, s.holder(repo))
	if rerr != nil {
		s.log.Printf("%s %s refused: %s %s", r.Method, r.URL, rerr.code, rerr.msg)
		rerr.write(w)
		return
	}
	content := append([]byte(strings.ReplaceAll(string(m.mediaType), "\n", "")+"\n"), m.body...)
	targets := []string{m.digest}
	if target != m.digest {
		targets = append(targets, target)
	}
	var undo []func()
	rollback := func() {
		for _, u := range slices.Backward(undo) {
			u()
		}
	}
	for _, t := range targets {
		u, err := s.replace(s.path(repo, t), content)
		if err != nil {
			rollback()
			s.storageError(w, r, err)
			return
		}
		undo = append(undo, u)
	}

	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(m.body))
	req.ContentLength = int64(len(m.body))
	req.Header.Set("Content-Type", string(m.mediaType))
	rec := &recorder{header: http.Header{}}
	s.inner.ServeHTTP(rec, req)
	if rec.status != http.StatusCreated {
		// Validation ran first, so this should not happen; keep the disk as
		// memory is.
		rollback()
	} else if conditional {
		rec.header.Set(ConditionHeader, "checked")
	}
	rec.send(w)
}

// ConditionHeader is set on the answer to a manifest PUT whose
// preconditions (If-None-Match, If-Match) the registry checked: a client
// that sees it need not re-read the tag to know that it won.
const ConditionHeader = "Modelci-Tag-Condition"

// codePreconditionFailed is the error code of a 412 (the distribution API
// has none of its own).
const codePreconditionFailed = "PRECONDITION_FAILED"

// preconditions evaluates If-None-Match and If-Match (RFC 9110, 13.1)
// against the digest the target names now ("" when none): If-None-Match:
// * fails when the target exists (whatever its digest, ours included: the
// client reads the tag to tell a no-op from a conflict); If-Match fails
// unless the target names one of the listed digests (quoted, as ETags), or
// for *, unless it exists.
func preconditions(h http.Header, current string) (string, bool) {
	if v := h.Get("If-Match"); v != "" {
		if !etagMatch(v, current) {
			return fmt.Sprintf("If-Match %s: the target names %s", v, cmp.Or(current, "nothing")), false
		}
	}
	if v := h.Get("If-None-Match"); v != "" && etagMatch(v, current) {
		return fmt.Sprintf("If-None-Match %s: the target names %s", v, current), false
	}
	return "", true
}

// etagMatch reports whether list (an If-Match or If-None-Match value)
// matches current: "*" any existing target, else one of the
// comma-separated entity tags, compared weakly.
func etagMatch(list, current string) bool {
	if current == "" {
		return false
	}
	for e := range strings.SplitSeq(list, ",") {
		e = strings.TrimSpace(e)
		if e == "*" {
			return true
		}
		e = strings.TrimPrefix(e, "W/")
		if strings.Trim(e, `"`) == current {
			return true
		}
	}
	return false
}

// manifestDigest returns the digest of the manifest the in-memory store
// holds at repo and ref (a tag or a digest).
func (s *store) manifestDigest(repo, ref string) (string, bool) {
	req, err := http.NewRequest(http.MethodHead, "/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		return "", false
	}
	rec := &recorder{header: http.Header{}}
	s.inner.ServeHTTP(rec, req)
	d := rec.header.Get("Docker-Content-Digest")
	return d, rec.status == http.StatusOK && d != ""
}

// deleteManifest removes the file, then the in-memory entry (WithDelete).
func (s *store) deleteManifest(w http.ResponseWriter, r *http.Request, repo, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var undo func()
	if _, ok := s.headManifest(repo, target); ok {
		var err error
		if undo, err = s.replace(s.path(repo, target), nil); err != nil {
			s.storageError(w, r, err)
			return
		}
	}
	rec := &recorder{header: http.Header{}}
	s.inner.ServeHTTP(rec, r)
	if rec.status != http.StatusAccepted && undo != nil {
		undo()
	}
	rec.send(w)
}

// holder answers from the blob files and the repository's manifests.
func (s *store) holder(repo string) holder {
	return func(kind refKind, digest string) (int64, bool) {
		if kind == manifestRef {
			return s.headManifest(repo, digest)
		}
		fi, err := os.Stat(filepath.Join(s.blobs, strings.TrimPrefix(digest, "sha256:")))
		if err != nil || !fi.Mode().IsRegular() {
			return 0, false
		}
		return fi.Size(), true
	}
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// headManifest returns the size of the manifest the in-memory store holds
// at repo and ref (a tag or a digest).
func (s *store) headManifest(repo, ref string) (int64, bool) {
	req, err := http.NewRequest(http.MethodHead, "/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		return 0, false
	}
	rec := &recorder{header: http.Header{}}
	s.inner.ServeHTTP(rec, req)
	if rec.status != http.StatusOK {
		return 0, false
	}
	n, err := strconv.ParseInt(rec.header.Get("Content-Length"), 10, 64)
	return n, err == nil
}

// storageError answers a failed manifest write: 507 when the disk is full.
func (s *store) storageError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Printf("%s %s failed: %v", r.Method, r.URL, err)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		writeError(w, http.StatusInsufficientStorage, codeUnknown, "manifest not stored: registry storage is full: "+err.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, codeUnknown, "manifest not stored: "+err.Error())
}

func (s *store) path(repo, target string) string {
	return filepath.Join(s.dir, filepath.FromSlash(repo), "_manifests", target)
}

// replace makes p hold content durably (nil content: removes p) and
// returns how to put back what p held before, on a later failure. On error
// p is as it was, and so are its directories.
func (s *store) replace(p string, content []byte) (undo func(), err error) {
	old, err := os.ReadFile(p)
	existed := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if (content == nil && !existed) || (content != nil && existed && bytes.Equal(old, content)) {
		return func() {}, nil
	}
	var created []string // directories made for p, deepest first
	restore := func() error {
		cur, err := os.ReadFile(p)
		switch {
		case existed && err == nil && bytes.Equal(cur, old):
		case !existed && errors.Is(err, fs.ErrNotExist):
		case existed:
			if _, err := s.writeDurably(p, old); err != nil {
				return err
			}
		default:
			if err := removeDurably(p); err != nil {
				return err
			}
		}
		var removed string
		for _, d := range created {
			if os.Remove(d) != nil {
				break
			}
			removed = d
		}
		if removed != "" {
			return syncDir(filepath.Dir(removed))
		}
		return nil
	}
	if content == nil {
		err = removeDurably(p)
	} else {
		created, err = s.writeDurably(p, content)
	}
	if err != nil {
		if rerr := restore(); rerr != nil {
			s.log.Printf("restore %s: %v", p, rerr)
		}
		return nil, err
	}
	return func() {
		if err := restore(); err != nil {
			s.log.Printf("roll back %s: %v", p, err)
		}
	}, nil
}

// writeDurably writes content to p atomically and durably: a temporary
// file in the same directory, written and fsynced, renamed over p, and the
// directory fsynced (and the parents of any directory it had to create).
// It leaves no temporary file; it returns the directories it created,
// deepest first, even on error, for the caller to remove.
func (s *store) writeDurably(p string, content []byte) (created []string, err error) {
	dir := filepath.Dir(p)
	created, err = mkdirAllDurably(dir)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return created, err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	n, err := s.writeFile(f, content)
	if err == nil && n != len(content) {
		err = io.ErrShortWrite
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return created, fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return created, err
	}
	return created, syncDir(dir)
}

func removeDurably(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// mkdirAllDurably creates dir and its missing parents, fsyncing each
// parent so the new entries survive a crash; it returns the directories it
// created, deepest first.
func mkdirAllDurably(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i, d := range slices.Backward(missing) {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			for _, c := range missing[i+1:] {
				os.Remove(c)
			}
			return nil, err
		}
	}
	for _, d := range missing {
		if err := syncDir(filepath.Dir(d)); err != nil {
			for _, c := range missing {
				os.Remove(c)
			}
			return nil, err
		}
	}
	return missing, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
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
		// Earlier versions stored a PUT by digest whatever its body hashed
		// to: such an entry would serve another manifest under the digest.
		if sum := sha256.Sum256(body); digestRE.MatchString(target) && target != "sha256:"+hex.EncodeToString(sum[:]) {
			s.log.Printf("manifest file %s: body has digest sha256:%x, not its name: not served", p, sum)
			return nil
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

// send forwards the recorded response to w.
func (r *recorder) send(w http.ResponseWriter) {
	maps.Copy(w.Header(), r.header)
	w.WriteHeader(cmp.Or(r.status, http.StatusOK))
	w.Write(r.body.Bytes())
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
