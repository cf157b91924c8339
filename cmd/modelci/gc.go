package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/pipeline"
)

func newGCCmd() *cobra.Command {
	var dir, specFile, output string
	var keep int
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Prune old runs and unreferenced image blobs from the output directory",
		Long: `gc keeps the newest --keep succeeded runs and removes the older ones and
every failed run, then the blobs of the OCI layout that neither a tag nor a
kept run's image reaches (an image only failed runs built goes with them),
and what runs killed part-way left (.tmp-* run directories and layout files).
It takes the output directory's lock: it never races a run.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := output
			if out == "" {
				sp, err := loadSpec(dir, specFile)
				if err != nil {
					return err
				}
				out = pipeline.OutputDir(sp, "")
			}
			res, err := pipeline.GC(out, keep)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %d runs (%d failed) and %d blobs (%d bytes)\n", len(res.Runs), res.Failed, res.Blobs, res.BlobsBytes)
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "C", ".", "project directory")
	cmd.Flags().StringVar(&specFile, "spec", "", "spec file (default DIR/modelci.yaml)")
	cmd.Flags().StringVar(&output, "output", "", "output directory (default the spec's)")
	cmd.Flags().IntVar(&keep, "keep", 10, "succeeded runs to keep, newest first (failed runs are all removed)")
	return cmd
}
