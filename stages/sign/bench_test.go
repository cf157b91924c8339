package sign_test

import (
	"testing"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/sign"
)

// The benchmarks sign, attest and verify one image against the in-process
// registry with a decrypted key (go test -bench . -benchtime 20x).

func BenchmarkSign(b *testing.B) {
	r := newRegistry(b)
	k := newKeyPair(b)
	// A fresh image per signature: signing one image again appends to its
	// .sig image, which would grow with b.N.
	refs := make([]string, b.N)
	for i := range refs {
		refs[i] = pushModel(b, r, "bench", "m", "1.0.0")
	}
	if _, err := sign.Sign(ctx(b), refs[0], k.source()); err != nil { // decrypt the key outside the timing
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := sign.Sign(ctx(b), refs[i], k.source()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAttest(b *testing.B) {
	r := newRegistry(b)
	k := newKeyPair(b)
	ref := pushModel(b, r, "bench", "m", "1.0.0")
	g := gate("m", "1.0.0", modelgate.Pass)
	if _, err := sign.Attest(ctx(b), ref, modelgate.GatePredicateType, g, k.source()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	// Attest replaces the gate attestation, so the .att image stays one layer.
	for i := 0; i < b.N; i++ {
		if _, err := sign.Attest(ctx(b), ref, modelgate.GatePredicateType, g, k.source()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	r := newRegistry(b)
	k := newKeyPair(b)
	ref := pushModel(b, r, "bench", "m", "1.0.0")
	if _, err := sign.Sign(ctx(b), ref, k.source()); err != nil {
		b.Fatal(err)
	}
	if _, err := sign.Attest(ctx(b), ref, modelgate.GatePredicateType, gate("m", "1.0.0", modelgate.Pass), k.source()); err != nil {
		b.Fatal(err)
	}
	if _, err := sign.Attest(ctx(b), ref, sign.ProvenancePredicateType, provenance(b, "m", "1.0.0"), k.source()); err != nil {
		b.Fatal(err)
	}
	p := sign.VerifyPolicy{Key: k.pub, RequireGate: true, RequireProvenance: true}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := sign.Verify(ctx(b), ref, p); err != nil {
			b.Fatal(err)
		}
	}
}
