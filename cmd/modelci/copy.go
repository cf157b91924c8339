package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/stages/registry"
)

func newCopyCmd() *cobra.Command {
	var (
		allowOverwrite bool
		tags           []string
		reg            registryOptions
	)
	cmd := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy an image or index by digest, unchanged, between registries and OCI layouts",
		Long: `Copy the image or index SRC names to DST by digest: blobs the destination
has are skipped, and the digest stays the same. Prints DST's reference with
the digest on stdout.

SRC: HOST[:PORT]/PATH:TAG, HOST[:PORT]/PATH@sha256:… or oci-layout://ABS_PATH@sha256:….
DST: HOST[:PORT]/PATH[:TAG] or oci-layout://ABS_PATH. Tags: DST's and --tag's,
else SRC's. A tag the destination holds on another digest is refused
(tags are immutable) unless --allow-overwrite.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			access, err := reg.Access(cmd)
			if err != nil {
				return err
			}
			opts := []registry.Option{registry.WithAccess(access), registry.WithProgress(cmd.ErrOrStderr()), registry.WithLog(cmd.ErrOrStderr()), registry.WithTags(tags...)}
			if allowOverwrite {
				opts = append(opts, registry.WithAllowOverwrite())
			}
			out, err := registry.Copy(cmd.Context(), a[0], a[1], opts...)
			if errors.Is(err, registry.ErrBadRef) {
				return usageError(err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.Ref)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&allowOverwrite, "allow-overwrite", false, "move a tag the destination holds on another digest")
	f.StringSliceVar(&tags, "tag", nil, "tag to give the copy (repeatable)")
	reg.AddFlags(cmd)
	return cmd
}
