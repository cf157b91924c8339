package registry

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// ErrHtpasswd: the htpasswd file is not one the registry can use: a line
// that is not user:hash, a hash that is not bcrypt, a user listed twice, or
// no user at all. The error names the file and the line.
var ErrHtpasswd = errors.New("invalid htpasswd file")

// authRealm is the realm of the Basic challenge.
const authRealm = "modelci"

// loadHtpasswd reads an htpasswd file of bcrypt entries (user:$2y$…, as
// `htpasswd -B` writes and distribution's htpasswd auth reads). Blank lines
// and lines starting with # are skipped. Any other hash scheme (MD5, SHA1,
// crypt, plain text) is refused rather than ignored, so that a user does
// not silently lose access.
func loadHtpasswd(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("htpasswd: %w", err)
	}
	defer f.Close()
	users := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%w: %s:%d: want user:bcrypt-hash", ErrHtpasswd, path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil || !strings.HasPrefix(hash, "$2") {
			return nil, fmt.Errorf("%w: %s:%d: user %q: not a bcrypt hash; only bcrypt entries ($2y$…, htpasswd -B) are accepted",
				ErrHtpasswd, path, n, user)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%w: %s:%d: user %q listed twice", ErrHtpasswd, path, n, user)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("htpasswd %s: %w", path, err)
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%w: %s: no users", ErrHtpasswd, path)
	}
	return users, nil
}

// basicAuth lets through requests with the credentials of a user in the
// htpasswd file, /v2/ included, and answers any other with 401 and a Basic
// challenge, which registry clients (go-containerregistry, cosign, docker)
// answer with the credentials they hold for the host.
type basicAuth struct {
	users map[string][]byte
	next  http.Handler

	// good remembers credentials that passed bcrypt (by their SHA-256), so
	// that a push, a few dozen requests, costs one bcrypt and not one each.
	mu   sync.Mutex
	good map[[32]byte]bool
}

const maxCachedCredentials = 256

func (a *basicAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if user, pass, ok := r.BasicAuth(); ok && a.allowed(user, pass) {
		a.next.ServeHTTP(w, r)
		return
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf("Basic realm=%q", authRealm))
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	writeError(w, http.StatusUnauthorized, codeUnauthorized, "authentication required")
}

func (a *basicAuth) allowed(user, pass string) bool {
	hash, ok := a.users[user]
	if !ok {
		return false
	}
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	a.mu.Lock()
	known := a.good[key]
	a.mu.Unlock()
	if known {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	a.mu.Lock()
	if len(a.good) >= maxCachedCredentials {
		clear(a.good)
	}
	a.good[key] = true
	a.mu.Unlock()
	return true
}
