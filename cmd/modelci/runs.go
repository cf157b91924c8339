package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/pipeline"
)

func newRunsCmd() *cobra.Command {
	var (
		dir, specFile, outputDir string
		out                      outputOptions
	)
	cmd := &cobra.Command{
		Use:   "runs",
		Short: "List the runs of the output directory, succeeded and failed",
		Long: `runs lists the runs recorded in the output directory, oldest first: id,
status (succeeded or failed), verdict, model version, image digest, when it
started and, for a failed run, the stage it stopped in. -o json prints one
object ({"schema": "modelci.dev/runs/v1", "output": DIR, "runs": […]}) with
snake_case keys, the error of each failed run included.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			o, err := outputDirOf(dir, specFile, outputDir)
			if err != nil {
				return err
			}
			list, err := pipeline.Runs(o)
			if err != nil {
				return err
			}
			if out.json() {
				return out.print(cmd, list)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTATUS\tVERDICT\tVERSION\tIMAGE\tSTARTED\tSTAGE")
			for _, r := range list.Runs {
				started := ""
				if !r.Started.IsZero() {
					started = r.Started.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Status, envDash(string(r.Verdict)), envDash(r.Version), envDash(shortDigest(r.ImageDigest)), envDash(started), envDash(r.FailedStage))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "C", ".", "project directory")
	cmd.Flags().StringVar(&specFile, "spec", "", "spec file (default DIR/modelci.yaml)")
	out.AddFlags(cmd, "text or json")
	out.AddDirFlag(cmd, &outputDir, "output directory (default the spec's; relative to DIR)", true, true)
	return cmd
}
