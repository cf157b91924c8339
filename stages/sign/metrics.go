package sign

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/modelci/modelci/modelgate"
)

// The metrics artifact (ARCHITECTURE.md, "metrics.json v1").
const (
	// MetricsMediaType is the artifact type and the layer media type.
	MetricsMediaType = "application/vnd.modelci.metrics.v1+json"
	// MetricsSuffix is the tag suffix: repo:sha256-<hex>.metrics, next to
	// cosign's .sig and .att.
	MetricsSuffix = "metrics"

	emptyConfigMediaType = "application/vnd.oci.empty.v1+json"
	titleAnnotation      = "org.opencontainers.image.title"
	// maxMetricsSize bounds what FetchMetrics reads from a registry.
	maxMetricsSize = 64 << 20
)

// AttachMetrics pushes metrics.json (validated first) as an OCI artifact
// about ref's digest and signs it. The artifact is an image manifest with
// artifactType and a single layer of MetricsMediaType, an empty config, and
// subject = the image (so registries with the OCI 1.1 referrers API list
// it). It is tagged repo:sha256-<hex>.metrics so that FetchMetrics finds it
// by the image's digest on any registry, and its own digest is signed like
// an image (repo:sha256-<artifact hex>.sig). Result.ManifestDigest is the
// artifact's digest.
func AttachMetrics(ctx context.Context, ref string, metrics []byte, src SignerSource, opts ...Option) (*Result, error) {
	o := makeOptions(opts)
	if _, err := modelgate.DecodeMetrics(metrics); err != nil {
		return nil, fmt.Errorf("attach metrics to %s: %w", ref, err)
	}
	t, err := o.resolve(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("attach metrics to %s: %w", ref, err)
	}
	s, err := src.load(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("attach metrics to %s: %w", ref, err)
	}
	res, err := o.attachMetrics(ctx, t, metrics, s)
	if err != nil {
		return nil, fmt.Errorf("attach metrics to %s: %w", t.digest, err)
	}
	return res, nil
}

func (o *options) attachMetrics(ctx context.Context, t target, metrics []byte, s *signer) (*Result, error) {
	repo := t.digest.Repository
	cfg := static.NewLayer([]byte("{}"), emptyConfigMediaType)
	layer := static.NewLayer(metrics, MetricsMediaType)
	var descs []v1.Descriptor
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(repo, l, o.remote(ctx)...); err != nil {
			return nil, fmt.Errorf("upload blob: %w", err)
		}
		d, err := descriptor(l)
		if err != nil {
			return nil, err
		}
		descs = append(descs, d)
	}
	descs[1].Annotations = map[string]string{titleAnnotation: "metrics.json"}
	subject := v1.Descriptor{MediaType: t.desc.MediaType, Size: t.desc.Size, Digest: t.desc.Digest}
	raw, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  MetricsMediaType,
		Config:        descs[0],
		Layers:        descs[1:],
		Subject:       &subject,
	})
	if err != nil {
		return nil, err
	}
	tag, err := metricsTag(t.digest)
	if err != nil {
		return nil, err
	}
	if err := remote.Put(tag, rawManifest(raw), o.remote(ctx)...); err != nil {
		return nil, fmt.Errorf("push %s: %w", tag, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	art := target{digest: repo.Digest(h.String())}
	if _, err := o.signDigest(ctx, art, s); err != nil {
		return nil, fmt.Errorf("sign metrics artifact %s: %w", art.digest, err)
	}
	return &Result{Ref: t.digest.String(), Digest: t.digest.DigestStr(), Tag: tag.String(), ManifestDigest: h.String()}, nil
}

// FetchMetrics fetches the metrics attached to ref's digest (a champion's
// per-example losses), after checking that the artifact is about that
// digest and carries a valid signature by the policy's signer (else
// ErrRefused). No artifact at all is ErrNoMetrics.
func FetchMetrics(ctx context.Context, ref string, p VerifyPolicy, opts ...Option) (*modelgate.Metrics, error) {
	o := makeOptions(opts)
	t, err := o.resolve(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("fetch metrics of %s: %w", ref, err)
	}
	m, err := o.fetchMetrics(ctx, t, p)
	if err != nil {
		return nil, fmt.Errorf("fetch metrics of %s: %w", t.digest, err)
	}
	return m, nil
}

func (o *options) fetchMetrics(ctx context.Context, t target, p VerifyPolicy) (*modelgate.Metrics, error) {
	tag, err := metricsTag(t.digest)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(tag, o.remote(ctx)...)
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%s: %w", tag, ErrNoMetrics)
		}
		return nil, fmt.Errorf("fetch %s: %w", tag, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", tag, err)
	}
	if m.Subject == nil || m.Subject.Digest.String() != t.digest.DigestStr() {
		return nil, fmt.Errorf("%w: the metrics artifact at %s is not about %s", ErrRefused, tag, t.digest.DigestStr())
	}
	var layer *v1.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == MetricsMediaType {
			layer = &m.Layers[i]
		}
	}
	if layer == nil || layer.Size > maxMetricsSize {
		return nil, fmt.Errorf("%w: %s has no %s layer of at most %d bytes", ErrRefused, tag, MetricsMediaType, maxMetricsSize)
	}

	art := t.digest.Repository.Digest(desc.Digest.String())
	co, who, err := o.checkOpts(ctx, p)
	if err != nil {
		return nil, err
	}
	co.ClaimVerifier = claimDigest
	if _, _, err := cosign.VerifyImageSignatures(ctx, art, co); err != nil {
		if isRefusal(err) {
			return nil, fmt.Errorf("%w: no signature of the metrics artifact %s verifies with %s: %v", ErrRefused, art, who, err)
		}
		return nil, fmt.Errorf("signatures of %s: %w", art, err)
	}

	// remote.Layer checks the blob against its digest as it is read.
	l, err := remote.Layer(t.digest.Repository.Digest(layer.Digest.String()), o.remote(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("metrics blob %s: %w", layer.Digest, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("metrics blob %s: %w", layer.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, layer.Size+1))
	if err != nil {
		return nil, fmt.Errorf("metrics blob %s: %w", layer.Digest, err)
	}
	if int64(len(b)) != layer.Size {
		return nil, fmt.Errorf("%w: metrics blob %s is %d bytes, the manifest says %d", ErrRefused, layer.Digest, len(b), layer.Size)
	}
	return modelgate.DecodeMetrics(b)
}

func metricsTag(d name.Digest) (name.Tag, error) {
	h, err := v1.NewHash(d.DigestStr())
	if err != nil {
		return name.Tag{}, err
	}
	return d.Repository.Tag(fmt.Sprintf("%s-%s.%s", h.Algorithm, h.Hex, MetricsSuffix)), nil
}

func descriptor(l v1.Layer) (v1.Descriptor, error) {
	d, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := l.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: d}, nil
}

// rawManifest is a manifest pushed as is.
type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
