package registry_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/crypto/bcrypt"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
)

// Deletes are refused (405 UNSUPPORTED, as distribution with deletes
// disabled) unless WithDelete(true), and a refused DELETE changes nothing,
// before or after a restart. Blob DELETE was possible through any
// repository name.
func TestServeDelete(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("WithDelete(%v)", allow), func(t *testing.T) {
			root := t.TempDir()
			s := startServer(t, root, registry.WithDelete(allow))
			img := newImageFixture(t, s.base, "team/m")
			mb := img.manifest.bytes(t)
			if code, _, body := call(t, "PUT", s.base+"/v2/team/m/manifests/1.0.0", mb, "Content-Type", ociManifest); code != http.StatusCreated {
				t.Fatalf("PUT: %d %s", code, body)
			}
			layer := img.manifest.Layers[0].Digest
			tests := []struct{ name, del, check string }{
				{"blob through another repository", "/v2/any/other/blobs/" + layer, "/v2/team/m/blobs/" + layer},
				{"manifest by tag", "/v2/team/m/manifests/1.0.0", "/v2/team/m/manifests/1.0.0"},
				{"manifest by digest", "/v2/team/m/manifests/" + sha(mb), "/v2/team/m/manifests/" + sha(mb)},
			}
			disk := func() map[string]string {
				m := tree(t, filepath.Join(root, "manifests"))
				for k, v := range tree(t, filepath.Join(root, "blobs")) {
					m["blobs/"+k] = v
				}
				return m
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					before := disk()
					code, _, body := call(t, "DELETE", s.base+tc.del, nil)
					after, _, _ := call(t, "HEAD", s.base+tc.check, nil)
					if !allow {
						if code != http.StatusMethodNotAllowed || errCode(body) != "UNSUPPORTED" {
							t.Fatalf("DELETE: %d %s, want 405 UNSUPPORTED", code, body)
						}
						if after != http.StatusOK {
							t.Fatalf("HEAD after the refused DELETE: %d, want 200", after)
						}
						sameTree(t, "root", before, disk())
						return
					}
					if code != http.StatusAccepted || after != http.StatusNotFound {
						t.Fatalf("DELETE: %d %s, then HEAD %d; want 202 then 404", code, body, after)
					}
				})
			}
			if allow {
				for _, tc := range []struct {
					path, code string
					status     int
				}{
					{"/v2/Bad/blobs/" + layer, "NAME_INVALID", 400},
					{"/v2/team/m/blobs/sha256:xyz", "DIGEST_INVALID", 400},
					{"/v2/team/m/blobs/" + sha([]byte("never pushed")), "BLOB_UNKNOWN", 404},
				} {
					if code, _, body := call(t, "DELETE", s.base+tc.path, nil); code != tc.status || errCode(body) != tc.code {
						t.Errorf("DELETE %s: %d %s, want %d %s", tc.path, code, body, tc.status, tc.code)
					}
				}
			}
			s.restart()
			for _, tc := range tests {
				want := http.StatusOK
				if allow {
					want = http.StatusNotFound
				}
				if code, _, _ := call(t, "HEAD", s.base+tc.check, nil); code != want {
					t.Errorf("after restart, HEAD %s = %d, want %d", tc.check, code, want)
				}
			}
		})
	}
}

// bcryptEntry is an htpasswd line for user, as `htpasswd -B` writes it.
func bcryptEntry(t testing.TB, user, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":" + strings.Replace(string(h), "$2a$", "$2y$", 1)
}

