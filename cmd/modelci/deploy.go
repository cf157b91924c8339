package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/deploy"
	"github.com/modelci/modelci/stages/sign"
)

// clusterOptions are the flags every cluster command shares.
type clusterOptions struct {
	namespace, kubeconfig, context string
	out                            outputOptions
	// env names an environment of the spec in dir (status, history, rollback).
	env, dir string
	// spec and environment are the spec loaded for env and its entry.
	spec        *spec.Spec
	environment spec.Environment
}

// AddFlags registers -n, --kubeconfig, --context and -o on cmd.
func (f *clusterOptions) AddFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.namespace, "namespace", "n", "", "namespace (required unless --env or the spec names one)")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context (default: the current context, named on stderr)")
	f.out.AddFlags(cmd, "text or json (one schema for deploy, status, history and rollback)")
}

// AddEnvFlags registers --env and -C, which resolve the namespace and
// context from the spec's environments: section.
func (f *clusterOptions) AddEnvFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.env, "env", "", "environment of modelci.yaml's environments: (its context and namespace)")
	fl.StringVarP(&f.dir, "dir", "C", ".", "project directory holding modelci.yaml (with --env)")
}

// resolveEnv sets the namespace and context from --env; -n contradicts it, and --context
// overrides the environment's.
func (f *clusterOptions) resolveEnv(cmd string) error {
	if f.env == "" {
		return nil
	}
	if f.namespace != "" {
		return usageError(fmt.Errorf("%s: -n and --env are mutually exclusive", cmd))
	}
	sp, err := loadSpec(f.dir, "")
	if err != nil {
		return err
	}
	e, err := sp.Environment(f.env)
	if err != nil {
		return usageError(fmt.Errorf("%s: %w", cmd, err))
	}
	f.spec, f.environment = sp, e
	f.namespace = e.Namespace
	if f.context == "" {
		f.context = e.Context
	}
	if f.context == "" {
		return usageError(fmt.Errorf("%s: %s: environments.%s.context is empty: name the kubeconfig context there or with --context", cmd, sp.File, e.Name))
	}
	return nil
}

func (f *clusterOptions) check(cmd string, needNamespace bool) error {
	if err := f.out.check(); err != nil {
		return err
	}
	if needNamespace && f.namespace == "" {
		return usageError(fmt.Errorf("%s: -n NAMESPACE is required", cmd))
	}
	return nil
}

func (f *clusterOptions) target(cmd *cobra.Command) (*deploy.Target, error) {
	t, err := deploy.NewTarget(f.kubeconfig, f.context)
	if err != nil {
		return nil, err
	}
	if f.context == "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "using the current kubeconfig context %q\n", t.Context)
	}
	t.Log = cmd.ErrOrStderr()
	return t, nil
}

// finish writes the report (JSON to stdout with -o json, else text from show) and turns err
// into the exit code.
func (f *clusterOptions) finish(cmd *cobra.Command, rep *deploy.Report, err error, show func(io.Writer, *deploy.Report)) error {
	if rep != nil {
		if err != nil {
			rep.Error = err.Error()
		}
		if f.out.json() {
			if perr := f.out.print(cmd, rep); perr != nil {
				return perr
			}
		} else if err == nil {
			show(cmd.OutOrStdout(), rep)
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, deploy.ErrNotVerified) && (errors.Is(err, sign.ErrRefused) || errors.Is(err, deploy.ErrReleaseMismatch) || errors.Is(err, deploy.ErrUntrusted)):
		return exitCode(exitRefused, err)
	case errors.Is(err, deploy.ErrInvalidSteps) || errors.Is(err, deploy.ErrInvalidConfig) || errors.Is(err, pipeline.ErrUnnamedRelease):
		return usageError(err)
	}
	return err
}

