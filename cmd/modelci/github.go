package main

import (
	"errors"
	"maps"
	"os"

	"github.com/modelci/modelci/ghactions"
	"github.com/modelci/modelci/modelgate"
)

// envArtifactURL overrides the link to the plot files in the job summary
// and the pull-request comment (default: the workflow run's page, which
// lists its artifacts).
const envArtifactURL = "MODELCI_ARTIFACT_URL"

// reportToGitHub writes the gate's result to the GitHub Actions step when
// modelci runs directly on a runner (GITHUB_ACTIONS=true): the job summary
// (report and loss chart), the step outputs (outputs plus verdict and
// comment, the pull-request comment body) and annotations for a gate that
// did not pass. outputs["model"] names the model (its comment marker).
// Off a runner, or where the runner's files are not set (in a container),
// it does nothing.
func reportToGitHub(r *modelgate.Report, m *modelgate.Metrics, outputs map[string]string) error {
	if !ghactions.Enabled() {
		return nil
	}
	name := outputs["model"]
	link := os.Getenv(envArtifactURL)
	if link == "" {
		link = ghactions.RunURL()
	}
	all := maps.Clone(outputs)
	if all == nil {
		all = map[string]string{}
	}
	if r != nil {
		all["verdict"] = string(r.Verdict)
	}
	all["comment"] = ghactions.PRComment(name, r, m, link)

	var errs []error
	if err := ghactions.WriteSummary(ghactions.JobSummary(name, r, m, outputs, link)); !errors.Is(err, ghactions.ErrNotSet) {
		errs = append(errs, err)
	}
	if err := ghactions.SetOutputs(all); !errors.Is(err, ghactions.ErrNotSet) {
		errs = append(errs, err)
	}
	errs = append(errs, ghactions.WriteAnnotations(os.Stderr, ghactions.GateAnnotations(name, r)...))
	return errors.Join(errs...)
}
