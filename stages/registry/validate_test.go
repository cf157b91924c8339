package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// fuzzHeld is what the registry holds in FuzzValidateManifest.
var (
	fuzzCfg    = []byte(`{"architecture":"amd64","os":"linux"}`)
	fuzzLayer  = []byte("layer")
	fuzzImage  = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digestOf(fuzzCfg) + `","size":37},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + digestOf(fuzzLayer) + `","size":5}]}`
	fuzzBlobs  = map[string]int64{digestOf(fuzzCfg): int64(len(fuzzCfg)), digestOf(fuzzLayer): int64(len(fuzzLayer))}
	fuzzImages = map[string]int64{digestOf([]byte(fuzzImage)): int64(len(fuzzImage))}
)

func fuzzHolder(kind refKind, digest string) (int64, bool) {
	m := fuzzBlobs
	if kind == manifestRef {
		m = fuzzImages
	}
	n, ok := m[digest]
	return n, ok
}

// FuzzValidateManifest: validateManifest never panics; what it accepts
// hashes to the digest it reports and to the digest in the URL when the
// PUT is by digest; it never accepts a PUT to another digest; its media
// type is one of the four, and every descriptor it checked is held with
// its size.
func FuzzValidateManifest(f *testing.F) {
	index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digestOf([]byte(fuzzImage)) + `","size":` + strconv.Itoa(len(fuzzImage)) + `}]}`
	for _, seed := range []struct{ target, ct, body string }{
		{"1.0.0", string(types.OCIManifestSchema1), fuzzImage},
		{digestOf([]byte(fuzzImage)), string(types.OCIManifestSchema1), fuzzImage},
		{digestOf([]byte("other")), string(types.OCIManifestSchema1), fuzzImage},
		{"1.0.0", "", fuzzImage},
		{"1.0.0", string(types.DockerManifestSchema2), strings.Replace(fuzzImage, "application/vnd.oci.image.manifest.v1+json", string(types.DockerManifestSchema2), 1)},
		{"i", string(types.OCIImageIndex), index},
		{"i", string(types.DockerManifestList), index},
		{"1.0.0", string(types.OCIManifestSchema1), strings.Replace(fuzzImage, `"size":5`, `"size":6`, 1)},
		{"1.0.0", string(types.OCIManifestSchema1), `{"schemaVersion":2,"config":null}`},
		{"1.0.0", "text/plain; x=\"", `null`},
		{"../x", string(types.OCIManifestSchema1), fuzzImage},
	} {
		f.Add(seed.target, seed.ct, []byte(seed.body))
	}
	other := digestOf([]byte("a manifest the registry holds elsewhere"))
	f.Fuzz(func(t *testing.T, target, ct string, body []byte) {
		d := digestOf(body)
		for _, to := range []string{target, "latest", d, other} {
			m, rerr := validateManifest(to, ct, body, fuzzHolder)
			if (m == nil) == (rerr == nil) {
				t.Fatalf("validateManifest(%q) = %v, %v: want exactly one", to, m, rerr)
			}
			if rerr != nil {
				if rerr.status < 400 || rerr.code == "" || rerr.msg == "" {
					t.Fatalf("refusal without status, code or message: %+v", rerr)
				}
				continue
			}
			if m.digest != d || string(m.body) != string(body) {
				t.Fatalf("accepted %q as %s, body digest %s", to, m.digest, d)
			}
			if to == other || (digestRE.MatchString(to) && to != d) {
				t.Fatalf("accepted a PUT to %s of a body with digest %s", to, d)
			}
			switch m.mediaType {
			case types.OCIManifestSchema1, types.OCIImageIndex, types.DockerManifestSchema2, types.DockerManifestList:
			default:
				t.Fatalf("accepted media type %q", m.mediaType)
			}
			var parsed manifestBody
			if err := json.Unmarshal(body, &parsed); err != nil {
				t.Fatalf("accepted a body that does not parse: %v", err)
			}
			refs := parsed.Manifests
			if !m.mediaType.IsIndex() {
				refs = append([]descriptor{*parsed.Config}, parsed.Layers...)
			}
			for _, r := range refs {
				kind := blobRef
				if t := types.MediaType(r.MediaType); m.mediaType.IsIndex() && (t.IsImage() || t.IsIndex()) {
					kind = manifestRef
				}
				if n, ok := fuzzHolder(kind, r.Digest); !ok || n != r.Size {
					t.Fatalf("accepted a descriptor the registry does not hold as given: %+v", r)
				}
			}
		}
	})
}
