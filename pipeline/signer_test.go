package pipeline_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/internal/ocitest"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/sign"
)

func TestSignerConfig(t *testing.T) {
	dir := project(t, func(s string) string { return s + "sign:\n  key: keys/cosign.key\n" })
	sp, err := spec.Load(filepath.Join(dir, spec.FileName))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the spec's key is the spec directory's", func(t *testing.T) {
		c := pipeline.SignerConfig{}.OrSpec(sp)
		if want := filepath.Join(dir, "keys", "cosign.key"); c.Key != want || c.Keyless {
			t.Errorf("OrSpec = %+v, want key %s", c, want)
		}
	})
	t.Run("a flag's signer wins over the spec's", func(t *testing.T) {
		if c := (pipeline.SignerConfig{Keyless: true}).OrSpec(sp); c.Key != "" || !c.Keyless {
			t.Errorf("OrSpec = %+v, want keyless only", c)
		}
	})
	t.Run("none, or both, is refused", func(t *testing.T) {
		for _, c := range []pipeline.SignerConfig{{}, {Key: "k", Keyless: true}, pipeline.SignerConfig{}.OrSpec(nil)} {
			if _, err := pipeline.Signer(c); !errors.Is(err, pipeline.ErrNoSigner) {
				t.Errorf("Signer(%+v) = %v, want ErrNoSigner", c, err)
			}
		}
	})
	t.Run("a key without a password names the key", func(t *testing.T) {
		t.Setenv(sign.EnvKeyPassword, "")
		os.Unsetenv(sign.EnvKeyPassword)
		t.Setenv(sign.EnvCosignPassword, "")
		os.Unsetenv(sign.EnvCosignPassword)
		_, err := pipeline.Signer(pipeline.SignerConfig{Key: "/k/cosign.key"})
		if !errors.Is(err, sign.ErrNoPassword) {
			t.Fatalf("Signer = %v, want ErrNoPassword", err)
		}
		if want := "/k/cosign.key"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	})
	t.Run("the password comes from the environment, and the signature verifies", func(t *testing.T) {
		const password = "pipeline-signer-test"
		keys := ocitest.NewKeys(t, password)
		t.Setenv(sign.EnvKeyPassword, password)
		src, err := pipeline.Signer(pipeline.SignerConfig{Key: keys.PrivPath})
		if err != nil {
			t.Fatal(err)
		}
		repo := ocitest.Registry(t) + "/models/signer"
		d := ocitest.PushModel(t, repo, "v1", "signer", "1.0.0", 256, 1)
		ref := repo + "@" + d.String()
		if _, err := sign.Sign(t.Context(), ref, src); err != nil {
			t.Fatal(err)
		}
		if _, err := sign.Verify(t.Context(), ref, sign.VerifyPolicy{KeyPath: keys.PubPath}); err != nil {
			t.Errorf("verify with the key's public half: %v", err)
		}
	})
}
