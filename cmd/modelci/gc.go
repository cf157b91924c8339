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
		Args:  args(cobra.NoArgs),
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
			fmt.Fprintf(cmd.ErrOrStderr(), "removed %d runs and %d blobs (%d bytes)\n", len(res.Runs), res.Blobs, res.BlobsBytes)
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "C", ".", "project directory")
	cmd.Flags().StringVar(&specFile, "spec", "", "spec file (default DIR/modelci.yaml)")
	cmd.Flags().StringVar(&output, "output", "", "output directory (default the spec's)")
	cmd.Flags().IntVar(&keep, "keep", 10, "runs to keep, newest first")
	return cmd
}