func newDeployCmd() *cobra.Command {
	var (
		cf                      clusterOptions
		vo                      verifyOptions
		reg                     registryOptions
		strategy, steps, dryRun string
		modelSource             string
		specFile                string
		appName, version, runID string
		replicas                int32
		createNS, skipVerify    bool
		timeout                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "deploy REF",
		Short: "Verify a model image and roll it out to Kubernetes",
		Long: `Deploy REF (HOST/REPO@sha256:…; a tag or an oci-layout:// reference is refused)
to namespace -n of the kubeconfig's --context. The image is verified first
(--key, or --certificate-identity with --certificate-oidc-issuer: its signature
and its gate attestation, PASS or with --allow-inconclusive INCONCLUSIVE);
--insecure-skip-verify skips that, loudly. The app's Lease is taken before any
change, so a concurrent deploy or rollback gets a conflict error. The release
rolls out with server-side apply (field manager modelci) as a rolling update
(no replica unavailable) or, with --strategy canary, as a <name>-canary
Deployment behind the same Service stepped through --steps, with an analysis
between steps. A release that fails is rolled back to the previous one on its
own. The deploy: section of --spec FILE (modelci.yaml) configures replicas,
resources, GPUs, services, autoscaling and analysis; flags override it.
Under --model-source volume (or the spec's deploy.model_source volume), REF is
the model's ModelPack artifact or its serving image (whose ModelPack referrer
is taken): the runtime image the artifact names runs with the artifact
mounted at /model as an image volume, the artifact verified as the model and
the runtime image's signature too.
--dry-run DIR writes the manifests instead and needs no cluster.
Prints the deployed reference (under model source volume, the ModelPack
artifact); exit 0 rolled out, 3 verification refused,
1 failed (rolled back when there was a previous release), 2 usage.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := vo.check("deploy", false); err != nil {
				return err
			}
			if skipVerify && vo.named() {
				return usageError(errors.New("deploy: --insecure-skip-verify contradicts --key/--certificate-identity"))
			}
			cfg := deploy.Defaults()
			if specFile != "" {
				r, err := spec.LoadRollout(specFile)
				if err != nil {
					return fmt.Errorf("deploy: --spec: %w", err)
				}
				cfg = r.Deploy
				// The spec's verify: key is the spec directory's, not the working directory's.
				vo.orSpec(r.Verify)
				if r.Gate != nil {
					vo.requireGatePolicy(*r.Gate)
				}
			}
			if cf.namespace == "" {
				if specFile == "" && dryRun == "" {
					return usageError(errors.New("deploy: -n NAMESPACE is required"))
				}
				cf.namespace = cfg.Namespace
			}
			if cf.context == "" {
				cf.context = cfg.Context
			}
			if err := cf.check("deploy", false); err != nil {
				return err
			}
			if cmd.Flags().Changed("strategy") {
				cfg.Strategy = strategy
			}
			if cmd.Flags().Changed("steps") {
				var err error
				if cfg.Steps, err = deploy.ParseSteps(steps); err != nil {
					return usageError(fmt.Errorf("deploy: --steps: %w", err))
				}
			}
			if cmd.Flags().Changed("replicas") {
				cfg.Replicas = replicas
			}
			if cmd.Flags().Changed("model-source") {
				if !slices.Contains(modelSources, modelSource) {
					return usageError(fmt.Errorf("deploy: --model-source %q: want %s", modelSource, strings.Join(modelSources, " or ")))
				}
				cfg.ModelSource = modelSource
			}
			if err := cfg.Validate(); err != nil {
				return usageError(fmt.Errorf("deploy: %w", err))
			}
			if !vo.named() && !skipVerify && dryRun == "" {
				return usageError(errors.New("deploy: --key, or --certificate-identity with --certificate-oidc-issuer, is required (or --insecure-skip-verify)"))
			}
			access, err := reg.Access(cmd)
			if err != nil {
				return err
			}
			in := pipeline.DeployInput{
				Ref: a[0], Config: cfg, Namespace: cf.namespace, CreateNamespace: createNS,
				Release:            deploy.Release{Name: appName, Version: version, RunID: runID},
				InsecureSkipVerify: skipVerify, DryRun: dryRun, Access: access, Log: cmd.ErrOrStderr(),
			}
			if vo.named() {
				p := vo.policy()
				in.Policy = &p
			}
			var t *deploy.Target
			if dryRun == "" {
				if t, err = cf.target(cmd); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			rep, err := pipeline.Deploy(ctx, t, in)
			return cf.finish(cmd, rep, err, showDeploy)
		},
	}
	cf.AddFlags(cmd)
	vo.AddFlags(cmd)
	f := cmd.Flags()
	f.BoolVar(&skipVerify, "insecure-skip-verify", false, "deploy WITHOUT verifying the signature and gate verdict")
	f.StringVar(&strategy, "strategy", deploy.Rolling, "rolling or canary")
	must(cmd.RegisterFlagCompletionFunc("strategy", cobra.FixedCompletions(strategies, cobra.ShellCompDirectiveNoFileComp)))
	f.StringVar(&steps, "steps", "10,50,100", "canary steps, percent of replicas, ending at 100")
	f.StringVar(&modelSource, "model-source", deploy.ModelFromImage, "image (the serving image, the model baked in) or volume (the runtime image, the ModelPack artifact mounted as an image volume)")
	must(cmd.RegisterFlagCompletionFunc("model-source", cobra.FixedCompletions(modelSources, cobra.ShellCompDirectiveNoFileComp)))
	f.Int32Var(&replicas, "replicas", 3, "replicas")
	f.StringVar(&dryRun, "dry-run", "", "write the manifests into `DIR` instead of deploying")
	f.BoolVar(&createNS, "create-namespace", false, "create the namespace if it does not exist")
	f.StringVar(&specFile, "spec", "", "read the deploy: and verify: sections of this modelci.yaml")
	f.StringVar(&appName, "name", "", "app name (default: the image's dev.modelci.model.name)")
	f.StringVar(&version, "version", "", "model version (default: the image's dev.modelci.model.version)")
	f.StringVar(&runID, "run-id", "", "pipeline run id, for the release history")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "give up (and roll back) after this long")
	reg.AddFlags(cmd)
	return cmd
}

func showDeploy(w io.Writer, rep *deploy.Report) {
	switch {
	case rep.Result == deploy.ResultRendered:
		for _, f := range rep.Files {
			fmt.Fprintln(w, f)
		}
	case rep.Current != nil && rep.Current.Model != "":
		// A volume release is its model artifact (what deploy takes).
		fmt.Fprintln(w, rep.Current.Model)
	case rep.Current != nil:
		fmt.Fprintln(w, rep.Current.Image)
	}
}

func newStatusCmd() *cobra.Command {
	var cf clusterOptions
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show an app's current release and its Deployments in a namespace",
		Long: `Show NAME's current release and its Deployments in namespace -n, or in the
namespace and context of environment --env of modelci.yaml (-C DIR). With
neither, one row per environment of modelci.yaml: version, digest, verdict,
since when, and health.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := cf.resolveEnv("status"); err != nil {
				return err
			}
			if cf.namespace == "" {
				if err := cf.check("status", false); err != nil {
					return err
				}
				return envStatus(cmd, &cf, a[0])
			}
			if err := cf.check("status", true); err != nil {
				return err
			}
			t, err := cf.target(cmd)
			if err != nil {
				return err
			}
			rep, err := t.Status(cmd.Context(), a[0], cf.namespace)
			return cf.finish(cmd, rep, err, showStatus)
		},
	}
	cf.AddFlags(cmd)
	cf.AddEnvFlags(cmd)
	return cmd
}

