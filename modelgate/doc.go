// Package modelgate decides whether a trained model may ship: PASS, FAIL or
// INCONCLUSIVE, on evidence rather than single numbers. It is pure: no
// network and no files except through its arguments.
//
// The gate (Evaluate) runs every check of a Policy (the gate: block of
// modelci.yaml) on metrics.json v1 and reports them all:
//
//   - threshold: a confidence interval for the mean per-example loss
//     (eval.per_example), by Student t, the BCa bootstrap (method:
//     bootstrap) or the percentile bootstrap (method: percentile). PASS
//     when the whole interval is on the good side of the threshold, FAIL
//     when it is wholly on the bad side, INCONCLUSIVE when it contains it.
//   - baseline: with a champion's metrics on the same test split, the
//     same rule on the mean paired regression (candidate − champion per
//     example, oriented so that positive is worse) against max_regression,
//     absolute or relative to |champion mean|; the paired t-test and the
//     Wilcoxon signed-rank test are reported with their p-values.
//   - health: every loss finite; the final training loss at most
//     max_divergence × the minimum training loss; the generalisation gap
//     relative to the final training loss, (eval − train)/|train|, at most
//     max_gap.
//
// The overall verdict is FAIL if any check fails, else INCONCLUSIVE if any
// is, else PASS; Report.Decision says whether that releases, holds or refuses the model under the
// policy's on_inconclusive. AnalyzeCanary applies the same three verdicts
// to live traffic (error rates, latency histograms). ParseVersion, Greater,
// Tag and CheckConstraint are the model-version rules.
package modelgate
