package registry_test

import (
	"cmp"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	ociManifest  = string(types.OCIManifestSchema1)
	ociIndexType = string(types.OCIImageIndex)
	dockerImage  = string(types.DockerManifestSchema2)
	dockerList   = string(types.DockerManifestList)
)

// Manifests the distribution registry refuses are refused, with its
// status and error code, and change nothing: not the tag or digest they
// were PUT to, not the manifest their body is, not the files under
// root/manifests, and not what a restarted server on the same root serves.
func TestServeManifestRefusals(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, root)
	const repo = "team/m"
	img := newImageFixture(t, s.base, repo)
	x := img.manifest
	xb := x.bytes(t)
	xd := sha(xb)
	if code, h, body := call(t, "PUT", s.base+"/v2/"+repo+"/manifests/x", xb, "Content-Type", ociManifest); code != http.StatusCreated || h.Get("Docker-Content-Digest") != xd {
		t.Fatalf("PUT image X: %d %s", code, body)
	}
	// Y is a valid manifest too (no layers), never pushed.
	y := x.with(func(m *mfst) { m.Layers = nil })
	missing := sha([]byte("nobody pushed this"))
	index := func(children ...desc) mfst {
		return mfst{SchemaVersion: 2, MediaType: ociIndexType, Manifests: children}
	}
	child := desc{MediaType: ociManifest, Digest: xd, Size: int64(len(xb))}

	tests := []struct {
		name        string
		repo        string // default repo
		target      string
		contentType string
		body        []byte
		status      int
		code        string
	}{
		// A PUT by digest whose body has another digest would make X's
		// digest serve Y: go-containerregistry's registry stores it so.
		{"digest mismatch, X's digest", "", xd, ociManifest, y.bytes(t), 400, "DIGEST_INVALID"},
		{"digest mismatch, unknown digest", "", missing, ociManifest, y.bytes(t), 400, "DIGEST_INVALID"},
		{"missing layer", "", "t1", ociManifest, x.with(func(m *mfst) { m.Layers[0].Digest = missing }).bytes(t), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"missing config", "", "t1", ociManifest, x.with(func(m *mfst) { m.Config.Digest = missing }).bytes(t), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"missing layer, by digest", "", sha(x.with(func(m *mfst) { m.Layers[0].Digest = missing }).bytes(t)), ociManifest,
			x.with(func(m *mfst) { m.Layers[0].Digest = missing }).bytes(t), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"layer size differs", "", "t1", ociManifest, x.with(func(m *mfst) { m.Layers[0].Size++ }).bytes(t), 400, "MANIFEST_INVALID"},
		{"config size differs", "", "t1", ociManifest, x.with(func(m *mfst) { m.Config.Size-- }).bytes(t), 400, "MANIFEST_INVALID"},
		{"negative size", "", "t1", ociManifest, x.with(func(m *mfst) { m.Layers[0].Size = -1 }).bytes(t), 400, "MANIFEST_INVALID"},
		{"malformed layer digest", "", "t1", ociManifest, x.with(func(m *mfst) { m.Layers[0].Digest = "sha256:XYZ" }).bytes(t), 400, "MANIFEST_INVALID"},
		{"foreign layer", "", "t1", ociManifest, x.with(func(m *mfst) {
			m.Layers[0].MediaType = string(types.OCIRestrictedLayer)
			m.Layers[0].URLs = []string{"https://example.invalid/layer"}
		}).bytes(t), 400, "MANIFEST_INVALID"},
		{"no config", "", "t1", ociManifest, x.with(func(m *mfst) { m.Config = nil }).bytes(t), 400, "MANIFEST_INVALID"},
		{"schema version 1", "", "t1", ociManifest, x.with(func(m *mfst) { m.SchemaVersion = 1 }).bytes(t), 400, "MANIFEST_INVALID"},
		{"not JSON", "", "t1", ociManifest, []byte(`{"schemaVersion":2,`), 400, "MANIFEST_INVALID"},
		{"Content-Type Docker, body OCI", "", "t1", dockerImage, xb, 400, "MANIFEST_INVALID"},
		{"Content-Type OCI, body Docker", "", "t1", ociManifest, x.with(func(m *mfst) { m.MediaType = dockerImage }).bytes(t), 400, "MANIFEST_INVALID"},
		{"Content-Type index, body image", "", "t1", ociIndexType, xb, 400, "MANIFEST_INVALID"},
		{"unsupported media type", "", "t1", "application/vnd.oci.artifact.manifest.v1+json",
			x.with(func(m *mfst) { m.MediaType = "application/vnd.oci.artifact.manifest.v1+json" }).bytes(t), 400, "MANIFEST_INVALID"},
		{"no media type anywhere", "", "t1", "", x.with(func(m *mfst) { m.MediaType = "" }).bytes(t), 400, "MANIFEST_INVALID"},
		{"Docker without a body mediaType", "", "t1", dockerImage, x.with(func(m *mfst) { m.MediaType = "" }).bytes(t), 400, "MANIFEST_INVALID"},
		{"index, missing child", "", "i1", ociIndexType, index(child, desc{MediaType: ociManifest, Digest: missing, Size: 10}).bytes(t), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"index, child size differs", "", "i1", ociIndexType, index(desc{MediaType: ociManifest, Digest: xd, Size: int64(len(xb)) + 1}).bytes(t), 400, "MANIFEST_INVALID"},
		{"index, child in another repository", "team/other", "i1", ociIndexType, index(child).bytes(t), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"Docker list, missing child", "", "i1", dockerList, mfst{SchemaVersion: 2, MediaType: dockerList,
			Manifests: []desc{{MediaType: dockerImage, Digest: missing, Size: 3}}}.bytes(t), 400, "MANIFEST_BLOB_UNKNOWN"},
		// A refused manifest does not move a tag that exists.
		{"tag x to a manifest with a missing blob", "", "x", ociManifest, x.with(func(m *mfst) { m.Layers[0].Digest = missing }).bytes(t), 400, "MANIFEST_BLOB_UNKNOWN"},
		{"tag x to a manifest of the wrong size", "", "x", ociManifest, x.with(func(m *mfst) { m.Layers[0].Size = 1 }).bytes(t), 400, "MANIFEST_INVALID"},
	}

	type served struct{ code, contentType, body string }
	get := func(repo, ref string) served {
		code, ct, body := getManifest(t, s.base, repo, ref)
		if code != http.StatusOK {
			ct, body = "", "" // error bodies may differ in their text
		}
		return served{http.StatusText(code), ct, body}
	}
	files := func() map[string]string { return tree(t, filepath.Join(root, "manifests")) }
	// What each case must leave as it was: its target and its body's digest.
	type probe struct{ repo, ref string }
	var probes []probe
	for _, tc := range tests {
		to := cmp.Or(tc.repo, repo)
		probes = append(probes, probe{to, tc.target}, probe{to, sha(tc.body)})
	}
	probes = append(probes, probe{repo, "x"}, probe{repo, xd})
	before := map[probe]served{}
	for _, p := range probes {
		before[p] = get(p.repo, p.ref)
	}
	if before[probe{repo, xd}].body != string(xb) || before[probe{repo, "x"}].body != string(xb) {
		t.Fatal("X is not served before the refusals")
	}
	filesBefore := files()

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			to := cmp.Or(tc.repo, repo)
			var h []string
			if tc.contentType != "" {
				h = []string{"Content-Type", tc.contentType}
			}
			code, _, body := call(t, "PUT", s.base+"/v2/"+to+"/manifests/"+tc.target, tc.body, h...)
			if code != tc.status || errCode(body) != tc.code {
				t.Fatalf("PUT: %d %s, want %d %s", code, body, tc.status, tc.code)
			}
			for _, p := range []probe{{to, tc.target}, {to, sha(tc.body)}, {repo, "x"}, {repo, xd}} {
				if got := get(p.repo, p.ref); got != before[p] {
					t.Errorf("GET %s:%s after the refusal = %v, before %v", p.repo, p.ref, got, before[p])
				}
			}
			sameTree(t, "root/manifests", filesBefore, files())
		})
	}

	// A server restarted on the root serves what was there before.
	s.restart()
	for _, p := range probes {
		if got := get(p.repo, p.ref); got != before[p] {
			t.Errorf("after restart, GET %s:%s = %v, before the refusals %v", p.repo, p.ref, got, before[p])
		}
	}
	sameTree(t, "root/manifests after restart", filesBefore, files())
}

