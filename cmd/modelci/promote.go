package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/promote"
	"github.com/modelci/modelci/stages/sign"
)

// promoteOutput is promote's JSON: the result, and the error when there was one.
type promoteOutput struct {
	*promote.Result
	Error string `json:"error,omitempty"`
}

func newPromoteCmd() *cobra.Command {
	var (
		dir, specFile, from, to, reason, key, kubeconfig, format string
		fulcioURL, rekorURL                                      string
		approve, allowDowngrade, keyless                         bool
		reg                                                      registryOptions
		timeout                                                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "promote NAME@VERSION --from ENV --to ENV",
		Short: "Promote a verified model from one environment to the next",
		Long: `Promote NAME@VERSION from environment --from to --to, as the environments:
section of modelci.yaml (in -C DIR) defines them. Under the target
environment's Lease (a concurrent promote, deploy or rollback is refused
before anything changes) it resolves the version in the source repository,
verifies its signature and gate attestation with the spec's verify: block,
checks the target's version constraint and required verdict (--approve with
--reason accepts INCONCLUSIVE) and that the version moves forward
(--allow-downgrade), copies the image by digest with its signatures,
attestations and metrics, attests the promotion (signed with --key or
--keyless, default the spec's sign: block) and deploys it to the target's
kubeconfig context and namespace with its strategy. A re-run after an
interruption converges. Prints the target reference by digest; exit 0
promoted, 3 refused, 1 error, 2 usage.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			modelName, version, ok := strings.Cut(a[0], "@")
			if !ok || modelName == "" || version == "" {
				return usageError(fmt.Errorf("promote: %q: want NAME@VERSION", a[0]))
			}
			if _, err := modelgate.ParseVersion(version); err != nil {
				return usageError(fmt.Errorf("promote: %w", err))
			}
			switch {
			case from == "" || to == "":
				return usageError(errors.New("promote: --from and --to are required"))
			case from == to:
				return usageError(fmt.Errorf("promote: --from and --to are both %s", from))
			case key != "" && keyless:
				return usageError(errors.New("promote: --key and --keyless are mutually exclusive"))
			case approve && reason == "":
				return usageError(errors.New("promote: --approve needs --reason"))
			case format != "text" && format != "json":
				return usageError(fmt.Errorf("promote: -o %q: want text or json", format))
			}
			sp, err := loadSpec(dir, specFile)
			if err != nil {
				return err
			}
			signer, err := promoteSigner(cmd, sp, key, keyless, fulcioURL, rekorURL)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := pipeline.Promote(ctx, sp, pipeline.PromoteInput{
				Name: modelName, Version: version, From: from, To: to, Reason: reason,
				Approve: approve, AllowDowngrade: allowDowngrade, Signer: signer,
				Kubeconfig: kubeconfig, Access: reg.Access(), Log: cmd.ErrOrStderr(),
			})
			if errors.Is(err, spec.ErrSpec) || errors.Is(err, spec.ErrUnknownEnvironment) {
				return usageError(fmt.Errorf("promote: %w", err))
			}
			if format == "json" && res != nil {
				out := promoteOutput{Result: res}
				if err != nil {
					out.Error = err.Error()
				}
				b, jerr := json.MarshalIndent(out, "", "  ")
				if jerr != nil {
					return jerr
				}
				fmt.Fprintln(cmd.OutOrStdout(), string(b))
			}
			if err != nil {
				if promote.Refused(err) {
					return exitCode(exitRefused, err)
				}
				return err
			}
			for _, s := range res.Steps {
				line := fmt.Sprintf("%-8s %s", s.Name, roundDuration(s.Duration))
				if s.Skipped != "" {
					line += " (" + s.Skipped + ")"
				}
				fmt.Fprintln(cmd.ErrOrStderr(), line)
			}
			if format == "text" {
				fmt.Fprintln(cmd.OutOrStdout(), res.Image)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&dir, "dir", "C", ".", "project directory (holding modelci.yaml)")
	f.StringVar(&specFile, "spec", "", "spec file (default: DIR/modelci.yaml)")
	f.StringVar(&from, "from", "", "source environment")
	f.StringVar(&to, "to", "", "target environment")
	f.StringVar(&reason, "reason", "", "why, for the attestation and the release history")
	f.BoolVar(&approve, "approve", false, "accept an INCONCLUSIVE verdict where the target requires PASS (needs --reason)")
	f.BoolVar(&allowDowngrade, "allow-downgrade", false, "promote a version not greater than the one the target runs")
	f.StringVar(&key, "key", "", "cosign private key (cosign.key) for the promotion attestation (default: the spec's sign.key)")
	f.BoolVar(&keyless, "keyless", false, "sign the promotion attestation keyless (Fulcio, Rekor)")
	f.StringVar(&fulcioURL, "fulcio-url", sign.DefaultFulcioURL, "Fulcio for --keyless")
	f.StringVar(&rekorURL, "rekor-url", sign.DefaultRekorURL, "Rekor for --keyless")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
	f.StringVarP(&format, "output", "o", "text", "text (the target reference) or json (with the step durations)")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	reg.AddFlags(cmd)
	return cmd
}

// promoteSigner signs the promotion attestation: --key or --keyless, else the spec's sign: block.
func promoteSigner(cmd *cobra.Command, sp *spec.Spec, key string, keyless bool, fulcioURL, rekorURL string) (sign.SignerSource, error) {
	if key == "" && !keyless {
		key, keyless = sp.Sign.Key, sp.Sign.Keyless
		if key != "" {
			key = sp.Path(key)
		}
	}
	if keyless {
		return sign.Keyless(sign.KeylessOptions{FulcioURL: fulcioURL, RekorURL: rekorURL}), nil
	}
	if key == "" {
		return nil, usageError(errors.New("promote: --key or --keyless is required (or sign.key / sign.keyless in the spec) to attest the promotion"))
	}
	pw, err := keyPassword(cmd, false)
	if err != nil {
		return nil, fmt.Errorf("promote: %w", err)
	}
	return sign.KeyFile(key, pw), nil
}
