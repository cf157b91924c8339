package sign_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

// TestCosignCLI checks what modelci writes against the cosign command-line
// tool, and the other way round. It runs when MODELCI_COSIGN_CLI names the
// binary that tools/cosign/build.sh builds.
func TestCosignCLI(t *testing.T) {
	bin := os.Getenv("MODELCI_COSIGN_CLI")
	if bin == "" {
		t.Skip("MODELCI_COSIGN_CLI is not set (tools/cosign/build.sh builds the cosign CLI)")
	}
	r := newRegistry(t)
	k := newKeyPair(t)
	home := t.TempDir()
	cosign := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(ctx(t), bin, args...)
		cmd.Dir = home
		// No network: a private HOME and TUF cache, and no ambient identity.
		cmd.Env = []string{"HOME=" + home, "TUF_ROOT=" + filepath.Join(home, "tuf"), "COSIGN_PASSWORD=" + testPassword, "PATH=" + os.Getenv("PATH")}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	ref := pushModel(t, r, "compat", "m", "1.0.0")
	if _, err := sign.Sign(ctx(t), ref, k.source()); err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Attest(ctx(t), ref, modelgate.GatePredicateType, gate("m", "1.0.0", modelgate.Pass), k.source()); err != nil {
		t.Fatal(err)
	}

	t.Run("cosign verifies modelci's signature", func(t *testing.T) {
		if out, err := cosign(t, "verify", "--key", k.pubPath, "--insecure-ignore-tlog=true", "--allow-insecure-registry", ref); err != nil {
			t.Fatalf("cosign verify: %v\n%s", err, out)
		}
	})
	t.Run("cosign verifies modelci's gate attestation", func(t *testing.T) {
		out, err := cosign(t, "verify-attestation", "--type", modelgate.GatePredicateType, "--key", k.pubPath,
			"--insecure-ignore-tlog=true", "--allow-insecure-registry", ref)
		if err != nil {
			t.Fatalf("cosign verify-attestation: %v\n%s", err, out)
		}
		if !bytes.Contains([]byte(out), []byte(`"payloadType":"application/vnd.in-toto+json"`)) {
			t.Errorf("cosign verify-attestation printed no in-toto envelope:\n%s", out)
		}
	})
	t.Run("cosign refuses an unsigned image", func(t *testing.T) {
		unsigned := pushModel(t, r, "compat", "m", "1.0.1")
		if out, err := cosign(t, "verify", "--key", k.pubPath, "--insecure-ignore-tlog=true", "--allow-insecure-registry", unsigned); err == nil {
			t.Fatalf("cosign verified an unsigned image:\n%s", out)
		}
	})
	t.Run("modelci verifies cosign's signature with cosign's key", func(t *testing.T) {
		if out, err := cosign(t, "generate-key-pair"); err != nil {
			t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
		}
		other := pushModel(t, r, "compat", "m", "2.0.0")
		if out, err := cosign(t, "sign", "--key", filepath.Join(home, "cosign.key"), "--tlog-upload=false",
			"--allow-insecure-registry", "--yes", other); err != nil {
			t.Fatalf("cosign sign: %v\n%s", err, out)
		}
		pub, err := os.ReadFile(filepath.Join(home, "cosign.pub"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sign.Verify(ctx(t), other, sign.VerifyPolicy{Key: pub}); err != nil {
			t.Fatalf("modelci verify of cosign's signature: %v", err)
		}
		// And modelci signs with the key cosign generated.
		third := pushModel(t, r, "compat", "m", "3.0.0")
		if _, err := sign.Sign(ctx(t), third, sign.KeyFile(filepath.Join(home, "cosign.key"), []byte(testPassword))); err != nil {
			t.Fatalf("modelci sign with cosign's key: %v", err)
		}
		if out, err := cosign(t, "verify", "--key", filepath.Join(home, "cosign.pub"), "--insecure-ignore-tlog=true", "--allow-insecure-registry", third); err != nil {
			t.Fatalf("cosign verify: %v\n%s", err, out)
		}
	})
}
