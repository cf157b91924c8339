package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/stages/sign"
)

func newVerifyCmd() *cobra.Command {
	var (
		p      sign.VerifyPolicy
		format string
		reg    registryOptions
	)
	cmd := &cobra.Command{
		Use:   "verify REF",
		Short: "Verify a model image's signature and gate attestation",
		Long: `Verify that REF's digest carries a valid cosign signature by --key (or by the
keyless identity --certificate-identity issued for --certificate-oidc-issuer,
checked against the public Sigstore root: certificate chain, identity and
transparency log entry); that every attestation signed by it is about this
digest; that the gate attestation (required with --require-gate) has the
verdict PASS (INCONCLUSIVE too with --allow-inconclusive) for the model name
and version in the image's annotations; and, with --require-provenance, that
SLSA provenance is attested. The checks go to stderr (text) or stdout
(-o json); the verified REPO@sha256:… to stdout. Exit 0 verified, 3 refused,
1 error.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			hasID := p.CertificateIdentity != "" || p.CertificateOIDCIssuer != ""
			switch {
			case p.KeyPath != "" && hasID:
				return usageError(errors.New("verify: --key and --certificate-identity/--certificate-oidc-issuer are mutually exclusive"))
			case p.KeyPath == "" && (p.CertificateIdentity == "" || p.CertificateOIDCIssuer == ""):
				return usageError(errors.New("verify: --key, or --certificate-identity with --certificate-oidc-issuer, is required"))
			case format != "text" && format != "json":
				return usageError(fmt.Errorf("verify: -o %q: want text or json", format))
			}
			v, err := sign.Verify(cmd.Context(), a[0], p, reg.options(cmd)...)
			if err != nil && !errors.Is(err, sign.ErrRefused) {
				return err
			}
			if format == "json" {
				b, jerr := json.MarshalIndent(v, "", "  ")
				if jerr != nil {
					return jerr
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			} else {
				for _, c := range v.Checks {
					mark := "ok  "
					if !c.Passed {
						mark = "FAIL"
					}
					fmt.Fprintf(cmd.ErrOrStderr(), "%s %s: %s\n", mark, c.Name, c.Detail)
				}
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), v.Ref)
				}
			}
			if err != nil {
				return exitCode(exitRefused, err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.KeyPath, "key", "", "cosign public key (cosign.pub)")
	f.StringVar(&p.CertificateIdentity, "certificate-identity", "", "keyless signer: the certificate's identity (e-mail or workflow URI)")
	f.StringVar(&p.CertificateOIDCIssuer, "certificate-oidc-issuer", "", "keyless signer: the OIDC issuer of its identity")
	f.BoolVar(&p.RequireGate, "require-gate", false, "refuse an image without a gate attestation")
	f.BoolVar(&p.AllowInconclusive, "allow-inconclusive", false, "accept an INCONCLUSIVE gate verdict (approved)")
	f.BoolVar(&p.RequireProvenance, "require-provenance", false, "refuse an image without SLSA provenance")
	f.StringVarP(&format, "output", "o", "text", "text or json")
	reg.AddFlags(cmd)
	return cmd
}
