package promote

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/sign"
)

// attestSkew is how far a deploy's recorded time may precede the
// attestation made just before it (two machines' clocks).
const attestSkew = time.Minute

// Audit adds to each deployed entry of env's history the promotion
// attestation, signed by p's signer, that brought its model into env (the
// image, or the ModelPack artifact a release mounts): the latest one made
// before the entry was recorded. Rollbacks and releases deployed without
// promote carry none. Each model's attestations are read once.
func Audit(ctx context.Context, history []deploy.Entry, env string, p sign.VerifyPolicy, opts ...sign.Option) error {
	bySubject := map[string][]Predicate{}
	for i := range history {
		e := &history[i]
		subject := e.Image
		if e.Model != "" {
			subject = e.Model
		}
		if e.Action != deploy.ActionDeploy || subject == "" {
			continue
		}
		preds, ok := bySubject[subject]
		if !ok {
			sts, err := sign.VerifiedStatements(ctx, subject, PredicateType, p, opts...)
			if err != nil {
				return fmt.Errorf("promotion attestations of revision %d (%s): %w", e.Revision, subject, err)
			}
			for _, st := range sts {
				var pr Predicate
				if json.Unmarshal(st.Predicate, &pr) == nil && pr.To.Environment == env {
					preds = append(preds, pr)
				}
			}
			bySubject[subject] = preds
		}
		var best *Predicate
		for j := range preds {
			pr := &preds[j]
			if pr.Model.Version != e.Version || pr.When.After(e.Time.Add(attestSkew)) {
				continue
			}
			if best == nil || pr.When.After(best.When) {
				best = pr
			}
		}
		if best != nil {
			e.Promotion = &deploy.Promotion{From: best.From.Environment, Who: best.Who, When: best.When, Reason: best.Reason,
				Approved: best.Approved, PreviousVersion: best.PreviousVersion}
		}
	}
	return nil
}
