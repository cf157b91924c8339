package sign_test

import (
	"encoding/json"
	"testing"

	"github.com/modelci/modelci/stages/sign"
)

// TestStatements: appended statements by two signers are all listed by
// Statements, and only the verifying signer's by VerifiedStatements; other
// predicate types are left out.
func TestStatements(t *testing.T) {
	r := newRegistry(t)
	a, b := newKeyPair(t), newKeyPair(t)
	ref := pushModel(t, r, "m", "m", "1.0.0")
	const typ = "https://example.test/promotion/v1"

	if got, err := sign.Statements(ctx(t), ref, typ); err != nil || len(got) != 0 {
		t.Fatalf("Statements before any attestation = %v, %v; want none", got, err)
	}
	if got, err := sign.VerifiedStatements(ctx(t), ref, typ, sign.VerifyPolicy{Key: a.pub}); err != nil || len(got) != 0 {
		t.Fatalf("VerifiedStatements before any attestation = %v, %v; want none", got, err)
	}
	for i, k := range []keyPair{a, b, a} {
		pred := map[string]int{"n": i}
		if _, err := sign.Attest(ctx(t), ref, typ, pred, k.source(), sign.WithAppend()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sign.Attest(ctx(t), ref, sign.ProvenancePredicateType, provenance(t, "m", "1.0.0"), a.source()); err != nil {
		t.Fatal(err)
	}
	n := func(sts []sign.Statement) []int {
		var out []int
		for _, st := range sts {
			var p struct{ N int }
			if err := json.Unmarshal(st.Predicate, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p.N)
		}
		return out
	}
	all, err := sign.Statements(ctx(t), ref, typ)
	if err != nil {
		t.Fatal(err)
	}
	if got := n(all); len(got) != 3 {
		t.Fatalf("Statements = %v, want the three promotions", got)
	}
	byA, err := sign.VerifiedStatements(ctx(t), ref, typ, sign.VerifyPolicy{Key: a.pub})
	if err != nil {
		t.Fatal(err)
	}
	if got := n(byA); len(got) != 2 || got[0]+got[1] != 2 {
		t.Fatalf("VerifiedStatements by a = %v, want [0 2] in some order", got)
	}
	other := newKeyPair(t)
	if got, err := sign.VerifiedStatements(ctx(t), ref, typ, sign.VerifyPolicy{Key: other.pub}); err != nil || len(got) != 0 {
		t.Fatalf("VerifiedStatements by a stranger = %v, %v; want none", n(got), err)
	}
}