func writeHtpasswd(t testing.TB, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func basic(user, pass string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

// With WithHtpasswd every request, /v2/ included, needs the credentials of
// a user in the file: others get 401 UNAUTHORIZED with a Basic challenge
// and change nothing. go-containerregistry's client pushes and pulls with
// basic credentials.
func TestServeAuth(t *testing.T) {
	root := t.TempDir()
	pw := writeHtpasswd(t, "# CI users", "", bcryptEntry(t, "ci", "s3cret"), bcryptEntry(t, "reader", "other"))
	s := startServer(t, root, registry.WithHtpasswd(pw))
	blob := []byte("a layer")
	manifest := []byte(`{"schemaVersion":2,"mediaType":"` + ociManifest + `","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + sha(blob) + `","size":7},"layers":[]}`)
	tests := []struct {
		name, method, path string
		body               []byte
		auth               []string
		want               int
	}{
		{"/v2/ without credentials", "GET", "/v2/", nil, nil, 401},
		{"/v2/ wrong password", "GET", "/v2/", nil, basic("ci", "wrong"), 401},
		{"/v2/ unknown user", "GET", "/v2/", nil, basic("nobody", "s3cret"), 401},
		{"/v2/ empty credentials", "GET", "/v2/", nil, basic("", ""), 401},
		{"blob upload without credentials", "POST", "/v2/team/m/blobs/uploads/?digest=" + sha(blob), blob, nil, 401},
		{"manifest PUT without credentials", "PUT", "/v2/team/m/manifests/1.0.0", manifest, nil, 401},
		{"DELETE without credentials", "DELETE", "/v2/team/m/blobs/" + sha(blob), nil, nil, 401},
		{"catalog without credentials", "GET", "/v2/_catalog", nil, nil, 401},
		{"/v2/ with credentials", "GET", "/v2/", nil, basic("ci", "s3cret"), 200},
		{"/v2/ another user", "GET", "/v2/", nil, basic("reader", "other"), 200},
		{"blob upload with credentials", "POST", "/v2/team/m/blobs/uploads/?digest=" + sha(blob), blob, basic("ci", "s3cret"), 201},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tree(t, root)
			h := tc.auth
			if tc.method == "PUT" {
				h = append(h, "Content-Type", ociManifest)
			}
			code, hdr, body := call(t, tc.method, s.base+tc.path, tc.body, h...)
			if code != tc.want {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.want)
			}
			if tc.want != http.StatusUnauthorized {
				return
			}
			if got := hdr.Get("WWW-Authenticate"); got != `Basic realm="modelci"` || errCode(body) != "UNAUTHORIZED" {
				t.Fatalf("401 with WWW-Authenticate %q and %s, want a Basic challenge and UNAUTHORIZED", got, body)
			}
			sameTree(t, "root", before, tree(t, root))
		})
	}

	// go-containerregistry's client, as cosign uses it.
	img := randomImage(t, 11)
	ref, err := name.ParseReference(s.host+"/team/client:1.0.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var te *transport.Error
	if err := remote.Write(ref, img); !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous remote.Write: %v, want 401", err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "ci", Password: "wrong"})); !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Fatalf("remote.Write with a wrong password: %v, want 401", err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})); err != nil {
		t.Fatalf("remote.Write with credentials: %v", err)
	}
	desc, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"}))
	if err != nil || desc.Digest != digestOf(t, img) {
		t.Fatalf("HEAD with credentials: %v, %v; want %s", desc, err, digestOf(t, img))
	}
	// And modelci's own client: the sentinel for a missing login.
	ctx := context.Background()
	if _, err := registry.Resolve(ctx, s.host+"/team/client:1.0.0", fast); !errors.Is(err, registry.ErrUnauthorized) {
		t.Fatalf("Resolve without credentials: %v, want ErrUnauthorized", err)
	}
	if h, err := registry.Resolve(ctx, s.host+"/team/client:1.0.0", registry.WithCredentials("reader", "other"), fast); err != nil || h != digestOf(t, img) {
		t.Fatalf("Resolve with credentials: %s, %v", h, err)
	}
}

