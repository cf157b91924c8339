package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/sign"
)

// verifySchema names `modelci verify -o json`'s document.
const verifySchema = "modelci.dev/verify/v1"

// verifyOutput is `modelci verify -o json`: every check and its outcome.
type verifyOutput struct {
	Schema string `json:"schema"`
	*sign.Verification
}

func newVerifyCmd() *cobra.Command {
	var (
		vo                             verifyOptions
		reg                            registryOptions
		out                            outputOptions
		requireGate, requireProvenance bool
		policyFile, specFile           string
	)
	cmd := &cobra.Command{
		Use:   "verify REF",
		Short: "Verify a model image's signature and gate attestation",
		Long: `Verify that REF's digest carries a valid cosign signature by --key (or by the
keyless identity --certificate-identity issued for --certificate-oidc-issuer,
checked against the public Sigstore root: certificate chain, identity and
transparency log entry); that every attestation signed by it is about this
digest; that the gate attestation (required unless --require-gate=false) has the
verdict PASS (INCONCLUSIVE too with --allow-inconclusive) for the model name
and version in the image's annotations; and, with --require-provenance, that
SLSA provenance is attested. With --policy FILE (a gate: block's content) or
--spec FILE (modelci.yaml), the gate attestation must have been made under that
gate policy (its policy_digest), so an earlier attestation put back in the
registry no longer passes; among several, the newest by its signed time
decides. The checks go to stderr (text) or stdout
(-o json); the verified REPO@sha256:… to stdout. Exit 0 verified, 3 refused,
1 error.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := vo.check("verify", true); err != nil {
				return err
			}
			if err := out.check(); err != nil {
				return err
			}
			opts, err := reg.signOptions(cmd)
			if err != nil {
				return err
			}
			switch {
			case policyFile != "" && specFile != "":
				return usageError(errors.New("verify: --policy and --spec are mutually exclusive"))
			case policyFile != "":
				b, err := os.ReadFile(policyFile)
				if err != nil {
					return usageError(fmt.Errorf("verify: --policy: %w", err))
				}
				gp, err := modelgate.DecodePolicy(policyFile, b)
				if err != nil {
					return usageError(fmt.Errorf("verify: --policy: %w", err))
				}
				vo.requireGatePolicy(gp)
			case specFile != "":
				sp, err := spec.Load(specFile)
				if err != nil {
					return usageError(fmt.Errorf("verify: --spec: %w", err))
				}
				vo.requireGatePolicy(sp.Gate)
			}
			if vo.gatePolicy != "" && !requireGate {
				return usageError(errors.New("verify: --policy/--spec need the gate attestation: drop --require-gate=false"))
			}
			p := vo.policy()
			p.RequireGate, p.RequireProvenance = requireGate, requireProvenance
			v, err := sign.Verify(cmd.Context(), a[0], p, opts...)
			if err != nil && !errors.Is(err, sign.ErrRefused) {
				return err
			}
			if out.json() {
				if perr := out.print(cmd, verifyOutput{Schema: verifySchema, Verification: v}); perr != nil {
					return perr
				}
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
	vo.AddFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&requireGate, "require-gate", true, "refuse an image without a gate attestation, as deploy does (--require-gate=false relaxes)")
	f.BoolVar(&requireProvenance, "require-provenance", false, "refuse an image without SLSA provenance")
	f.StringVar(&policyFile, "policy", "", "require a gate attestation made under this gate policy (a file with a gate: block's content)")
	f.StringVar(&specFile, "spec", "", "require a gate attestation made under this modelci.yaml's gate: block")
	out.AddFlags(cmd, "text or json")
	reg.AddFlags(cmd)
	return cmd
}
