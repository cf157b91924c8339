// Package ghactions writes modelci's results the way GitHub Actions shows
// them: the job summary ($GITHUB_STEP_SUMMARY), step outputs
// ($GITHUB_OUTPUT), annotations (workflow commands) and the pull-request
// comment that carries the gate report and the loss curve.
//
// The writers act only when modelci runs directly on a runner: inside a
// Dagger function's container those files do not exist, so the module
// returns the same Markdown and values and a workflow step writes them.
// The renderers (PRComment, JobSummary, LossChart) are pure.
package ghactions
