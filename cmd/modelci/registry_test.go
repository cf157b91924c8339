package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"golang.org/x/crypto/bcrypt"

	"github.com/modelci/modelci/stages/registry"
)

// regRun runs modelci with args in-process and returns stdout and the error.
func regRun(ctx context.Context, stdin string, args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetIn(strings.NewReader(stdin))
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func regCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1
	}
}

// startRegistry runs `modelci registry serve` on a free port and returns
// its address (from the first stderr line) and a stop that returns the
// command's error.
func startRegistry(t *testing.T, root string) (string, func() error) {
	t.Helper()
	addr, before, stop := startRegistryArgs(t, "--addr", "127.0.0.1:0", "--root", root)
	if len(before) != 0 {
		t.Fatalf("log lines before listening: %q", before)
	}
	return addr, stop
}

// startRegistryArgs runs `modelci registry serve` with args and returns
// the address from its "listening" log line, the log lines before it, and
// a stop that returns the command's error.
func startRegistryArgs(t *testing.T, args ...string) (string, []string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cmd := newRootCmd()
	cmd.SetArgs(append([]string{"registry", "serve"}, args...))
	cmd.SetErr(pw)
	errc := make(chan error, 1)
	go func() {
		err := cmd.ExecuteContext(ctx)
		pw.Close()
		errc <- err
	}()
	r := bufio.NewReader(pr)
	var before []string
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			cancel()
			t.Fatalf("registry serve: no listening line: %v (%v); before: %q", err, <-errc, before)
		}
		var msg struct{ Msg, Addr string }
		if err := json.Unmarshal(line, &msg); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if msg.Msg == "listening" && msg.Addr != "" {
			go io.Copy(io.Discard, r)
			stop := func() error { cancel(); return <-errc }
			t.Cleanup(func() { cancel() })
			return msg.Addr, before, stop
		}
		before = append(before, string(line))
	}
}

