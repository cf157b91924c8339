package sign_test

import (
	"context"
	"strings"
	"testing"

	"github.com/modelci/modelci/internal/ocitest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

const testPassword = "correct-horse-battery-staple-7f3a"

// testRegistry is an in-process registry over real HTTP that records every
// request and response body (the password test searches them).
type testRegistry struct{ *ocitest.Recorded }

func newRegistry(t testing.TB) *testRegistry {
	r := ocitest.RecordingRegistry(t)
	return &testRegistry{Recorded: r}
}

func (r *testRegistry) contents() string { return r.Contents() }

// pushModel pushes a random image annotated as model name/version and
// returns it by digest.
func pushModel(t testing.TB, r *testRegistry, repo, model, version string) string {
	t.Helper()
	return r.Host + "/" + repo + "@" + ocitest.PushModel(t, r.Host+"/"+repo, version, model, version, 512, 1).String()
}

// keyPair is a cosign key pair written to a temporary directory.
type keyPair struct {
	priv, pub         []byte
	privPath, pubPath string
	src               sign.SignerSource
}

func newKeyPair(t testing.TB) keyPair {
	k := ocitest.NewKeys(t, testPassword)
	return keyPair{priv: k.Priv, pub: k.Pub, privPath: k.PrivPath, pubPath: k.PubPath, src: k.Signer}
}

func (k keyPair) source() sign.SignerSource { return k.src }

func gate(model, version string, v modelgate.Verdict) modelgate.GatePredicate {
	return modelgate.GatePredicate{
		Model:   modelgate.ModelRef{Name: model, Version: version},
		Verdict: v,
		Dataset: modelgate.DatasetRef{Digest: "sha256:" + strings.Repeat("ab", 32), Rows: 442},
	}
}

func provenance(t testing.TB, model, version string) *sign.Provenance {
	t.Helper()
	p, err := sign.NewProvenance(sign.ProvenanceInput{
		BuilderID:             "https://modelci.dev/builders/local",
		ModelciVersion:        "0.1.0",
		RunID:                 "run-1",
		Model:                 modelgate.ModelRef{Name: model, Version: version},
		DatasetURI:            "data/diabetes.csv",
		DatasetDigest:         "sha256:" + strings.Repeat("ab", 32),
		SourceURI:             "git+https://example.invalid/models.git",
		SourceRevision:        strings.Repeat("c", 40),
		BuiltinTrainer:        "linear",
		BuiltinTrainerVersion: "1",
		Parameters:            map[string]any{"epochs": 300},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctx(t testing.TB) context.Context {
	return t.Context()
}