// The manifests clients push are accepted, by tag and by digest, and served
// with their media type, before and after a restart; among them signatures
// (small layer blobs) and OCI 1.1 referrers whose subject is not (yet) in
// the registry, which distribution accepts too.
func TestServeManifestAccepts(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, root)
	const repo = "team/m"
	img := newImageFixture(t, s.base, repo)
	x := img.manifest
	xb := x.bytes(t)
	dockerCfg := []byte(`{"architecture":"arm64","os":"linux"}`)
	docker := mfst{
		SchemaVersion: 2, MediaType: dockerImage,
		Config: &desc{MediaType: string(types.DockerConfigJSON), Digest: pushBlob(t, s.base, repo, dockerCfg), Size: int64(len(dockerCfg))},
		Layers: []desc{{MediaType: string(types.DockerLayer), Digest: x.Layers[0].Digest, Size: x.Layers[0].Size}},
	}
	db := docker.bytes(t)
	payload := []byte(`{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"` + sha(xb) + `"},"type":"cosign container image signature"},"optional":null}`)
	signature := mfst{
		SchemaVersion: 2, MediaType: ociManifest, Config: x.Config,
		Layers: []desc{{MediaType: "application/vnd.dev.cosign.simplesigning.v1+json", Digest: pushBlob(t, s.base, repo, payload), Size: int64(len(payload)),
			Annotations: map[string]string{"dev.cosignproject.cosign/signature": "MEUCIQ=="}}},
	}
	absent := sha([]byte("an image pushed later"))
	referrer := signature.with(func(m *mfst) {
		m.Subject = &desc{MediaType: ociManifest, Digest: absent, Size: 1234}
	})

	tests := []struct {
		name, target, contentType string
		body                      []byte
		wantType                  string
	}{
		{"OCI image by tag", "1.0.0", ociManifest, xb, ociManifest},
		{"OCI image by digest", sha(xb), ociManifest, xb, ociManifest},
		{"Docker image", "docker", dockerImage, db, dockerImage},
		{"OCI index", "multi", ociIndexType, mfst{SchemaVersion: 2, MediaType: ociIndexType,
			Manifests: []desc{{MediaType: ociManifest, Digest: sha(xb), Size: int64(len(xb))}}}.bytes(t), ociIndexType},
		{"Docker list", "list", dockerList, mfst{SchemaVersion: 2, MediaType: dockerList,
			Manifests: []desc{{MediaType: dockerImage, Digest: sha(db), Size: int64(len(db))}}}.bytes(t), dockerList},
		{"OCI image without a body mediaType", "bare", ociManifest, x.with(func(m *mfst) { m.MediaType = "" }).bytes(t), ociManifest},
		{"no Content-Type, body mediaType", "sniffed", "", x.with(func(m *mfst) { m.Annotations = map[string]string{"a": "b"} }).bytes(t), ociManifest},
		{"Content-Type with parameters", "params", ociManifest + "; charset=utf-8", x.with(func(m *mfst) { m.Annotations = map[string]string{"c": "d"} }).bytes(t), ociManifest},
		{"no layers", "empty", ociManifest, x.with(func(m *mfst) { m.Layers = nil }).bytes(t), ociManifest},
		{"cosign signature", "sha256-" + strings.TrimPrefix(sha(xb), "sha256:") + ".sig", ociManifest, signature.bytes(t), ociManifest},
		{"referrer with an absent subject", sha(referrer.bytes(t)), ociManifest, referrer.bytes(t), ociManifest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.contentType != "" {
				h = []string{"Content-Type", tc.contentType}
			}
			code, hdr, body := call(t, "PUT", s.base+"/v2/"+repo+"/manifests/"+tc.target, tc.body, h...)
			if code != http.StatusCreated || hdr.Get("Docker-Content-Digest") != sha(tc.body) {
				t.Fatalf("PUT: %d %s (digest %q), want 201 and %s", code, body, hdr.Get("Docker-Content-Digest"), sha(tc.body))
			}
		})
	}
	check := func(when string) {
		t.Helper()
		for _, tc := range tests {
			for _, ref := range []string{tc.target, sha(tc.body)} {
				code, ct, body := getManifest(t, s.base, repo, ref)
				if code != http.StatusOK || ct != tc.wantType || body != string(tc.body) {
					t.Errorf("%s: %s: GET %s = %d %s %q, want 200 %s and the body", when, tc.name, ref, code, ct, body, tc.wantType)
				}
			}
		}
	}
	check("before restart")
	s.restart()
	check("after restart")
}

