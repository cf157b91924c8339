package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// uploads receives blob uploads (POST, PATCH, PUT under
// /v2/<repo>/blobs/uploads/) straight into files under dir, hashing as the
// bytes arrive, and renames each finished blob to blobs/sha256/<hex>, where
// go-containerregistry's disk blob handler serves it. That handler's own
// uploads gather every blob in memory before writing it, so a 1 GiB weights
// layer would cost the server 1 GiB (and more while the buffer grows).
type uploads struct {
	dir   string // in-progress uploads, emptied on start
	blobs string // root/blobs/sha256
	log   *log.Logger

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one upload: the bytes so far in file, and their hash.
type session struct {
	mu   sync.Mutex // one request at a time per upload
	file string
	hash hash.Hash
	size int64
	done bool
}

func newUploads(root string, logger *log.Logger) (*uploads, error) {
	u := &uploads{
		log:      logger,
		dir:      filepath.Join(root, "uploads"),
		blobs:    filepath.Join(root, "blobs", "sha256"),
		sessions: map[string]*session{},
	}
	// Sessions live in memory: files left by an earlier process are orphans.
	if err := os.RemoveAll(u.dir); err != nil {
		return nil, err
	}
	for _, d := range []string{u.dir, u.blobs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// uploadPath splits /v2/<repo>/blobs/uploads/[<id>].
func uploadPath(path string) (repo, id string, ok bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/blobs/uploads")
	if i <= 0 {
		return "", "", false
	}
	id, ok = strings.CutPrefix(rest[i+len("/blobs/uploads"):], "/")
	if !ok && rest[i+len("/blobs/uploads"):] != "" {
		return "", "", false
	}
	return rest[:i], id, true
}

func (u *uploads) ServeHTTP(w http.ResponseWriter, r *http.Request, repo, id string) {
	defer r.Body.Close()
	u.log.Printf("%s %s", r.Method, r.URL)
	if !validRepo(repo) {
		writeError(w, http.StatusBadRequest, "NAME_INVALID", fmt.Sprintf("invalid repository name %q", repo))
		return
	}
	switch {
	case r.Method == http.MethodPost && id == "":
		u.start(w, r, repo)
	case id == "":
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" needs an upload id")
	case r.Method == http.MethodPatch:
		u.patch(w, r, repo, id)
	case r.Method == http.MethodPut:
		u.finish(w, r, repo, id)
	case r.Method == http.MethodGet:
		u.status(w, repo, id)
	case r.Method == http.MethodDelete:
		u.cancel(w, id)
	default:
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" on an upload")
	}
}

// start answers POST: a cross-repository mount of a blob we hold (blobs
// are shared by all repositories), a monolithic upload (?digest=), or a
// new session.
func (u *uploads) start(w http.ResponseWriter, r *http.Request, repo string) {
	if m := r.URL.Query().Get("mount"); m != "" && digestRE.MatchString(m) {
		if fi, err := os.Stat(u.blobPath(m)); err == nil && fi.Mode().IsRegular() {
			created(w, repo, m)
			return
		}
	}
	s, id, err := u.open()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	if d := r.URL.Query().Get("digest"); d != "" {
		u.complete(w, r, repo, id, s, d)
		return
	}
	w.Header().Set("Location", uploadLocation(repo, id))
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Range", "0-0")
	w.WriteHeader(http.StatusAccepted)
}

func (u *uploads) open() (*session, string, error) {
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	f, err := os.Create(filepath.Join(u.dir, id))
	if err != nil {
		return nil, "", err
	}
	f.Close()
	s := &session{file: f.Name(), hash: sha256.New()}
	u.mu.Lock()
	u.sessions[id] = s
	u.mu.Unlock()
	return s, id, nil
}

func (u *uploads) session(id string) *session {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sessions[id]
}

func (u *uploads) drop(id string, s *session) {
	u.mu.Lock()
	delete(u.sessions, id)
	u.mu.Unlock()
	s.done = true
	os.Remove(s.file)
}

// appendBody appends r's body to the session's file, checking that a
// Content-Range, when given, starts where the upload stands and, with a
// Content-Length, spans as many bytes as the body has (as distribution
// does: 416, or 400 SIZE_INVALID). The digest check at the end covers the
// rest: whatever arrived must hash to the digest the client names. A body
// cut short (the client went away) keeps what arrived, so that the client
// resumes from there; a failed write ends the upload.
func (s *session) appendBody(r *http.Request) (status int, code string, err error) {
	if cr := r.Header.Get("Content-Range"); cr != "" {
		var start, end int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(cr, "bytes="), "%d-%d", &start, &end); err != nil || start != s.size || end < start {
			return http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID",
				fmt.Errorf("content range %q does not start at %d, the bytes received", cr, s.size)
		}
		if r.ContentLength >= 0 && r.ContentLength != end-start+1 {
			return http.StatusBadRequest, codeSizeInvalid,
				fmt.Errorf("content range %q is %d bytes, the body %d", cr, end-start+1, r.ContentLength)
		}
	}
	f, err := os.OpenFile(s.file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return http.StatusInternalServerError, "UNKNOWN", err
	}
	body := &readErr{r: r.Body}
	n, err := io.Copy(io.MultiWriter(f, s.hash), body)
	s.size += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case err == nil:
		return 0, "", nil
	case body.err != nil && errors.Is(err, body.err):
		// The client went away mid-body: every byte read is in the file
		// and the hash alike, so the upload goes on from s.size, which a
		// GET of the upload (or the next PATCH's 416) tells the client.
		return http.StatusBadRequest, "BLOB_UPLOAD_INVALID", fmt.Errorf("upload body (the upload stands at %d bytes): %w", s.size, err)
	default:
		// A failed write: the file and the hash may disagree, and the
		// upload cannot continue.
		s.done = true
		return http.StatusInternalServerError, codeUnknown, fmt.Errorf("upload body: %w", err)
	}
}

