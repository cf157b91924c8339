package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/sign"
)

func TestRunSignsAndAttests(t *testing.T) {
	reg := newCountingRegistry(t)
	const password = "correct horse battery staple"
	priv, pub, err := sign.GenerateKeys([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	dir := project(t, func(s string) string { return s + "sign:\n  key: cosign.key\n" })
	os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600)
	t.Setenv("MODELCI_KEY_PASSWORD", password)
	bin := serverRuntime(t)

	res, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", bin), pipeline.WithRepository(reg.repo()))
	if err != nil {
		t.Fatal(err)
	}
	s := res.Record.Outputs.Sign
	if s == nil || s.Signature == "" || s.GateAttestation == "" || s.ProvenanceAttestation == "" || s.Metrics == "" {
		t.Fatalf("record sign = %+v", s)
	}
	v, err := sign.Verify(context.Background(), res.Ref, sign.VerifyPolicy{Key: pub, RequireGate: true, RequireProvenance: true})
	if err != nil {
		t.Fatalf("verify %s: %v", res.Ref, err)
	}
	if v.Verdict != modelgate.Pass || v.Model.Name != "diabetes" || v.Model.Version != "1.0.0" {
		t.Fatalf("verification %+v", v)
	}
	// The gate attestation names the spec's gate policy; the provenance
	// carries the smoke test as a byproduct.
	sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.Verify(context.Background(), res.Ref, sign.VerifyPolicy{Key: pub, RequireGate: true, GatePolicyDigest: sp.Gate.Digest()}); err != nil {
		t.Fatalf("verify under the spec's gate policy: %v", err)
	}
	sts, err := sign.VerifiedStatements(context.Background(), res.Ref, sign.ProvenancePredicateType, sign.VerifyPolicy{Key: pub})
	if err != nil || len(sts) != 1 {
		t.Fatalf("provenance statements: %d, %v", len(sts), err)
	}
	var prov sign.Provenance
	if err := json.Unmarshal(sts[0].Predicate, &prov); err != nil {
		t.Fatal(err)
	}
	if bp := prov.RunDetails.Byproducts; len(bp) != 1 || bp[0].Name != "smoke-test" || bp[0].Annotations["compared"] != true || bp[0].Annotations["kind"] != "served" {
		t.Fatalf("provenance byproducts %+v, want the smoke test", bp)
	}
	m, err := sign.FetchMetrics(context.Background(), res.Ref, sign.VerifyPolicy{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if m.Split.TestDigest != res.Record.Inputs.Split.TestDigest {
		t.Fatalf("fetched metrics split %s, run %s", m.Split.TestDigest, res.Record.Inputs.Split.TestDigest)
	}
	// The password is nowhere in what the run wrote.
	filepath.Walk(res.RunDir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(path)
			if strings.Contains(string(b), password) {
				t.Errorf("%s contains the key password", path)
			}
		}
		return nil
	})
}

func TestSignNeedsARegistry(t *testing.T) {
	dir := project(t, func(s string) string { return s + "sign:\n  key: cosign.key\n" })
	if _, err := runProject(t, dir); !errors.Is(err, pipeline.ErrNeedsRegistry) {
		t.Fatalf("err = %v, want ErrNeedsRegistry", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".modelci", "runs")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused run wrote a run directory")
	}
}

func TestSignWithoutPasswordFailsBeforePushing(t *testing.T) {
	reg := newCountingRegistry(t)
	dir := project(t, func(s string) string { return s + "sign:\n  key: cosign.key\n" })
	priv, _, err := sign.GenerateKeys([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cosign.key"), priv, 0o600)
	for _, v := range []string{"MODELCI_KEY_PASSWORD", "COSIGN_PASSWORD"} {
		t.Setenv(v, "") // restored after the test
		os.Unsetenv(v)
	}
	_, err = runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)), pipeline.WithRepository(reg.repo()))
	if !errors.Is(err, sign.ErrNoPassword) {
		t.Fatalf("err = %v, want ErrNoPassword", err)
	}
	// A wrong password is refused before anything is pushed.
	t.Setenv("MODELCI_KEY_PASSWORD", "not it")
	_, err = runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)), pipeline.WithRepository(reg.repo()))
	if err == nil || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("err = %v, want a wrong-password error", err)
	}
	if n := reg.take(); n != 0 {
		t.Fatalf("%d blobs pushed before the key was opened", n)
	}
}