// A root written before digest PUTs were checked may hold a manifest file
// named by a digest its body does not have: on start it is not served (and
// the digest of a tagged manifest comes back from its tag's file).
func TestServeReplaySkipsMismatchedDigestFiles(t *testing.T) {
	root := t.TempDir()
	s := startServer(t, root)
	const repo = "team/m"
	img := newImageFixture(t, s.base, repo)
	xb := img.manifest.bytes(t)
	yb := img.manifest.with(func(m *mfst) { m.Layers = nil }).bytes(t)
	if code, _, body := call(t, "PUT", s.base+"/v2/"+repo+"/manifests/x", xb, "Content-Type", ociManifest); code != http.StatusCreated {
		t.Fatalf("PUT X: %d %s", code, body)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "manifests", "team", "m", "_manifests")
	other := sha([]byte("never pushed"))
	for name, body := range map[string][]byte{sha(xb): yb, other: xb} {
		if err := os.WriteFile(filepath.Join(dir, name), append([]byte(ociManifest+"\n"), body...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s.host, s.stop = serve(t, root)
	s.base = "http://" + s.host
	for ref, want := range map[string]string{"x": string(xb), sha(xb): string(xb), other: ""} {
		code, _, body := getManifest(t, s.base, repo, ref)
		if want == "" && code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", ref, code)
		}
		if want != "" && (code != http.StatusOK || body != want) {
			t.Errorf("GET %s: %d %q, want X", ref, code, body)
		}
	}
}