func showStatus(w io.Writer, rep *deploy.Report) {
	if c := rep.Current; c != nil {
		ref := c.Image
		if c.Model != "" {
			ref += " with model " + c.Model
		}
		fmt.Fprintf(w, "%s %s in %s: %s (%s, %s by %s at %s)\n", rep.Name, c.Version, rep.Namespace, ref, c.Verdict, c.Action, c.Who, c.Time.Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPLOYMENT\tROLE\tTRACK\tVERSION\tREPLICAS\tUPDATED\tREADY\tAVAILABLE")
	for _, d := range rep.Workloads {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", d.Name, d.Role, d.Track, d.Version, d.Replicas, d.Updated, d.Ready, d.Available)
	}
	tw.Flush()
}

func newHistoryCmd() *cobra.Command {
	var (
		cf  clusterOptions
		reg registryOptions
	)
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show an app's release history in a namespace (kept in the cluster)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := cf.resolveEnv("history"); err != nil {
				return err
			}
			if err := cf.check("history", true); err != nil {
				return err
			}
			access, err := reg.Access(cmd)
			if err != nil {
				return err
			}
			t, err := cf.target(cmd)
			if err != nil {
				return err
			}
			in := pipeline.HistoryInput{Name: a[0], Namespace: cf.namespace, Access: access, Log: cmd.ErrOrStderr()}
			if cf.spec != nil {
				in.Env, in.Policy = cf.env, cf.spec.VerifyPolicy()
			}
			rep, err := pipeline.History(cmd.Context(), t, in)
			return cf.finish(cmd, rep, err, showHistory)
		},
	}
	cf.AddFlags(cmd)
	cf.AddEnvFlags(cmd)
	reg.AddFlags(cmd)
	return cmd
}

func showHistory(w io.Writer, rep *deploy.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tVERSION\tACTION\tSTATUS\tVERDICT\tTIME\tWHO\tRUN\tPROMOTED\tREASON")
	for _, e := range rep.History {
		reason := e.Reason
		if len(reason) > 80 {
			reason = reason[:77] + "..."
		}
		promoted := "-"
		if p := e.Promotion; p != nil {
			promoted = "from " + p.From + " by " + p.Who + " (signed"
			if p.Approved {
				promoted += ", approved"
			}
			promoted += ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Revision, e.Version, e.Action, e.Status, e.Verdict, e.Time.Format(time.RFC3339), e.Who, e.RunID, promoted, strings.ReplaceAll(reason, "\n", " "))
	}
	tw.Flush()
}

