package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/oci"
)

// EnvStatusSchema identifies the JSON of status across environments.
const EnvStatusSchema = "modelci.dev/environments-status/v1"

// EnvStatusReport is status across the spec's environments.
type EnvStatusReport struct {
	Schema       string           `json:"schema"`
	Name         string           `json:"name"`
	Environments []EnvStatusEntry `json:"environments"`
}

// EnvStatusEntry is one environment's row: the release it serves and its health.
type EnvStatusEntry struct {
	Environment string `json:"environment"`
	Context     string `json:"context,omitempty"`
	Namespace   string `json:"namespace"`
	Version     string `json:"version,omitempty"`
	Image       string `json:"image,omitempty"`
	Digest      string `json:"digest,omitempty"`
	// Model and ModelDigest name the ModelPack artifact the release mounts
	// (model_source: volume); Image is then its runtime image.
	Model       string     `json:"model,omitempty"`
	ModelDigest string     `json:"model_digest,omitempty"`
	Verdict     string     `json:"verdict,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	// Health is healthy, degraded (ready/wanted replicas), no release, or unknown (Error says why).
	Health    string            `json:"health"`
	Workloads []deploy.Workload `json:"workloads,omitempty"`
	Error     string            `json:"error,omitempty"`
}

// EnvironmentsStatus reports app in every environment of the spec, one
// row each, from each environment's cluster (kubeconfig; kubeContext, when
// set, overrides every environment's context). An environment without a
// release is a row, not an error; one that cannot be read is a row with
// its error, and the joined errors are returned with the full report.
func EnvironmentsStatus(ctx context.Context, s *spec.Spec, app, kubeconfig, kubeContext string) (*EnvStatusReport, error) {
	out := &EnvStatusReport{Schema: EnvStatusSchema, Name: app, Environments: []EnvStatusEntry{}}
	targets := map[string]*deploy.Target{}
	var errs []error
	for _, n := range s.EnvironmentNames() {
		e, _ := s.Environment(n)
		row, err := envStatusRow(ctx, kubeconfig, kubeContext, targets, app, e)
		if err != nil {
			row.Health, row.Error = "unknown", err.Error()
			errs = append(errs, fmt.Errorf("environment %s: %w", n, err))
		}
		out.Environments = append(out.Environments, row)
	}
	return out, errors.Join(errs...)
}

func envStatusRow(ctx context.Context, kubeconfig, kubeContext string, targets map[string]*deploy.Target, app string, e spec.Environment) (EnvStatusEntry, error) {
	row := EnvStatusEntry{Environment: e.Name, Context: e.Context, Namespace: e.Namespace}
	ctxName := e.Context
	if kubeContext != "" {
		ctxName = kubeContext
	}
	if ctxName == "" {
		return row, fmt.Errorf("environments.%s.context is empty: name the kubeconfig context there or with --context", e.Name)
	}
	t, ok := targets[ctxName]
	if !ok {
		var err error
		if t, err = deploy.NewTarget(kubeconfig, ctxName); err != nil {
			return row, err
		}
		targets[ctxName] = t
	}
	row.Context = t.Context
	rep, err := t.Status(ctx, app, e.Namespace)
	if errors.Is(err, deploy.ErrNoRelease) {
		row.Health = "no release"
		return row, nil
	}
	if err != nil {
		return row, err
	}
	if c := rep.Current; c != nil {
		row.Version, row.Image, row.Verdict = c.Version, c.Image, c.Verdict
		if r, err := oci.ParseRef(c.Image); err == nil && r.HasDigest() {
			row.Digest = r.Digest().String()
		}
		if r, err := oci.ParseRef(c.Model); err == nil && c.Model != "" && r.HasDigest() {
			row.Model, row.ModelDigest = c.Model, r.Digest().String()
		}
		since := c.Time
		row.Since = &since
	}
	row.Workloads = rep.Workloads
	row.Health = envHealth(rep.Workloads)
	return row, nil
}

// envHealth is healthy when every Deployment has all its replicas available, else
// "degraded (ready/wanted)".
func envHealth(ws []deploy.Workload) string {
	var want, avail int32
	for _, w := range ws {
		want += w.Replicas
		avail += min(w.Available, w.Replicas)
	}
	if len(ws) == 0 {
		return "no workloads"
	}
	if avail == want {
		return "healthy"
	}
	return fmt.Sprintf("degraded (%d/%d ready)", avail, want)
}
