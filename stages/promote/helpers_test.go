package promote_test

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/modelci/modelci/internal/ocitest"
	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/promote"
	modelcireg "github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/sign"
)

const testPassword = "promote-test-password"

func newRegistry(t testing.TB) string { return ocitest.Registry(t) }

type keyPair struct {
	pub     []byte
	pubPath string
	src     sign.SignerSource
}

func newKeyPair(t testing.TB) keyPair {
	k := ocitest.NewKeys(t, testPassword)
	return keyPair{pub: k.Pub, pubPath: k.PubPath, src: k.Signer}
}

// world is a staging and a prod repository on two registries, a signing key
// and an in-memory target cluster.
type world struct {
	staging, prod promote.Environment
	key           keyPair
	cluster       *memCluster
}

func newWorld(t testing.TB) *world {
	t.Helper()
	return &world{
		staging: promote.Environment{Name: "staging", Repository: newRegistry(t) + "/staging/diabetes"},
		prod:    promote.Environment{Name: "prod", Repository: newRegistry(t) + "/prod/diabetes", Constraint: ">= 1.0, < 2.0", Strategy: "rolling"},
		key:     newKeyPair(t),
		cluster: newMemCluster(),
	}
}

// publish pushes model@version to staging as modelci run does: tagged with
// the version, signed, with a gate attestation of verdict (none when
// verdict is empty) and the metrics artifact.
func (w *world) publish(t testing.TB, version string, verdict modelgate.Verdict, signed bool) string {
	t.Helper()
	return ocitest.Publish(t, w.staging.Repository, "diabetes", version, ocitest.Keys{Signer: w.key.src},
		ocitest.Published{Verdict: verdict, Unsigned: !signed, Metrics: true})
}

func (w *world) in(version string) promote.In {
	return promote.In{
		Name: "diabetes", Version: version, From: w.staging, To: w.prod, Cluster: w.cluster,
		Verify: sign.VerifyPolicy{KeyPath: w.key.pubPath}, Signer: w.key.src,
		Who: "tester", Reason: "release " + version,
	}
}

// prodTags lists the prod repository's tags.
func (w *world) prodTags(t testing.TB) []string {
	t.Helper()
	tags, err := modelcireg.ListTags(t.Context(), w.prod.Repository)
	if err != nil {
		t.Fatal(err)
	}
	return tags
}

// promotions returns the promotion predicates attested to ref and verified
// with the key, read through cosign itself rather than our own code.
func promotions(t testing.TB, ref string, pub []byte) []promote.Predicate {
	t.Helper()
	pk, err := cryptoutils.UnmarshalPEMToPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadVerifier(pk, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.NewDigest(ref)
	if err != nil {
		t.Fatal(err)
	}
	atts, _, err := cosign.VerifyImageAttestations(t.Context(), d, &cosign.CheckOpts{SigVerifier: sv, IgnoreTlog: true, IgnoreSCT: true})
	if err != nil {
		t.Fatalf("verify attestations of %s: %v", ref, err)
	}
	var out []promote.Predicate
	for _, a := range atts {
		payload, err := a.Payload()
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(payload, &env); err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			PredicateType string            `json:"predicateType"`
			Predicate     promote.Predicate `json:"predicate"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		if st.PredicateType == promote.PredicateType {
			out = append(out, st.Predicate)
		}
	}
	return out
}

// memCluster is the target cluster in memory: a lease that refuses a second
// holder, the serving release and the deployed history. Deploy blocks while
// gate is set, so a test can hold the lease at a known point.
type memCluster struct {
	mu       sync.Mutex
	holder   string
	current  promote.Release
	deployed []promote.Release
	gate     chan struct{}
	entered  chan struct{}
}

func newMemCluster() *memCluster { return &memCluster{} }

func (c *memCluster) Lock(_ context.Context, app, who string) (promote.Locked, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holder != "" {
		return nil, fmt.Errorf("app %s: %w: held by %s", app, promote.ErrConflict, c.holder)
	}
	c.holder = who
	return &memLocked{c: c}, nil
}

func (c *memCluster) snapshot() (promote.Release, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current, len(c.deployed)
}

type memLocked struct{ c *memCluster }

func (l *memLocked) Current(context.Context) (promote.Release, error) {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.c.current, nil
}

func (l *memLocked) Deploy(ctx context.Context, rel promote.Release, _ string) error {
	if l.c.gate != nil {
		close(l.c.entered)
		select {
		case <-l.c.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.c.current = rel
	l.c.deployed = append(l.c.deployed, rel)
	return nil
}

func (l *memLocked) Unlock() {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	l.c.holder = ""
}
