package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/pipeline"
)

// rebuildSchema names `modelci rebuild -o json`'s document.
const rebuildSchema = "modelci.dev/rebuild/v1"

// rebuildOutput is `modelci rebuild -o json`: each digest recorded and rebuilt.
type rebuildOutput struct {
	Schema string `json:"schema"`
	*pipeline.RebuildResult
}

func newRebuildCmd() *cobra.Command {
	var (
		dir, specFile, outputDir string
		out                      outputOptions
	)
	cmd := &cobra.Command{
		Use:   "rebuild RUN_ID",
		Short: "Rebuild a run's image from its record and check that every digest matches",
		Long: `Rebuild runs the pipeline again for a recorded run, in a scratch directory,
and compares the dataset, split, model, metrics, server binary and image
digests with the run record, one line per digest (-o json:
modelci.dev/rebuild/v1). Exit 0 when all match, 3 when any differs.`,
		ValidArgsFunction: completeRunIDs(&dir, &specFile, &outputDir),
		Args:              args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := out.check(); err != nil {
				return err
			}
			sp, err := loadSpec(dir, specFile)
			if err != nil {
				return err
			}
			o := pipeline.OutputDir(sp, "")
			if outputDir != "" {
				o = pipeline.OutputDir(sp, inDir(dir, outputDir))
			}
			res, err := pipeline.Rebuild(cmd.Context(), sp, o, a[0],
				pipeline.WithLog(cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			if out.json() {
				if err := out.print(cmd, rebuildOutput{Schema: rebuildSchema, RebuildResult: res}); err != nil {
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
	out.AddFlags(cmd, "text or json")
	out.AddDirFlag(cmd, &outputDir, "output directory (default the spec's; relative to DIR)", true, true)
	return cmd
}