// An htpasswd file with an entry the registry cannot check is refused at
// start, naming the file and the line, before the root is created.
func TestServeHtpasswdRefused(t *testing.T) {
	good := bcryptEntry(t, "ci", "s3cret")
	tests := []struct {
		name  string
		lines []string
		line  string // ":N" in the error; "" when none
	}{
		{"SHA1", []string{"alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="}, ":1:"},
		{"Apache MD5", []string{"# users", good, "alice:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/"}, ":3:"},
		{"crypt", []string{"carol:rl5V6dYqXJ0T2", good}, ":1:"},
		{"plain text", []string{good, "", "bob:hunter2"}, ":3:"},
		{"no colon", []string{"justaname"}, ":1:"},
		{"empty user", []string{":" + strings.SplitN(good, ":", 2)[1]}, ":1:"},
		{"user twice", []string{good, good}, ":2:"},
		{"no users", []string{"# nobody yet"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pw := writeHtpasswd(t, tc.lines...)
			root := filepath.Join(t.TempDir(), "root")
			_, err := registry.NewHandler(root, registry.WithHtpasswd(pw))
			if !errors.Is(err, registry.ErrHtpasswd) || !strings.Contains(err.Error(), pw+tc.line) {
				t.Fatalf("NewHandler: %v, want ErrHtpasswd naming %s%s", err, pw, tc.line)
			}
			err = registry.Serve(context.Background(), "127.0.0.1:0", root, registry.WithHtpasswd(pw),
				registry.OnListen(func(net.Addr) { t.Error("Serve listened") }))
			if !errors.Is(err, registry.ErrHtpasswd) {
				t.Fatalf("Serve: %v, want ErrHtpasswd", err)
			}
			if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the root exists after the refusal (%v)", err)
			}
		})
	}
	if _, err := registry.NewHandler(t.TempDir(), registry.WithHtpasswd(filepath.Join(t.TempDir(), "missing"))); err == nil || errors.Is(err, registry.ErrHtpasswd) {
		t.Fatalf("missing htpasswd file: %v, want the open error", err)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and localhost and its key,
// and returns them with a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "modelci test registry"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
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

// WithTLS serves HTTPS: a client trusting the certificate pushes and pulls
// (with basic credentials, the combination a public registry needs); a
// plain HTTP request or a client that does not trust it gets nowhere.
func TestServeTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	pw := writeHtpasswd(t, bcryptEntry(t, "ci", "s3cret"))
	s := startServer(t, t.TempDir(), registry.WithTLS(certFile, keyFile), registry.WithHtpasswd(pw))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()

	req, err := http.NewRequest("GET", "https://"+s.host+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("ci", "s3cret")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET https /v2/: %d (TLS %v), want 200 over TLS", resp.StatusCode, resp.TLS != nil)
	}
	if code, _, _ := call(t, "GET", "http://"+s.host+"/v2/", nil, basic("ci", "s3cret")...); code == http.StatusOK {
		t.Fatal("plain HTTP to the TLS port answered 200")
	}
	if _, err := http.Get("https://" + s.host + "/v2/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a client that does not trust the certificate: %v, want a certificate error", err)
	}

	img := randomImage(t, 12)
	ref, err := name.ParseReference(s.host + "/team/tls:1.0.0") // no name.Insecure
	if err != nil {
		t.Fatal(err)
	}
	auth := remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})
	if err := remote.Write(ref, img, remote.WithTransport(tr), auth); err != nil {
		t.Fatalf("remote.Write over TLS: %v", err)
	}
	got, err := remote.Image(ref, remote.WithTransport(tr), auth)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, got) != digestOf(t, img) {
		t.Fatalf("pulled %s, pushed %s", digestOf(t, got), digestOf(t, img))
	}
	checkBlobs(t, got)
}

// WithTLS needs both files; a refusal comes before the root is created.
func TestServeTLSOptions(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	tests := []struct {
		name, cert, key string
		want            error
	}{
		{"certificate without key", certFile, "", registry.ErrTLSConfig},
		{"key without certificate", "", keyFile, registry.ErrTLSConfig},
		{"key for the certificate missing", certFile, filepath.Join(t.TempDir(), "missing.pem"), os.ErrNotExist},
		{"certificate as key", certFile, certFile, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			err := registry.Serve(context.Background(), "127.0.0.1:0", root, registry.WithTLS(tc.cert, tc.key),
				registry.OnListen(func(net.Addr) { t.Error("Serve listened") }))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Serve: %v, want %v", err, tc.want)
			}
			if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the root exists after the refusal (%v)", err)
			}
		})
	}
}

