package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/internal/ocitest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

// pushTestModel pushes a random model image to an in-process registry and
// returns it by digest.
func pushTestModel(t *testing.T, version string) string {
	t.Helper()
	repo := ocitest.Registry(t) + "/m"
	return repo + "@" + ocitest.PushModel(t, repo, version, "m", version, 256, 1).String()
}

func TestKeygenSignVerify(t *testing.T) {
	t.Setenv(sign.EnvKeyPassword, "cli-test-password")
	t.Setenv(sign.EnvCosignPassword, "")
	prefix := filepath.Join(t.TempDir(), "release")

	code, stdout, stderr := run(t, "keygen", "--output-key-prefix", prefix)
	if code != 0 || stdout != prefix+".key\n"+prefix+".pub\n" {
		t.Fatalf("keygen: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	if code, _, stderr := run(t, "keygen", "--output-key-prefix", prefix); code != 1 || !strings.Contains(stderr, "refusing to overwrite") {
		t.Errorf("second keygen: exit %d, want 1 refusing to overwrite:\n%s", code, stderr)
	}

	ref := pushTestModel(t, "1.0.0")
	code, stdout, stderr = run(t, "sign", ref, "--key", prefix+".key", "--run-id", "r1")
	if code != 0 || strings.TrimSpace(stdout) != ref {
		t.Fatalf("sign: exit %d, stdout %q\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = run(t, "verify", ref, "--key", prefix+".pub", "--require-gate=false")
	if code != 0 || strings.TrimSpace(stdout) != ref || !strings.Contains(stderr, "ok   signature:") {
		t.Fatalf("verify: exit %d, stdout %q\n%s", code, stdout, stderr)
	}

	// Without a gate attestation verify refuses by default, as deploy does:
	// exit 3, and the JSON lists the failed check.
	code, stdout, stderr = run(t, "verify", ref, "--key", prefix+".pub", "-o", "json")
	var v sign.Verification
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("verify -o json: %v\n%s", err, stdout)
	}
	if code != 3 || v.Verified || v.Checks[len(v.Checks)-1].Name != sign.CheckGate {
		t.Errorf("verify --require-gate: exit %d, %+v\n%s", code, v, stderr)
	}

	pw := []byte("cli-test-password")
	if _, err := sign.Attest(t.Context(), ref, modelgate.GatePredicateType,
		modelgate.GatePredicate{Model: modelgate.ModelRef{Name: "m", Version: "1.0.0"}, Verdict: modelgate.Pass},
		sign.KeyFile(prefix+".key", pw)); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "verify", ref, "--key", prefix+".pub"); code != 0 || !strings.Contains(stderr, "ok   gate-verdict: gate verdict PASS") {
		t.Errorf("verify --require-gate after attesting PASS: exit %d\n%s", code, stderr)
	}

	// --policy FILE and --spec FILE require an attestation made under that gate.
	policy := filepath.Join(t.TempDir(), "gate.yaml")
	if err := os.WriteFile(policy, []byte("threshold: 4000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "verify", ref, "--key", prefix+".pub", "--policy", policy); code != 3 || !strings.Contains(stderr, "FAIL gate-policy") {
		t.Errorf("verify --policy of an attestation made under no policy: exit %d, want 3\n%s", code, stderr)
	}
	gp, err := modelgate.DecodePolicy(policy, []byte("threshold: 4000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Attest(t.Context(), ref, modelgate.GatePredicateType,
		modelgate.GatePredicate{Model: modelgate.ModelRef{Name: "m", Version: "1.0.0"}, Verdict: modelgate.Pass, Policy: gp, PolicyDigest: gp.Digest()},
		sign.KeyFile(prefix+".key", pw)); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "verify", ref, "--key", prefix+".pub", "--policy", policy); code != 0 || !strings.Contains(stderr, "ok   gate-policy") {
		t.Errorf("verify --policy of an attestation made under it: exit %d\n%s", code, stderr)
	}
	dir := example(t, nil)
	if code, _, stderr := run(t, "verify", ref, "--key", prefix+".pub", "--spec", filepath.Join(dir, "modelci.yaml")); code != 3 || !strings.Contains(stderr, gp.Digest()) {
		t.Errorf("verify --spec with another gate: exit %d, want 3 naming the attested policy\n%s", code, stderr)
	}
	if code, _, stderr := run(t, "verify", ref, "--key", prefix+".pub", "--spec", filepath.Join(dir, "modelci.yaml"), "--policy", policy); code != 2 {
		t.Errorf("verify --spec --policy: exit %d, want 2\n%s", code, stderr)
	}
	for _, out := range []string{stdout, stderr} {
		if strings.Contains(out, string(pw)) {
			t.Errorf("the password appears in the output: %s", out)
		}
	}
}

func TestSignVerifyExitCodes(t *testing.T) {
	t.Setenv(sign.EnvKeyPassword, "pw")
	dir := t.TempDir()
	if code, _, stderr := run(t, "keygen", "--output-key-prefix", filepath.Join(dir, "cosign")); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}
	key, pub := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	unsigned := pushTestModel(t, "1.0.0")
	layout := "oci-layout://" + dir + "@sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"unsigned", []string{"verify", unsigned, "--key", pub}, 3, "no signatures found"},
		{"no key", []string{"verify", unsigned}, 2, "--key, or --certificate-identity"},
		{"identity without issuer", []string{"verify", unsigned, "--certificate-identity", "a@b"}, 2, "--certificate-oidc-issuer"},
		{"sign layout", []string{"sign", layout, "--key", key}, 1, "signing needs a registry reference"},
		{"verify layout", []string{"verify", layout, "--key", pub}, 1, "signing needs a registry reference"},
		{"sign without key", []string{"sign", unsigned}, 2, "exactly one of --key and --keyless"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.inStderr) {
				t.Errorf("exit %d, want %d with %q in:\n%s", code, tc.code, tc.inStderr, stderr)
			}
		})
	}

	t.Run("no password", func(t *testing.T) {
		// t.Setenv restores the variables; Unsetenv makes them absent, not empty.
		for _, k := range []string{sign.EnvKeyPassword, sign.EnvCosignPassword} {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
		code, _, stderr := run(t, "sign", unsigned, "--key", key)
		if code != 1 || !strings.Contains(stderr, "set MODELCI_KEY_PASSWORD or COSIGN_PASSWORD") {
			t.Errorf("exit %d, want 1 naming the variables:\n%s", code, stderr)
		}
	})
}
