package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/sign"
)

func mustDigest(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

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
	// The ModelPack artifact is pushed beside the image, by digest: signed,
	// attested (the same gate verdict and provenance) and with the metrics,
	// its subject the image; the runtime image is signed.
	push := res.Record.Outputs.Push
	mp := res.Record.Outputs.ModelPack
	if push.ModelPack != reg.repo()+"@"+mp.Digest || push.Runtime != reg.repo()+"@"+res.Record.Outputs.Runtime.Digest {
		t.Fatalf("pushed modelpack %q, runtime %q; built %s, %s", push.ModelPack, push.Runtime, mp.Digest, res.Record.Outputs.Runtime.Digest)
	}
	if s.ModelPack == nil || s.ModelPack.Signature == "" || s.ModelPack.GateAttestation == "" || s.ModelPack.ProvenanceAttestation == "" || s.ModelPack.Metrics == "" || s.RuntimeSignature == "" {
		t.Fatalf("record sign = %+v, modelpack %+v", s, s.ModelPack)
	}
	mv, err := sign.Verify(context.Background(), push.ModelPack, sign.VerifyPolicy{Key: pub, RequireGate: true, RequireProvenance: true, GatePolicyDigest: sp.Gate.Digest()})
	if err != nil {
		t.Fatalf("verify the modelpack %s: %v", push.ModelPack, err)
	}
	if mv.Verdict != modelgate.Pass || mv.Model != v.Model {
		t.Fatalf("modelpack verification %+v", mv)
	}
	if mm, err := sign.FetchMetrics(context.Background(), push.ModelPack, sign.VerifyPolicy{Key: pub}); err != nil || mm.Split.TestDigest != m.Split.TestDigest {
		t.Fatalf("the modelpack's metrics: %v", err)
	}
	if _, err := sign.Verify(context.Background(), push.Runtime, sign.VerifyPolicy{Key: pub}); err != nil {
		t.Fatalf("verify the runtime image %s: %v", push.Runtime, err)
	}
	if _, err := sign.Verify(context.Background(), push.Runtime, sign.VerifyPolicy{Key: pub, RequireGate: true}); !errors.Is(err, sign.ErrRefused) {
		t.Fatalf("the runtime image passed a gate: %v", err)
	}
	desc, err := remote.Get(mustDigest(t, push.ModelPack))
	if err != nil {
		t.Fatal(err)
	}
	var am struct {
		ArtifactType string            `json:"artifactType"`
		Subject      *v1.Descriptor    `json:"subject"`
		Layers       []v1.Descriptor   `json:"layers"`
		Annotations  map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(desc.Manifest, &am); err != nil {
		t.Fatal(err)
	}
	if am.ArtifactType != image.ArtifactTypeModelPack || am.Subject == nil || am.Subject.Digest.String() != push.Digest || am.Annotations[image.AnnotationImageDigest] != push.Digest {
		t.Fatalf("pushed modelpack: artifactType %s, subject %+v, annotations %v", am.ArtifactType, am.Subject, am.Annotations)
	}
	for i, l := range am.Layers {
		if want := res.Record.Outputs.Model.Layers[i].Digest; l.Digest.String() != want {
			t.Errorf("modelpack layer %d: %s; the image's model layer is %s", i, l.Digest, want)
		}
	}
	// It is a referrer of the image (the registry's referrers API, or the
	// tag scheme go-containerregistry falls back to), beside the metrics.
	refs, err := remote.Referrers(mustDigest(t, push.Ref))
	if err != nil {
		t.Fatal(err)
	}
	rm, err := refs.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var packs []string
	for _, d := range rm.Manifests {
		if d.ArtifactType == image.ArtifactTypeModelPack {
			packs = append(packs, d.Digest.String())
		}
	}
	if len(packs) != 1 || packs[0] != mp.Digest {
		t.Fatalf("ModelPack referrers of the image: %v; want %s", packs, mp.Digest)
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