func newRollbackCmd() *cobra.Command {
	var (
		cf         clusterOptions
		vo         verifyOptions
		reg        registryOptions
		to, reason string
		skipVerify bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rollback NAME",
		Short: "Restore an app's previous release (or --to VERSION), verified, from the cluster's history",
		Long: `Restore the release before the current one, or the latest deployed release of
--to VERSION, under the app's Lease, and record it in the history with
--reason. Prints the restored image. It is the fast path out of a bad release:
the release is applied as a rolling update at once, with no canary steps.
The history only names the release; it is verified first, as deploy verifies
(--key, or --certificate-identity with --certificate-oidc-issuer; the gate
attestation PASS, or INCONCLUSIVE with --allow-inconclusive): an image by
digest in the environment's repository (--env) or else the repository of the
release running now, signed as NAME at that version. A refusal exits 3 and
changes nothing. A release deployed with --insecure-skip-verify is restored
only with that flag again. Each Deployment takes the pod template that last
ran the restored image (as kubectl rollout undo does), never the history's.
--env ENV takes the namespace, context, repository and verify: block from
modelci.yaml (-C DIR), e.g. rollback diabetes --env prod --reason "p99 latency".`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := cf.resolveEnv("rollback"); err != nil {
				return err
			}
			if err := cf.check("rollback", true); err != nil {
				return err
			}
			if err := vo.check("rollback", false); err != nil {
				return err
			}
			if skipVerify && vo.named() {
				return usageError(errors.New("rollback: --insecure-skip-verify contradicts --key/--certificate-identity"))
			}
			if cf.spec != nil && !skipVerify {
				vo.orSpec(cf.spec.Verify)
				vo.requireGatePolicy(cf.spec.Gate)
			}
			if !vo.named() && !skipVerify {
				return usageError(errors.New("rollback: --key, or --certificate-identity with --certificate-oidc-issuer, is required (or --insecure-skip-verify, or --env with a verify: block)"))
			}
			access, err := reg.Access(cmd)
			if err != nil {
				return err
			}
			in := pipeline.RollbackInput{
				Name: a[0], Namespace: cf.namespace, To: to, Reason: reason,
				InsecureSkipVerify: skipVerify, Repository: cf.environment.Repository,
				Access: access, Log: cmd.ErrOrStderr(),
			}
			if vo.named() {
				p := vo.policy()
				in.Policy = &p
			}
			t, err := cf.target(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			rep, err := pipeline.Rollback(ctx, t, in)
			return cf.finish(cmd, rep, err, showDeploy)
		},
	}
	cf.AddFlags(cmd)
	cf.AddEnvFlags(cmd)
	vo.AddFlags(cmd)
	reg.AddFlags(cmd)
	cmd.Flags().StringVar(&to, "to", "", "version to restore (default: the release before the current one)")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the history")
	cmd.Flags().BoolVar(&skipVerify, "insecure-skip-verify", false, "restore without verifying the signature and gate verdict (loudly)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "give up after this long")
	return cmd
}

// envStatus reports app in every environment of the spec, one row each
// (pipeline.EnvironmentsStatus); an environment that cannot be read fails
// the command after the rows are written.
func envStatus(cmd *cobra.Command, cf *clusterOptions, app string) error {
	sp, err := loadSpec(cf.dir, "")
	if err != nil {
		return usageError(fmt.Errorf("status: -n NAMESPACE or --env ENV is required, or a modelci.yaml with environments: (%w)", err))
	}
	if len(sp.EnvironmentNames()) == 0 {
		return usageError(fmt.Errorf("status: -n NAMESPACE or --env ENV is required (%s defines no environments)", sp.File))
	}
	out, err := pipeline.EnvironmentsStatus(cmd.Context(), sp, app, cf.kubeconfig, cf.context)
	if cf.out.json() {
		if perr := cf.out.print(cmd, out); perr != nil {
			return perr
		}
	} else {
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENVIRONMENT\tVERSION\tDIGEST\tVERDICT\tSINCE\tHEALTH")
		for _, r := range out.Environments {
			since := "-"
			if r.Since != nil {
				since = r.Since.Format(time.RFC3339)
			}
			// The model's digest: a volume release's artifact, not the
			// runtime image every release of it shares.
			digest := r.Digest
			if r.ModelDigest != "" {
				digest = r.ModelDigest
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Environment, envDash(r.Version), envDash(shortDigest(digest)), envDash(r.Verdict), since, r.Health)
		}
		tw.Flush()
	}
	return err
}

// shortDigest is sha256: and the first 12 hex digits.
func shortDigest(d string) string {
	if alg, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return alg + ":" + hex[:12]
	}
	return d
}

func envDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