func TestRegistryServeAndCopy(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	addr, stop := startRegistry(t, root)
	img, err := random.Image(1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	pushed, err := registry.Push(ctx, img, addr+"/src", registry.WithTags("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}

	out, err := regRun(ctx, "", "copy", addr+"/src:1.0.0", addr+"/dst")
	if err != nil {
		t.Fatal(err)
	}
	if want := addr + "/dst@" + pushed.Digest.String() + "\n"; out != want {
		t.Fatalf("stdout = %q, want %q", out, want)
	}
	other, err := random.Image(1000, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Push(ctx, other, addr+"/other", registry.WithTags("1.0.0")); err != nil {
		t.Fatal(err)
	}
	// The version tag is immutable unless --allow-overwrite.
	if _, err := regRun(ctx, "", "copy", addr+"/other:1.0.0", addr+"/dst"); regCode(err) != 1 || !errors.Is(err, registry.ErrTagExists) {
		t.Fatalf("copy over a taken tag: %v (exit %d), want ErrTagExists, exit 1", err, regCode(err))
	}
	if _, err := regRun(ctx, "", "copy", "--allow-overwrite", addr+"/other:1.0.0", addr+"/dst"); err != nil {
		t.Fatal(err)
	}

	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	// Another server on the same root still has it.
	addr2, _ := startRegistry(t, root)
	h, err := registry.Resolve(ctx, addr2+"/dst:1.0.0")
	if err != nil || h != regDigest(t, other) {
		t.Fatalf("after restart dst:1.0.0 = %s, %v; want %s", h, err, regDigest(t, other))
	}
}

func regDigest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// zeroDigest is a well-formed digest no registry holds.
var zeroDigest = "sha256:" + strings.Repeat("0", 64)

func TestRegistryCommandsUsage(t *testing.T) {
	t.Setenv("MODELCI_KEY_PASSWORD", "unused")
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  int
	}{
		{"copy one argument", "", []string{"copy", "127.0.0.1:1/a:1"}, 2},
		{"copy malformed source", "", []string{"copy", "a:1", "127.0.0.1:1/b"}, 2},
		{"copy malformed destination", "", []string{"copy", "127.0.0.1:1/a:1", "B"}, 2},
		{"username without password", "", []string{"copy", "--registry-username", "u", "127.0.0.1:1/a:1", "127.0.0.1:1/b"}, 2},
		{"password without username", "p", []string{"copy", "--registry-password-stdin", "127.0.0.1:1/a:1", "127.0.0.1:1/b"}, 2},
		{"empty password", "", []string{"copy", "--registry-username", "u", "--registry-password-stdin", "127.0.0.1:1/a:1", "127.0.0.1:1/b"}, 2},
		// Every command that reaches a registry takes the same credential flags.
		{"sign half a credential", "", []string{"sign", "--key", "k", "--registry-username", "u", "127.0.0.1:1/a@" + zeroDigest}, 2},
		{"verify half a credential", "", []string{"verify", "--key", "k.pub", "--registry-username", "u", "127.0.0.1:1/a@" + zeroDigest}, 2},
		{"deploy half a credential", "p", []string{"deploy", "--registry-password-stdin", "--insecure-skip-verify", "-n", "m", "--name", "a", "--version", "1", "127.0.0.1:1/a@" + zeroDigest}, 2},
		{"history half a credential", "", []string{"history", "a", "-n", "m", "--registry-username", "u"}, 2},
		{"unreachable", "", []string{"copy", "127.0.0.1:1/a:1", "127.0.0.1:1/b"}, 1},
		{"serve without root", "", []string{"registry", "serve"}, 2},
		{"serve bad address", "", []string{"registry", "serve", "--root", t.TempDir(), "--addr", "256.0.0.1:0", "--insecure-public"}, 1},
		{"serve public without htpasswd", "", []string{"registry", "serve", "--root", t.TempDir(), "--addr", "0.0.0.0:5000"}, 2},
		{"serve TLS certificate without key", "", []string{"registry", "serve", "--root", t.TempDir(), "--tls-cert", "cert.pem"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := regRun(context.Background(), tc.stdin, tc.args...)
			if got := regCode(err); got != tc.want {
				t.Fatalf("exit %d (%v), want %d", got, err, tc.want)
			}
			if out != "" {
				t.Fatalf("stdout = %q, want nothing on failure", out)
			}
			if strings.Contains(tc.name, "half a credential") && !strings.Contains(err.Error(), "--registry-") {
				t.Fatalf("error %q does not name the credential flags", err)
			}
		})
	}
}

// The flags of `registry serve`: refusals exit 2 (usage) with the
// sentinel, naming what to pass, before the root is created; a public
// address with --insecure-public warns on stderr first; --htpasswd,
// --tls-cert/--tls-key and --allow-delete reach the server.
func TestRegistryServeFlags(t *testing.T) {
	dir := t.TempDir()
	notBcrypt := filepath.Join(dir, "htpasswd-sha")
	if err := os.WriteFile(notBcrypt, []byte("# users\nci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := regSelfSigned(t)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want error
		says string
	}{
		{"public, empty host", []string{"--addr", ":5000"}, 2, registry.ErrPublicAddress, "--insecure-public"},
		{"public, every interface", []string{"--addr", "0.0.0.0:0"}, 2, registry.ErrPublicAddress, "--htpasswd"},
		{"public, another host", []string{"--addr", "192.0.2.10:5000", "--tls-cert", certFile, "--tls-key", keyFile}, 2, registry.ErrPublicAddress, "--htpasswd"},
		{"certificate without key", []string{"--tls-cert", certFile}, 2, registry.ErrTLSConfig, "--tls-key"},
		{"key without certificate", []string{"--tls-key", keyFile}, 2, registry.ErrTLSConfig, "--tls-cert"},
		{"htpasswd not bcrypt", []string{"--htpasswd", notBcrypt}, 2, registry.ErrHtpasswd, notBcrypt + ":2:"},
		{"htpasswd missing", []string{"--htpasswd", filepath.Join(dir, "missing")}, 1, os.ErrNotExist, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			out, err := regRun(context.Background(), "", append([]string{"registry", "serve", "--root", root}, tc.args...)...)
			if regCode(err) != tc.code || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("exit %d, %v; want exit %d, %v, naming %q", regCode(err), err, tc.code, tc.want, tc.says)
			}
			if out != "" {
				t.Fatalf("stdout = %q", out)
			}
			if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the root exists after the refusal (%v)", err)
			}
		})
	}

	t.Run("insecure public warns", func(t *testing.T) {
		addr, before, stop := startRegistryArgs(t, "--root", t.TempDir(), "--addr", "0.0.0.0:0", "--insecure-public")
		if len(before) != 1 || !strings.Contains(before[0], `"level":"WARN"`) || !strings.Contains(before[0], "anyone who reaches it can push") {
			t.Fatalf("log before listening: %q, want one warning", before)
		}
		if !strings.HasPrefix(addr, "[::]:") && !strings.HasPrefix(addr, "0.0.0.0:") {
			t.Fatalf("listening on %s, want every interface", addr)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("htpasswd, TLS, allow-delete", func(t *testing.T) {
		addr, before, stop := startRegistryArgs(t, "--root", t.TempDir(), "--addr", "127.0.0.1:0",
			"--htpasswd", htpasswd, "--tls-cert", certFile, "--tls-key", keyFile, "--allow-delete")
		if len(before) != 0 {
			t.Fatalf("log before listening: %q", before)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		for _, tc := range []struct {
			user, method, path string
			want               int
		}{
			{"", "GET", "/v2/", http.StatusUnauthorized},
			{"ci", "GET", "/v2/", http.StatusOK},
			// Deletes reach the registry: 404 for a blob it does not hold, not 405.
			{"ci", "DELETE", "/v2/a/blobs/" + zeroDigest, http.StatusNotFound},
		} {
			req, err := http.NewRequest(tc.method, "https://"+addr+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.user != "" {
				req.SetBasicAuth(tc.user, "s3cret")
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s as %q: %d, want %d", tc.method, tc.path, tc.user, resp.StatusCode, tc.want)
			}
		}
		client.CloseIdleConnections()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// regSelfSigned writes a self-signed certificate for 127.0.0.1 and its key
// and returns a pool trusting it.
func regSelfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "modelci test registry"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
