package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/stages/registry"
)

// copySchema names `modelci copy -o json`'s document.
const copySchema = "modelci.dev/copy/v1"

// copyOutput is `modelci copy -o json`: the copy by digest and its tags.
type copyOutput struct {
	Schema string   `json:"schema"`
	Ref    string   `json:"ref"`
	Digest string   `json:"digest"`
	Tags   []string `json:"tags"`
}

func newCopyCmd() *cobra.Command {
	var (
		allowOverwrite bool
		tags           []string
		reg            registryOptions
		out            outputOptions
	)
	cmd := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy an image or index by digest, unchanged, between registries and OCI layouts",
		Long: `Copy the image or index SRC names to DST by digest: blobs the destination
has are skipped, and the digest stays the same. Prints DST's reference with
the digest on stdout (-o json: modelci.dev/copy/v1, with the tags).

SRC: HOST[:PORT]/PATH:TAG, HOST[:PORT]/PATH@sha256:… or oci-layout://ABS_PATH@sha256:….
DST: HOST[:PORT]/PATH[:TAG] or oci-layout://ABS_PATH. Tags: DST's and --tag's,
else SRC's. A tag the destination holds on another digest is refused
(tags are immutable) unless --allow-overwrite.`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := out.check(); err != nil {
				return err
			}
			access, err := reg.Access(cmd)
			if err != nil {
				return err
			}
			opts := []registry.Option{registry.WithAccess(access), registry.WithProgress(cmd.ErrOrStderr()), registry.WithLog(cmd.ErrOrStderr()), registry.WithTags(tags...)}
			if allowOverwrite {
				opts = append(opts, registry.WithAllowOverwrite())
			}
			res, err := registry.Copy(cmd.Context(), a[0], a[1], opts...)
			if errors.Is(err, registry.ErrBadRef) {
				return usageError(err)
			}
			if err != nil {
				return err
			}
			if out.json() {
				tags := res.Tags
				if tags == nil {
					tags = []string{}
				}
				return out.print(cmd, copyOutput{Schema: copySchema, Ref: res.Ref, Digest: res.Digest.String(), Tags: tags})
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Ref)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&allowOverwrite, "allow-overwrite", false, "move a tag the destination holds on another digest")
	f.StringSliceVar(&tags, "tag", nil, "tag to give the copy (repeatable)")
	out.AddFlags(cmd, "text (the copy's reference) or json")
	reg.AddFlags(cmd)
	return cmd
}
