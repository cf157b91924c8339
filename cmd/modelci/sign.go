package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/stages/sign"
)

// signSchema names `modelci sign -o json`'s document.
const signSchema = "modelci.dev/sign/v1"

// signOutput is `modelci sign -o json`: the signed image and where its
// signature went.
type signOutput struct {
	Schema string `json:"schema"`
	*sign.Result
}

func newSignCmd() *cobra.Command {
	var (
		so    signerOptions
		reg   registryOptions
		out   outputOptions
		runID string
	)
	cmd := &cobra.Command{
		Use:   "sign REF",
		Short: "Sign a model image by digest with cosign",
		Long: `Sign REF's digest (a tag is resolved first, with a warning) in cosign's
format: the signature goes to the tag sha256-<hex>.sig of the same repository,
where cosign verify finds it. The signed payload carries the image's model
name and version and --run-id. With --key the password comes from
$MODELCI_KEY_PASSWORD or $COSIGN_PASSWORD (or a terminal prompt). With
--keyless the identity is the OIDC token in $SIGSTORE_ID_TOKEN or GitHub
Actions' (id-token: write); the certificate comes from Fulcio and the
signature is logged in Rekor, the public Sigstore services unless
--fulcio-url/--rekor-url say otherwise. An oci-layout:// reference is
refused: signatures need a registry. Prints the signed REPO@sha256:….`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if (so.key == "") == !so.keyless {
				return usageError(errors.New("sign: exactly one of --key and --keyless is required"))
			}
			if err := out.check(); err != nil {
				return err
			}
			src, err := so.signer(cmd, nil)
			if err != nil {
				return err
			}
			opts, err := reg.signOptions(cmd)
			if err != nil {
				return err
			}
			res, err := sign.Sign(cmd.Context(), a[0], src, append(opts, sign.WithRunID(runID))...)
			if err != nil {
				return err
			}
			if out.json() {
				return out.print(cmd, signOutput{Schema: signSchema, Result: res})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "signed %s: %s\n", res.Digest, res.Tag)
			fmt.Fprintln(cmd.OutOrStdout(), res.Ref)
			return nil
		},
	}
	so.AddFlags(cmd, "cosign private key (cosign.key)")
	cmd.Flags().StringVar(&runID, "run-id", "", "run id recorded in the signature")
	out.AddFlags(cmd, "text (the signed reference) or json")
	reg.AddFlags(cmd)
	return cmd
}
