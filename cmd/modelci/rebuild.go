package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/pipeline"
)

func newRebuildCmd() *cobra.Command {
	var (
		dir, specFile, output string
		out                   outputOptions
	)
	cmd := &cobra.Command{
		Use:   "rebuild RUN_ID",
		Short: "Rebuild a run's image from its record and check that every digest matches",
		Long: `Rebuild runs the pipeline again for a recorded run, in a scratch directory,
and compares the dataset, split, model, metrics, server binary and image
digests with the run record. Exit 0 when all match, 3 when any differs.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := out.check("rebuild"); err != nil {
				return err
			}
			sp, err := loadSpec(dir, specFile)
			if err != nil {
				return err
			}
			res, err := pipeline.Rebuild(cmd.Context(), sp, pipeline.OutputDir(sp, output), a[0],
				pipeline.WithLog(cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			if out.json() {
				if err := out.print(cmd, res); err != nil {
					return err
				}
			} else {
				w := cmd.OutOrStdout()
				for _, c := range res.Checks {
					mark := "ok  "
					if !c.Match {
						mark = "DIFF"
					}
					fmt.Fprintf(w, "%s %-20s %s", mark, c.Name, c.Recorded)
					if !c.Match {
						fmt.Fprintf(w, " ≠ %s", c.Rebuilt)
					}
					fmt.Fprintln(w)
				}
			}
			if !res.Match {
				return exitCode(exitRefused, fmt.Errorf("run %s is not reproduced: some digests differ", a[0]))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "C", ".", "project directory")
	cmd.Flags().StringVar(&specFile, "spec", "", "spec file (default DIR/modelci.yaml)")
	cmd.Flags().StringVar(&output, "output", "", "output directory (default the spec's)")
	out.addFlag(cmd, "output-format", "text or json")
	return cmd
}
