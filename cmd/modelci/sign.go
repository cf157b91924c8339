package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/sign"
)

// registryOptions are the registry flags of sign and verify.
// registryOptions are the registry flags every command that reads or
// writes a registry shares; credentials come from the environment
// (MODELCI_REGISTRY_USERNAME/PASSWORD) or the Docker config, as for push.
type registryOptions struct{ insecure bool }

// AddFlags registers the flags on cmd.
func (f *registryOptions) AddFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.insecure, "insecure-registry", false, "reach the registry over plain HTTP (loopback registries always are)")
}

// Access is how the registry is reached.
func (f *registryOptions) Access() oci.Access { return oci.Access{Insecure: f.insecure} }

// options are stages/sign's options: the access, and warnings to stderr.
func (f *registryOptions) options(cmd *cobra.Command) []sign.Option {
	return []sign.Option{sign.WithAccess(f.Access()), sign.WithLog(cmd.ErrOrStderr())}
}

func newSignCmd() *cobra.Command {
	var (
		key, runID, fulcioURL, rekorURL, format string
		keyless                                 bool
		reg                                     registryOptions
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
			if (key == "") == !keyless {
				return usageError(errors.New("sign: exactly one of --key and --keyless is required"))
			}
			if format != "text" && format != "json" {
				return usageError(fmt.Errorf("sign: -o %q: want text or json", format))
			}
			var src sign.SignerSource
			if keyless {
				src = sign.Keyless(sign.KeylessOptions{FulcioURL: fulcioURL, RekorURL: rekorURL})
			} else {
				pw, err := keyPassword(cmd, false)
				if err != nil {
					return fmt.Errorf("sign: %w", err)
				}
				src = sign.KeyFile(key, pw)
			}
			opts := append(reg.options(cmd), sign.WithRunID(runID))
			res, err := sign.Sign(cmd.Context(), a[0], src, opts...)
			if err != nil {
				return err
			}
			if format == "json" {
				b, err := json.MarshalIndent(res, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return nil
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "signed %s: %s\n", res.Digest, res.Tag)
			fmt.Fprintln(cmd.OutOrStdout(), res.Ref)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&key, "key", "", "cosign private key (cosign.key)")
	f.BoolVar(&keyless, "keyless", false, "sign with a short-lived certificate for the OIDC identity (Fulcio, Rekor)")
	f.StringVar(&fulcioURL, "fulcio-url", sign.DefaultFulcioURL, "Fulcio for --keyless")
	f.StringVar(&rekorURL, "rekor-url", sign.DefaultRekorURL, "Rekor for --keyless")
	f.StringVar(&runID, "run-id", "", "run id recorded in the signature")
	f.StringVarP(&format, "output", "o", "text", "text (the signed reference) or json")
	reg.AddFlags(cmd)
	return cmd
}
