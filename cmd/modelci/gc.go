package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/pipeline"
)

// gcSchema names `modelci gc -o json`'s document.
const gcSchema = "modelci.dev/gc/v1"

// gcOutput is `modelci gc -o json`: what gc removed from the output directory.
type gcOutput struct {
	Schema string `json:"schema"`
	Output string `json:"output"`
	*pipeline.GCResult
}

func newGCCmd() *cobra.Command {
	var (
		dir, specFile, outputDir string
		keep                     int
		out                      outputOptions
	)
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Prune old runs and unreferenced image blobs from the output directory",
		Long: `gc keeps the newest --keep succeeded runs and removes the older ones and
every failed run, then the blobs of the OCI layout that neither a tag nor a
kept run's image reaches (an image only failed runs built goes with them),
and what runs killed part-way left (.tmp-* run directories and layout files).
It takes the output directory's lock: it never races a run. It prints what
it removed (-o json: modelci.dev/gc/v1, the removed runs' ids, the blob
count and bytes, the leftovers).`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			o, err := outputDirOf(dir, specFile, outputDir)
			if err != nil {
				return err
			}
			res, err := pipeline.GC(o, keep)
			if err != nil {
				return err
			}
			if out.json() {
				return out.print(cmd, gcOutput{Schema: gcSchema, Output: o, GCResult: res})
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "removed %d runs (%d failed) and %d blobs (%d bytes) from %s\n", len(res.Runs), res.Failed, res.Blobs, res.BlobsBytes, o)
			if l := res.Leftovers; l.Runs > 0 || l.Files > 0 {
				fmt.Fprintf(w, "removed what interrupted runs left: %d run directories, %d temporary files (%d bytes)\n", l.Runs, l.Files, l.Bytes)
			}
			for _, id := range res.Runs {
				fmt.Fprintf(w, "removed run %s\n", id)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&dir, "dir", "C", ".", "project directory")
	cmd.Flags().StringVar(&specFile, "spec", "", "spec file (default DIR/modelci.yaml)")
	out.AddFlags(cmd, "text or json")
	out.AddDirFlag(cmd, &outputDir, "output directory (default the spec's; relative to DIR)", true, false)
	cmd.Flags().IntVar(&keep, "keep", 10, "succeeded runs to keep, newest first (failed runs are all removed)")
	return cmd
}

// outputDirOf is --output-dir resolved against -C DIR, else the output
// directory of the spec in DIR.
func outputDirOf(dir, specFile, outputDir string) (string, error) {
	if outputDir != "" {
		return pipeline.OutputDir(nil, inDir(dir, outputDir)), nil
	}
	sp, err := loadSpec(dir, specFile)
	if err != nil {
		return "", err
	}
	return pipeline.OutputDir(sp, ""), nil
}
