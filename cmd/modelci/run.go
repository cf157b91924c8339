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

func newRunCmd() *cobra.Command {
	var dir, specFile, output, repository, kubeconfig string
	var allowOverwrite, allowDowngrade bool
	var reg registryOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Train, evaluate, gate and build the serving image",
		Long: `Run the pipeline of modelci.yaml: load and split the data, train, evaluate,
gate on the loss, and build the serving image. Progress goes to stderr; the
image reference with its digest is printed last on stdout. Exit 0 PASS,
3 refused by the gate (nothing is built), 4 INCONCLUSIVE held for approval,
1 error, 130 after SIGINT and 143 after SIGTERM. The layout's tag moves
only when every stage succeeded; a failed run is recorded as failed in
runs/<id>/run.json and changes nothing else (see modelci runs).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			sp, err := loadSpec(dir, specFile)
			if err != nil {
				return err
			}
			if output != "" && !filepath.IsAbs(output) {
				output = filepath.Join(dir, output)
			}
			stderr := cmd.ErrOrStderr()
			access, err := reg.Access(cmd)
			if err != nil {
				return err
			}
			opts := []pipeline.Option{pipeline.WithAccess(access)}
			if allowOverwrite {
				opts = append(opts, pipeline.WithRegistryOptions(registry.WithAllowOverwrite()))
			}
			if repository != "" {
				if err := oci.CheckRepository(repository); err != nil {
					return usageError(fmt.Errorf("--repository: %w", err))
				}
				opts = append(opts, pipeline.WithRepository(repository))
			}
			if allowDowngrade {
				opts = append(opts, pipeline.WithAllowDowngrade())
			}
			if kubeconfig != "" {
				opts = append(opts, pipeline.WithKubeconfig(kubeconfig))
			}
			res, err := pipeline.Run(cmd.Context(), sp, append(opts,
				pipeline.WithOutput(output),
				pipeline.WithLog(stderr),
				pipeline.WithProgress(func(e pipeline.Event) {
					fmt.Fprintf(stderr, "%-9s %8s  %s\n", e.Stage, roundDuration(e.Duration), e.Summary)
				}))...)
			if err != nil && res != nil {
				fmt.Fprintf(stderr, "run %s failed in its %s stage; recorded in %s\n", res.RunID, res.Record.FailedStage, res.RunDir)
			}
			if errors.Is(err, pipeline.ErrChampion) {
				return exitCode(exitRefused, err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "run %s: %s\n", res.RunID, res.RunDir)
			outputs := map[string]string{"model": sp.Model.Name, "version": sp.Model.Version, "run_id": res.RunID, "ref": res.Ref}
			if img := res.Record.Outputs.Image; img != nil {
				outputs["digest"] = img.Digest
			}
			if err := reportToGitHub(res.Report, res.Metrics, outputs); err != nil {
				return fmt.Errorf("report to GitHub Actions: %w", err)
			}
			if res.Ref != "" {
				fmt.Fprintln(cmd.OutOrStdout(), res.Ref)
			}
			return decisionError(res.Decision, res.Verdict, "refused; nothing was built")
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "C", ".", "project directory (where modelci.yaml lives)")
	cmd.Flags().StringVar(&specFile, "spec", "", "spec file (default DIR/modelci.yaml)")
	cmd.Flags().StringVar(&output, "output", "", "output directory (default the spec's output:, relative to DIR)")
	cmd.Flags().StringVar(&repository, "repository", "", "push the image to HOST[:PORT]/PATH (default image.repository; empty keeps the OCI layout only)")
	cmd.Flags().BoolVar(&allowOverwrite, "allow-overwrite", false, "move a version tag the repository holds on another digest")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "publish a version that is not greater than the repository's greatest")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file for deploy.enabled and gate.baseline.from (default $KUBECONFIG, ~/.kube/config; the context is always named in the spec)")
	reg.AddFlags(cmd)
	return cmd
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
