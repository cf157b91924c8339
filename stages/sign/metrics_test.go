package sign_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

func metricsJSON(t testing.TB) []byte {
	t.Helper()
	m := &modelgate.Metrics{
		Schema:  modelgate.MetricsSchema,
		Train:   modelgate.TrainMetrics{Loss: []float64{9, 4, 3}},
		Eval:    modelgate.EvalMetrics{Loss: 2, PerExample: []float64{1, 2, 3}},
		Params:  map[string]any{"epochs": 3.0},
		Dataset: modelgate.DatasetInfo{Digest: "sha256:" + strings.Repeat("ab", 32), Rows: 15},
		Split:   modelgate.SplitInfo{TestDigest: "sha256:" + strings.Repeat("cd", 32), TestRows: 3, Seed: 42, TestFraction: 0.2},
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMetricsRoundTrip(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	ref := pushModel(t, r, "champion", "m", "1.0.0")
	res, err := sign.AttachMetrics(ctx(t), ref, metricsJSON(t), k.source())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(res.Tag, ".metrics") {
		t.Errorf("metrics tag %s, want a .metrics tag", res.Tag)
	}
	m, err := sign.FetchMetrics(ctx(t), ref, sign.VerifyPolicy{Key: k.pub})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Eval.PerExample, []float64{1, 2, 3}) || m.Split.TestRows != 3 {
		t.Errorf("fetched metrics %+v", m)
	}

	// The artifact is an OCI 1.1 referrer of the image: a registry's
	// referrers API lists it with its artifact type.
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != sign.MetricsMediaType || im.Manifests[0].Digest.String() != res.ManifestDigest {
		t.Errorf("referrers of %s = %+v, want the metrics artifact %s", ref, im.Manifests, res.ManifestDigest)
	}
}

func TestFetchMetricsRefused(t *testing.T) {
	r := newRegistry(t)
	k := newKeyPair(t)
	other := newKeyPair(t)

	t.Run("none attached", func(t *testing.T) {
		ref := pushModel(t, r, "nometrics", "m", "1.0.0")
		if _, err := sign.FetchMetrics(ctx(t), ref, sign.VerifyPolicy{Key: k.pub}); !errors.Is(err, sign.ErrNoMetrics) {
			t.Errorf("FetchMetrics: %v, want ErrNoMetrics", err)
		}
	})
	t.Run("signed by another key", func(t *testing.T) {
		ref := pushModel(t, r, "othermetrics", "m", "1.0.0")
		if _, err := sign.AttachMetrics(ctx(t), ref, metricsJSON(t), other.source()); err != nil {
			t.Fatal(err)
		}
		_, err := sign.FetchMetrics(ctx(t), ref, sign.VerifyPolicy{Key: k.pub})
		if !errors.Is(err, sign.ErrRefused) || !strings.Contains(err.Error(), "no signature of the metrics artifact") {
			t.Errorf("FetchMetrics: %v, want a refusal naming the metrics artifact", err)
		}
	})
	t.Run("artifact of another image copied here", func(t *testing.T) {
		ref := pushModel(t, r, "copiedmetrics", "m", "1.0.0")
		src := pushModel(t, r, "copiedmetrics", "m", "0.9.0")
		if _, err := sign.AttachMetrics(ctx(t), src, metricsJSON(t), k.source()); err != nil {
			t.Fatal(err)
		}
		copyImage(t, suffixTag(src, "metrics"), suffixTag(ref, "metrics"))
		_, err := sign.FetchMetrics(ctx(t), ref, sign.VerifyPolicy{Key: k.pub})
		if !errors.Is(err, sign.ErrRefused) || !strings.Contains(err.Error(), "is not about") {
			t.Errorf("FetchMetrics: %v, want a refusal: not about this image", err)
		}
	})
	t.Run("invalid metrics are not attached", func(t *testing.T) {
		ref := pushModel(t, r, "badmetrics", "m", "1.0.0")
		_, err := sign.AttachMetrics(ctx(t), ref, []byte(`{"schema":"other"}`), k.source())
		if !errors.Is(err, modelgate.ErrMetricsSchema) {
			t.Errorf("AttachMetrics: %v, want ErrMetricsSchema", err)
		}
	})
}