// readErr remembers the error its reader returned, to tell a client that
// went away from a failed write.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func (u *uploads) patch(w http.ResponseWriter, r *http.Request, repo, id string) {
	s := u.session(id)
	if s == nil {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload "+id)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload "+id+" is over")
		return
	}
	if status, code, err := s.appendBody(r); err != nil {
		if s.done {
			u.drop(id, s)
		}
		writeError(w, status, code, err.Error())
		return
	}
	w.Header().Set("Location", uploadLocation(repo, id))
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Range", fmt.Sprintf("0-%d", max(s.size-1, 0)))
	w.WriteHeader(http.StatusAccepted)
}

func (u *uploads) finish(w http.ResponseWriter, r *http.Request, repo, id string) {
	s := u.session(id)
	if s == nil {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload "+id)
		return
	}
	u.complete(w, r, repo, id, s, r.URL.Query().Get("digest"))
}

// complete appends the last bytes, checks the digest and moves the file to
// its blob path; the session ends either way.
func (u *uploads) complete(w http.ResponseWriter, r *http.Request, repo, id string, s *session, digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload "+id+" is over")
		return
	}
	defer u.drop(id, s)
	if !digestRE.MatchString(digest) {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("digest %q is not sha256:<64 hex>", digest))
		return
	}
	if status, code, err := s.appendBody(r); err != nil {
		writeError(w, status, code, err.Error())
		return
	}
	if got := "sha256:" + hex.EncodeToString(s.hash.Sum(nil)); got != digest {
		writeError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("upload is %s (%d bytes), not %s", got, s.size, digest))
		return
	}
	// A manifest is acknowledged only once it is on disk; so is a blob.
	if err := syncFile(s.file); err != nil {
		writeError(w, http.StatusInternalServerError, codeUnknown, err.Error())
		return
	}
	if err := os.Rename(s.file, u.blobPath(digest)); err != nil {
		writeError(w, http.StatusInternalServerError, codeUnknown, err.Error())
		return
	}
	if err := syncDir(u.blobs); err != nil {
		writeError(w, http.StatusInternalServerError, codeUnknown, err.Error())
		return
	}
	created(w, repo, digest)
}

func (u *uploads) status(w http.ResponseWriter, repo, id string) {
	s := u.session(id)
	if s == nil {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload "+id)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Location", uploadLocation(repo, id))
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Range", fmt.Sprintf("0-%d", max(s.size-1, 0)))
	w.WriteHeader(http.StatusNoContent)
}

func (u *uploads) cancel(w http.ResponseWriter, id string) {
	s := u.session(id)
	if s == nil {
		writeError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "unknown upload "+id)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u.drop(id, s)
	w.WriteHeader(http.StatusNoContent)
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (u *uploads) blobPath(digest string) string {
	return filepath.Join(u.blobs, strings.TrimPrefix(digest, "sha256:"))
}

func uploadLocation(repo, id string) string { return "/v2/" + repo + "/blobs/uploads/" + id }

func created(w http.ResponseWriter, repo, digest string) {
	w.Header().Set("Location", "/v2/"+repo+"/blobs/"+digest)
	w.Header().Set("Docker-Content-Digest", digest)
	w.WriteHeader(http.StatusCreated)
}
