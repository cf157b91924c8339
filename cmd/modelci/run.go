package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// runSchema names `modelci run -o json`'s document.
const runSchema = "modelci.dev/run-result/v1"

// runOutput is `modelci run -o json`: one document, whatever happened. A
// run the gate refused has status succeeded, verdict FAIL and no ref; a run
// that failed (or could not start) has status failed and its error.
type runOutput struct {
	Schema   string `json:"schema"`
	RunID    string `json:"run_id"`
	Status   string `json:"status"`
	Verdict  string `json:"verdict"`
	Decision string `json:"decision"`
	// Ref is the image reference with its digest (the pushed one when a
	// repository is set); empty when nothing was built or the run failed.
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
	RunDir string `json:"run_dir,omitempty"`
	Error  string `json:"error,omitempty"`
}

func newRunOutput(res *pipeline.Result, err error) runOutput {
	o := runOutput{Schema: runSchema, Status: string(pipeline.StatusFailed)}
	if res != nil {
		o.RunID, o.RunDir = res.RunID, res.RunDir
		o.Verdict, o.Decision = string(res.Verdict), string(res.Decision)
		o.Ref = res.Ref // set only once the run succeeded
		if rec := res.Record; rec != nil {
			o.Status = string(rec.Status)
			if img := rec.Outputs.Image; img != nil {
				o.Digest = img.Digest
			}
		}
	}
	if err != nil {
		o.Error = err.Error()
	}
	return o
}

