package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
)

// Error codes of the distribution API that the embedded registry answers
// with (distribution-spec, "Error Codes").
const (
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnsupported         = "UNSUPPORTED"
	codeUnauthorized        = "UNAUTHORIZED"
	codeUnknown             = "UNKNOWN"
)

// apiError is a refusal in the distribution API's terms.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) write(w http.ResponseWriter) { writeError(w, e.status, e.code, e.msg) }

func refuse(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// refKind says where a descriptor's content must be: among the blobs, or
// among the repository's manifests.
type refKind int

const (
	blobRef refKind = iota
	manifestRef
)

// holder answers whether the registry holds digest (sha256:<hex>) as kind,
// and its size in bytes.
type holder func(kind refKind, digest string) (size int64, ok bool)

// checkedManifest is a manifest PUT that passed validateManifest.
type checkedManifest struct {
	digest    string          // sha256 of the body
	mediaType types.MediaType // from Content-Type, or the body when none was sent
	body      []byte
}

// descriptor is the part of an OCI descriptor the checks read. Digests stay
// strings so that a malformed one is refused here with a clear message.
type descriptor struct {
	MediaType string   `json:"mediaType"`
	Digest    string   `json:"digest"`
	Size      int64    `json:"size"`
	URLs      []string `json:"urls,omitempty"`
}

type manifestBody struct {
	SchemaVersion *int         `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        *descriptor  `json:"config"`
	Layers        []descriptor `json:"layers"`
	Manifests     []descriptor `json:"manifests"`
	// Subject (OCI 1.1 referrers) is not required to exist, as in
	// distribution: a signature may be pushed before what it signs.
}

// validateManifest checks a manifest PUT to target (a tag or a digest) as
// the distribution registry does, before anything is stored:
//   - a PUT by digest must carry a body with that digest (DIGEST_INVALID);
//   - the media type (Content-Type, else the body's mediaType) must be an
//     OCI or Docker image manifest or index, and the body's mediaType, when
//     set, must agree with Content-Type (MANIFEST_INVALID); Docker types
//     require it in the body;
//   - schemaVersion is 2 and an image manifest has a config;
//   - every config and layer blob, and every manifest an index lists, is
//     held by the registry (MANIFEST_BLOB_UNKNOWN) with the size its
//     descriptor gives (MANIFEST_INVALID); descriptors with URLs (foreign
//     layers) are refused, as distribution does by default.
func validateManifest(target, contentType string, body []byte, have holder) (*checkedManifest, *apiError) {
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	switch {
	case digestRE.MatchString(target):
		if target != digest {
			return nil, refuse(http.StatusBadRequest, codeDigestInvalid,
				"manifest body has digest %s, not %s given in the URL", digest, target)
		}
	case !oci.ValidTag(target):
		return nil, refuse(http.StatusBadRequest, "TAG_INVALID", "invalid tag or digest %q", target)
	}

	var ct string
	if contentType != "" {
		var err error
		if ct, _, err = mime.ParseMediaType(contentType); err != nil {
			return nil, refuse(http.StatusBadRequest, codeManifestInvalid, "Content-Type %q: %v", contentType, err)
		}
	}
	var m manifestBody
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, refuse(http.StatusBadRequest, codeManifestInvalid, "manifest is not a valid JSON manifest: %v", err)
	}

	mt := types.MediaType(ct)
	switch {
	case ct == "" || ct == "application/json":
		if m.MediaType == "" {
			return nil, refuse(http.StatusBadRequest, codeManifestInvalid,
				"manifest media type unknown: no Content-Type and no mediaType in the manifest")
		}
		mt = types.MediaType(m.MediaType)
	case m.MediaType != "" && m.MediaType != ct:
		return nil, refuse(http.StatusBadRequest, codeManifestInvalid,
			"Content-Type is %s but the manifest's mediaType is %s", ct, m.MediaType)
	}
	var index bool
	switch mt {
	case types.OCIManifestSchema1:
	case types.OCIImageIndex:
		index = true
	case types.DockerManifestSchema2, types.DockerManifestList:
		if m.MediaType == "" {
			return nil, refuse(http.StatusBadRequest, codeManifestInvalid, "a %s manifest must give its mediaType", mt)
		}
		index = mt == types.DockerManifestList
	default:
		return nil, refuse(http.StatusBadRequest, codeManifestInvalid,
			"unsupported manifest media type %q (want an OCI or Docker image manifest or index)", mt)
	}
	if m.SchemaVersion == nil || *m.SchemaVersion != 2 {
		return nil, refuse(http.StatusBadRequest, codeManifestInvalid, "manifest schemaVersion must be 2")
	}

	type ref struct {
		what string
		kind refKind
		d    descriptor
	}
	var refs []ref
	if index {
		for i, d := range m.Manifests {
			kind := blobRef
			if t := types.MediaType(d.MediaType); t.IsImage() || t.IsIndex() {
				kind = manifestRef
			}
			refs = append(refs, ref{fmt.Sprintf("manifests[%d]", i), kind, d})
		}
	} else {
		if m.Config == nil {
			return nil, refuse(http.StatusBadRequest, codeManifestInvalid, "image manifest has no config descriptor")
		}
		refs = append(refs, ref{"config", blobRef, *m.Config})
		for i, d := range m.Layers {
			refs = append(refs, ref{fmt.Sprintf("layers[%d]", i), blobRef, d})
		}
	}
	for _, r := range refs {
		switch {
		case !digestRE.MatchString(r.d.Digest):
			return nil, refuse(http.StatusBadRequest, codeManifestInvalid,
				"%s: digest %q is not sha256:<64 lowercase hex>", r.what, r.d.Digest)
		case r.d.Size < 0:
			return nil, refuse(http.StatusBadRequest, codeManifestInvalid, "%s: negative size %d", r.what, r.d.Size)
		case len(r.d.URLs) > 0:
			return nil, refuse(http.StatusBadRequest, codeManifestInvalid,
				"%s: descriptor has urls: foreign layers are not accepted", r.what)
		}
		size, ok := have(r.kind, r.d.Digest)
		if !ok {
			what := "blob"
			if r.kind == manifestRef {
				what = "manifest"
			}
			return nil, refuse(http.StatusBadRequest, codeManifestBlobUnknown,
				"%s: %s %s unknown to the registry", r.what, what, r.d.Digest)
		}
		if size != r.d.Size {
			return nil, refuse(http.StatusBadRequest, codeManifestInvalid,
				"%s: descriptor of %s gives size %d, the registry holds %d bytes", r.what, r.d.Digest, r.d.Size, size)
		}
	}
	return &checkedManifest{digest: digest, mediaType: mt, body: body}, nil
}
