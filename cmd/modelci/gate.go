package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/spec"
)

func newGateCmd() *cobra.Command {
	var metricsPath, baselinePath, policyPath, dir, plotPath string
	out := outputOptions{formats: formatsGate}
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "Decide PASS, FAIL or INCONCLUSIVE for a model's metrics",
		Long: `Evaluate the gate policy on metrics.json v1: the threshold on the mean eval
loss decided on its confidence interval, the paired comparison with a
champion's metrics (--baseline, or gate.baseline.metrics), and the training
health checks. The policy is --policy FILE (the content of a gate: block) or
the gate: block of DIR/modelci.yaml. Relative paths are relative to DIR.
The report goes to stdout; exit 0 PASS, 3 FAIL (or INCONCLUSIVE under
on_inconclusive: fail), 4 INCONCLUSIVE held for approval.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if metricsPath == "" {
				return usageError(errors.New("gate: --metrics is required"))
			}
			if err := out.check(); err != nil {
				return err
			}
			plotFormat := strings.TrimPrefix(filepath.Ext(plotPath), ".")
			if plotPath != "" && plotFormat != "png" && plotFormat != "svg" {
				return usageError(fmt.Errorf("gate: --plot %s: the file name must end in .png or .svg", plotPath))
			}
			policy, model, err := gatePolicy(dir, policyPath)
			if err != nil {
				return err
			}
			candidate, err := readMetrics(inDir(dir, metricsPath))
			if err != nil {
				return err
			}
			if baselinePath == "" && policy.Baseline.Metrics != "" {
				baselinePath = policy.Baseline.Metrics
			}
			if baselinePath == "" && policy.Baseline.From != "" {
				// Fetching a champion needs the cluster and registry: modelci run does it.
				return usageError(fmt.Errorf("gate: gate.baseline.from is %q, and modelci gate compares files: pass the champion's metrics.json with --baseline", policy.Baseline.From))
			}
			var baseline *modelgate.Metrics
			if baselinePath != "" {
				if baseline, err = readMetrics(inDir(dir, baselinePath)); err != nil {
					return err
				}
			}
			report, err := modelgate.Evaluate(policy, candidate, baseline)
			if err != nil {
				return err
			}
			var b []byte
			switch out.format {
			case "json":
				if b, err = report.JSON(); err != nil {
					return err
				}
			case "markdown":
				b = []byte(report.Markdown())
			default:
				b = []byte(report.Text())
			}
			if _, err := cmd.OutOrStdout().Write(b); err != nil {
				return fmt.Errorf("gate: writing the report: %w", err)
			}
			if plotPath != "" {
				opts := []modelgate.PlotOption{modelgate.WithModel(model.Name, model.Version)}
				if baseline != nil {
					opts = append(opts, modelgate.WithChampion(baseline))
				}
				b, err := modelgate.PlotLoss(candidate, report, plotFormat, opts...)
				if err != nil {
					return err
				}
				if err := os.WriteFile(inDir(dir, plotPath), b, 0o644); err != nil {
					return fmt.Errorf("gate: writing the plot: %w", err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", inDir(dir, plotPath))
			}
			if err := reportToGitHub(report, candidate, map[string]string{"model": model.Name}); err != nil {
				return fmt.Errorf("gate: report to GitHub Actions: %w", err)
			}
			return decisionError(report.Decision(), report.Verdict, "refused")
		},
	}
	f := cmd.Flags()
	f.StringVar(&metricsPath, "metrics", "", "the candidate's metrics.json (required)")
	f.StringVar(&baselinePath, "baseline", "", "the champion's metrics.json for the paired comparison (default gate.baseline.metrics)")
	f.StringVar(&policyPath, "policy", "", "a file with the content of a gate: block (default the gate: block of DIR/modelci.yaml)")
	f.StringVarP(&dir, "dir", "C", ".", "project directory; relative paths are relative to it")
	out.AddFlags(cmd, "report format: text, json or markdown")
	f.StringVar(&plotPath, "plot", "", "also write the loss plot (train curve, eval loss and interval, threshold, champion) to FILE.png or FILE.svg")
	must(cmd.MarkFlagFilename("plot", "png", "svg"))
	return cmd
}

// gatePolicy reads --policy, or the gate: block of DIR/modelci.yaml, and
// the model's name and version from the spec (for GitHub's comment marker
// and the plot's title; empty with --policy).
func gatePolicy(dir, policyPath string) (modelgate.Policy, spec.ModelSpec, error) {
	if policyPath == "" {
		sp, err := loadSpec(dir, "")
		if err != nil {
			return modelgate.Policy{}, spec.ModelSpec{}, err
		}
		return sp.Gate, sp.Model, nil
	}
	p, err := gatePolicyFile(dir, policyPath)
	return p, spec.ModelSpec{}, err
}

func gatePolicyFile(dir, policyPath string) (modelgate.Policy, error) {
	path := inDir(dir, policyPath)
	b, err := os.ReadFile(path)
	if err != nil {
		return modelgate.Policy{}, fmt.Errorf("gate: reading the policy: %w", err)
	}
	p, err := modelgate.DecodePolicy(path, b)
	if err != nil {
		return modelgate.Policy{}, err
	}
	return p, nil
}

func readMetrics(path string) (*modelgate.Metrics, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gate: reading metrics: %w", err)
	}
	m, err := modelgate.DecodeMetrics(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// inDir resolves a relative path against the -C directory, as make -C does.
func inDir(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}