func newRunCmd() *cobra.Command {
	var dir, specFile, outputDir, repository, kubeconfig, runner, trainContext string
	var allowOverwrite, allowDowngrade bool
	var reg registryOptions
	var out outputOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Train, evaluate, gate and build the serving image",
		Long: `Run the pipeline of modelci.yaml: load and split the data, train, evaluate,
gate on the loss, and build the serving image. Progress goes to stderr; the
image reference with its digest is printed last on stdout (-o json: one JSON
document, modelci.dev/run-result/v1, with the run id, status, verdict,
decision, reference and digest, also for a refused or failed run). Exit 0
PASS, 3 refused by the gate (nothing is built), 4 INCONCLUSIVE held for
approval, 1 error, 130 after SIGINT and 143 after SIGTERM. The layout's tag
moves only when every stage succeeded; a failed run is recorded as failed
in runs/<id>/run.json and changes nothing else (see modelci runs).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			res, err := runPipeline(cmd, runInput{
				dir: dir, specFile: specFile, output: outputDir, repository: repository, kubeconfig: kubeconfig,
				runner: runner, context: trainContext,
				allowOverwrite: allowOverwrite, allowDowngrade: allowDowngrade, reg: &reg,
			})
			if out.json() {
				if perr := out.print(cmd, newRunOutput(res, err)); perr != nil {
					return perr
				}
			}
			if errors.Is(err, pipeline.ErrChampion) {
				return exitCode(exitRefused, err)
			}
			if err != nil {
				return err
			}
			if res.Ref != "" && !out.json() {
				fmt.Fprintln(cmd.OutOrStdout(), res.Ref)
			}
			return decisionError(res.Decision, res.Verdict, "refused; nothing was built")
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "C", ".", "project directory (where modelci.yaml lives)")
	cmd.Flags().StringVar(&specFile, "spec", "", "spec file (default DIR/modelci.yaml)")
	out.AddFlags(cmd, "text (the image reference) or json (one document: run id, status, verdict, reference, digest)")
	out.AddDirFlag(cmd, &outputDir, "output directory (default the spec's output:, relative to DIR)", false, false)
	cmd.Flags().StringVar(&repository, "repository", "", "push the image to HOST[:PORT]/PATH (default image.repository; empty keeps the OCI layout only)")
	cmd.Flags().BoolVar(&allowOverwrite, "allow-overwrite", false, "move a version tag the repository holds on another digest")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "publish a version that is not greater than the repository's greatest")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file for deploy.enabled, gate.baseline.from and train.runner kubernetes (default $KUBECONFIG, ~/.kube/config; the context is always named)")
	cmd.Flags().StringVar(&runner, "runner", "", "where training runs: local or kubernetes (default train.runner)")
	cmd.Flags().StringVar(&trainContext, "context", "", "kubeconfig context of the training cluster with --runner kubernetes (default train.kubernetes.context)")
	reg.AddFlags(cmd)
	return cmd
}

// runInput is what modelci run's flags ask for.
type runInput struct {
	dir, specFile, output, repository, kubeconfig string
	runner, context                               string
	allowOverwrite, allowDowngrade                bool
	reg                                           *registryOptions
}

// runPipeline runs the spec's pipeline with progress lines on stderr, and
// reports a finished run to GitHub Actions. A failed run's result names its
// record; an error before the run started has none.
func runPipeline(cmd *cobra.Command, in runInput) (*pipeline.Result, error) {
	sp, err := loadSpec(in.dir, in.specFile)
	if err != nil {
		return nil, err
	}
	if in.repository != "" && sp.Train.Kubernetes.Repository == "" {
		// --repository is where a Job's artifacts go too, as image.repository is.
		sp.Train.Kubernetes.Repository = in.repository
	}
	if err := sp.OverrideRunner(in.runner, in.context); err != nil {
		return nil, err
	}
	output := in.output
	if output != "" {
		output = inDir(in.dir, output)
	}
	stderr := cmd.ErrOrStderr()
	access, err := in.reg.Access(cmd)
	if err != nil {
		return nil, err
	}
	opts := []pipeline.Option{pipeline.WithAccess(access)}
	if in.allowOverwrite {
		opts = append(opts, pipeline.WithRegistryOptions(registry.WithAllowOverwrite()))
	}
	if in.repository != "" {
		if err := oci.CheckRepository(in.repository); err != nil {
			return nil, usageError(fmt.Errorf("--repository: %w", err))
		}
		opts = append(opts, pipeline.WithRepository(in.repository))
	}
	if in.allowDowngrade {
		opts = append(opts, pipeline.WithAllowDowngrade())
	}
	if in.kubeconfig != "" {
		opts = append(opts, pipeline.WithKubeconfig(in.kubeconfig))
	}
	res, err := pipeline.Run(cmd.Context(), sp, append(opts,
		pipeline.WithOutput(output),
		pipeline.WithLog(stderr),
		pipeline.WithProgress(func(e pipeline.Event) {
			fmt.Fprintf(stderr, "%-9s %8s  %s\n", e.Stage, roundDuration(e.Duration), e.Summary)
		}))...)
	if err != nil {
		if res != nil {
			fmt.Fprintf(stderr, "run %s failed in its %s stage; recorded in %s\n", res.RunID, res.Record.FailedStage, res.RunDir)
		}
		return res, err
	}
	fmt.Fprintf(stderr, "run %s: %s\n", res.RunID, res.RunDir)
	outputs := map[string]string{"model": sp.Model.Name, "version": sp.Model.Version, "run_id": res.RunID, "ref": res.Ref}
	if img := res.Record.Outputs.Image; img != nil {
		outputs["digest"] = img.Digest
	}
	if err := reportToGitHub(res.Report, res.Metrics, outputs); err != nil {
		return res, fmt.Errorf("report to GitHub Actions: %w", err)
	}
	return res, nil
}

// loadSpec reads --spec, or modelci.yaml in dir. A relative --spec is
// relative to dir, as with make -C.
func loadSpec(dir, specFile string) (*spec.Spec, error) {
	if specFile == "" {
		specFile = spec.FileName
	}
	if !filepath.IsAbs(specFile) {
		specFile = filepath.Join(dir, specFile)
	}
	if _, err := os.Stat(specFile); err != nil {
		return nil, fmt.Errorf("spec %s: %w (create one with modelci init)", specFile, err)
	}
	return spec.Load(specFile)
}

// roundDuration keeps three significant digits or so: 1.234s, 17ms, 420µs.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond / 10)
	}
	return d.Round(time.Microsecond)
}
