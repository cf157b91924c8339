package modelgate

import "errors"

// Sentinel errors, wrapped with details; callers act on them with errors.Is.
var (
	// Metrics (metrics.json v1).
	ErrMetricsSchema   = errors.New("not a metrics.json v1 document")
	ErrNonFinite       = errors.New("value is NaN or infinite")
	ErrEmptyPerExample = errors.New("no per-example values")
	ErrEmptyTrainLoss  = errors.New("no training losses")
	ErrLossMismatch    = errors.New("eval.loss is not the mean of eval.per_example")
	ErrRowsMismatch    = errors.New("split.test_rows is not the number of per-example values")

	// Policy (the gate: block).
	ErrInvalidPolicy    = errors.New("invalid gate policy")
	ErrMissingThreshold = errors.New("gate threshold is missing")
	ErrConfidence       = errors.New("confidence must be between 0 and 1, exclusive")

	// Comparisons with a baseline.
	ErrSplitMismatch  = errors.New("test splits differ (split.test_digest)")
	ErrLengthMismatch = errors.New("per-example lengths differ")

	// Samples.
	ErrTooFewValues = errors.New("too few values")

	// ErrNoData is missing live data (no requests, no histogram): distinct
	// from data that fails a check.
	ErrNoData = errors.New("no data")
	// ErrInvalidCounts is a count that cannot be (more errors than requests, a falling histogram).
	ErrInvalidCounts = errors.New("inconsistent counts")

	// ErrPlotFormat is a plot format other than png or svg.
	ErrPlotFormat = errors.New("plot format must be png or svg")

	// Versions.
	ErrInvalidVersion    = errors.New("not a semantic version (MAJOR.MINOR.PATCH, no leading v)")
	ErrInvalidConstraint = errors.New("invalid version constraint")
	ErrConstraint        = errors.New("version does not satisfy the constraint")
)
