package modelgate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// GatePredicateType is the in-toto predicate type of the gate attestation.
const GatePredicateType = "https://modelci.dev/attestations/gate/v1"

// ModelRef names the gated model.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// DatasetRef identifies the data the model was trained and evaluated on.
type DatasetRef struct {
	Digest       string  `json:"digest"`
	Rows         int     `json:"rows"`
	TestDigest   string  `json:"test_digest"`
	TestRows     int     `json:"test_rows"`
	Seed         int64   `json:"seed"`
	TestFraction float64 `json:"test_fraction"`
}

// GatePredicate is the predicate of the gate attestation (ARCHITECTURE.md,
// "Attestations"): the policy, a summary of the metrics, every check, the
// verdict, the dataset and split digests, the baseline's digest and the
// model's name and version.
type GatePredicate struct {
	Model   ModelRef       `json:"model"`
	Verdict Verdict        `json:"verdict"`
	Policy  Policy         `json:"policy"`
	Metrics MetricsSummary `json:"metrics"`
	Dataset DatasetRef     `json:"dataset"`
	// BaselineDigest is the digest of the champion's metrics (empty without
	// a baseline).
	BaselineDigest string  `json:"baseline_digest"`
	Checks         []Check `json:"checks"`
	// PolicyDigest is Policy.Digest(): what `verify --policy` and a spec's
	// deploy, promote and rollback require the attestation to be made under.
	PolicyDigest string `json:"policy_digest,omitempty"`
	// Time is when the run that gated began; among several gate
	// attestations of one image, the newest decides.
	Time time.Time `json:"time,omitzero"`
}

// NewGatePredicate assembles the attestation predicate for a report of the
// run that began at.
func NewGatePredicate(r *Report, p Policy, m *Metrics, model ModelRef, baselineDigest string, at time.Time) GatePredicate {
	p.ApplyDefaults()
	return GatePredicate{
		PolicyDigest: p.Digest(),
		Time:         at.UTC(),
		Model:        model,
		Verdict:      r.Verdict,
		Policy:       p,
		Metrics:      Summarize(m),
		Dataset: DatasetRef{
			Digest:       m.Dataset.Digest,
			Rows:         m.Dataset.Rows,
			TestDigest:   m.Split.TestDigest,
			TestRows:     m.Split.TestRows,
			Seed:         m.Split.Seed,
			TestFraction: m.Split.TestFraction,
		},
		BaselineDigest: baselineDigest,
		Checks:         r.Checks,
	}
}

// Digest is the sha256 of the policy's JSON with every default applied, so
// that an explicit default and an absent key give the same digest. It
// leaves out baseline.metrics, a local path: the champion's content is
// bound by the predicate's baseline_digest instead.
func (p Policy) Digest() string {
	p.ApplyDefaults()
	p.Normalize()
	p.Baseline.Metrics = ""
	b, err := json.Marshal(p)
	if err != nil {
		// A Policy is plain data: only a non-finite number fails, and
		// Validate refuses those.
		panic("modelgate: encode policy: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
