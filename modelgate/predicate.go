package modelgate

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
}

// NewGatePredicate assembles the attestation predicate for a report.
func NewGatePredicate(r *Report, p Policy, m *Metrics, model ModelRef, baselineDigest string) GatePredicate {
	p.ApplyDefaults()
	return GatePredicate{
		Model:   model,
		Verdict: r.Verdict,
		Policy:  p,
		Metrics: Summarize(m),
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
