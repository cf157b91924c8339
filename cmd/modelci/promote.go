package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/promote"
)

// promoteSchema names `modelci promote -o json`'s document.
const promoteSchema = "modelci.dev/promote/v1"

// promoteOutput is promote's JSON: the result, and the error when there was one.
type promoteOutput struct {
	Schema string `json:"schema"`
	*promote.Result
	Error string `json:"error,omitempty"`
}

func newPromoteCmd() *cobra.Command {
	var (
		dir, specFile, from, to, reason, kubeconfig string
		approve, allowDowngrade                     bool
		so                                          signerOptions
		reg                                         registryOptions
		out                                         outputOptions
		timeout                                     time.Duration
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
kubeconfig context and namespace with its strategy. Under the spec's
deploy.model_source volume the version's ModelPack artifact and the runtime
image it names are verified and copied the same way, the copies verified in
the target's repository, and the target runs that runtime image with the
artifact mounted. A re-run after an interruption converges. Prints the
target reference by digest (under deploy.model_source volume, the ModelPack
artifact); exit 0 promoted, 3 refused, 1 error, 2 usage.`,
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
			case approve && reason == "":
				return usageError(errors.New("promote: --approve needs --reason"))
			}
			if err := so.check("promote"); err != nil {
				return err
			}
			if err := out.check(); err != nil {
				return err
			}
			sp, err := loadSpec(dir, specFile)
			if err != nil {
				return err
			}
			signer, err := so.signer(cmd, sp)
			if errors.Is(err, pipeline.ErrNoSigner) {
				return usageError(errors.New("promote: --key or --keyless is required (or sign.key / sign.keyless in the spec) to attest the promotion"))
			}
			if err != nil {
				return err
			}
			access, err := reg.Access(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := pipeline.Promote(ctx, sp, pipeline.PromoteInput{
				Name: modelName, Version: version, From: from, To: to, Reason: reason,
				Approve: approve, AllowDowngrade: allowDowngrade, Signer: signer,
				Kubeconfig: kubeconfig, Access: access, Log: cmd.ErrOrStderr(),
			})
			if errors.Is(err, spec.ErrSpec) || errors.Is(err, spec.ErrUnknownEnvironment) {
				return usageError(fmt.Errorf("promote: %w", err))
			}
			if out.json() && res != nil {
				o := promoteOutput{Schema: promoteSchema, Result: res}
				if err != nil {
					o.Error = err.Error()
				}
				if perr := out.print(cmd, o); perr != nil {
					return perr
				}
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
			if !out.json() {
				ref := res.Image
				if res.Model != "" {
					// A volume release is its model artifact (what deploy takes).
					ref = res.Model
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
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
	so.AddFlags(cmd, "cosign private key (cosign.key) for the promotion attestation (default: the spec's sign.key)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
	out.AddFlags(cmd, "text (the target reference) or json (with the step durations)")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	reg.AddFlags(cmd)
	return cmd
}