// Serve refuses an address other machines can reach unless it requires
// credentials or WithInsecurePublic(true) says so; loopback is always fine.
func TestServePublicAddress(t *testing.T) {
	for addr, public := range map[string]bool{
		"127.0.0.1:5000":                false,
		"127.8.9.10:0":                  false,
		"localhost:5000":                false,
		"[::1]:5000":                    false,
		"[::ffff:127.0.0.1]:5000":       false,
		":5000":                         true,
		"0.0.0.0:5000":                  true,
		"[::]:5000":                     true,
		"192.0.2.10:5000":               true,
		"10.1.2.3:80":                   true,
		"registry.example.invalid:5000": true,
		"no port":                       true,
	} {
		if got := registry.PublicAddress(addr); got != public {
			t.Errorf("PublicAddress(%q) = %v, want %v", addr, got, public)
		}
	}

	pw := writeHtpasswd(t, bcryptEntry(t, "ci", "s3cret"))
	tests := []struct {
		name, addr string
		opts       []registry.ServeOption
		refused    bool
	}{
		{"every interface, empty host", ":0", nil, true},
		{"every interface, 0.0.0.0", "0.0.0.0:0", nil, true},
		{"every interface, ::", "[::]:0", nil, true},
		{"a non-loopback address", "192.0.2.10:0", nil, true},
		{"with --insecure-public", "0.0.0.0:0", []registry.ServeOption{registry.WithInsecurePublic(true)}, false},
		{"with htpasswd", "0.0.0.0:0", []registry.ServeOption{registry.WithHtpasswd(pw)}, false},
		{"loopback", "127.0.0.1:0", nil, false},
		{"localhost", "localhost:0", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			listening := make(chan net.Addr, 1)
			errc := make(chan error, 1)
			go func() {
				errc <- registry.Serve(ctx, tc.addr, root, append(tc.opts, registry.OnListen(func(a net.Addr) { listening <- a }))...)
			}()
			select {
			case err := <-errc:
				if !tc.refused || !errors.Is(err, registry.ErrPublicAddress) {
					t.Fatalf("Serve(%s) = %v; refusal expected: %v", tc.addr, err, tc.refused)
				}
				if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the root exists after the refusal (%v)", err)
				}
			case a := <-listening:
				if tc.refused {
					t.Fatalf("Serve(%s) listened on %s", tc.addr, a)
				}
				cancel()
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// cosign signatures and attestations (modelci's stages/sign) push to and
// verify against the embedded registry with basic credentials, and survive
// a restart.
func TestServeCosignWithAuth(t *testing.T) {
	ctx := context.Background()
	pw := writeHtpasswd(t, bcryptEntry(t, "ci", "s3cret"))
	s := startServer(t, t.TempDir(), registry.WithHtpasswd(pw))
	img := mutate.Annotations(randomImage(t, 13), map[string]string{
		sign.AnnotationModelName:    "diabetes",
		sign.AnnotationModelVersion: "1.0.0",
	}).(v1.Image)
	p, err := registry.Push(ctx, img, s.host+"/models/diabetes", registry.WithTags("1.0.0"), registry.WithCredentials("ci", "s3cret"), fast)
	if err != nil {
		t.Fatal(err)
	}
	password := []byte("correct-horse-battery-staple-7f3a")
	priv, pub, err := sign.GenerateKeys(password)
	if err != nil {
		t.Fatal(err)
	}
	key := sign.Key(priv, password)
	creds := sign.WithCredentials("ci", "s3cret")
	if _, err := sign.Sign(ctx, p.Ref, key); err == nil {
		t.Fatal("signing without credentials succeeded")
	}
	if _, err := sign.Sign(ctx, p.Ref, key, creds); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	gate := modelgate.GatePredicate{
		Model:   modelgate.ModelRef{Name: "diabetes", Version: "1.0.0"},
		Verdict: modelgate.Pass,
		Dataset: modelgate.DatasetRef{Digest: "sha256:" + strings.Repeat("ab", 32), Rows: 442},
	}
	if _, err := sign.Attest(ctx, p.Ref, modelgate.GatePredicateType, gate, key, creds); err != nil {
		t.Fatalf("Attest: %v", err)
	}
	verify := func() {
		t.Helper()
		_, path, _ := strings.Cut(p.Ref, "/") // the host changes with a restart
		v, err := sign.Verify(ctx, s.host+"/"+path, sign.VerifyPolicy{Key: pub, RequireGate: true}, creds)
		if err != nil || !v.Verified || v.Verdict != modelgate.Pass {
			t.Fatalf("Verify: %+v, %v", v, err)
		}
	}
	verify()
	s.restart()
	verify()
}
