package main

// Shell completion beyond cobra's own (modelci completion bash|zsh|fish):
// the values of enum flags and the run ids of an output directory.

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/serve"
	"github.com/modelci/modelci/stages/deploy"
)

// completeRunIDs completes a RUN_ID argument with the runs of the output
// directory the command's -C, --spec and --output-dir name, each described
// by its status, verdict and version, oldest first as modelci runs lists
// them.
func completeRunIDs(dir, specFile, outputDir *string) cobra.CompletionFunc {
	return func(_ *cobra.Command, a []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(a) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		o, err := outputDirOf(*dir, *specFile, *outputDir)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		list, err := pipeline.Runs(o)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, r := range list.Runs {
			if !strings.HasPrefix(r.ID, toComplete) {
				continue
			}
			desc := strings.Join(strings.Fields(strings.Join([]string{string(r.Status), string(r.Verdict), r.Version}, " ")), " ")
			out = append(out, cobra.CompletionWithDesc(r.ID, desc))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// strategies are deploy's --strategy values.
var strategies = []string{deploy.Rolling, deploy.Canary}

// modelSources are deploy's --model-source values.
var modelSources = []string{deploy.ModelFromImage, deploy.ModelFromVolume}

// roles are serve's --role values.
var roles = []string{string(serve.RoleAll), string(serve.RolePredict), string(serve.RolePreprocess)}

// serveFlags are serve.Main's flags, for completion: serve parses its own
// flags (so that modelci serve and modelci-serve cannot drift), and cobra
// does not know them.
var serveFlags = []string{"--model", "--addr", "--role", "--max-body-bytes", "--read-timeout", "--write-timeout", "--idle-timeout", "--shutdown-timeout", "--debug"}

// completeServe completes serve's flag names and --role's values.
func completeServe(_ *cobra.Command, a []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if v, ok := strings.CutPrefix(toComplete, "--role="); ok {
		var out []cobra.Completion
		for _, r := range roles {
			if strings.HasPrefix(r, v) {
				out = append(out, "--role="+r)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	if len(a) > 0 && a[len(a)-1] == "--role" {
		return cobra.FixedCompletions(roles, cobra.ShellCompDirectiveNoFileComp)(nil, nil, toComplete)
	}
	if len(a) > 0 && a[len(a)-1] == "--model" {
		return nil, cobra.ShellCompDirectiveFilterDirs
	}
	if strings.HasPrefix(toComplete, "-") {
		var out []cobra.Completion
		for _, f := range serveFlags {
			if strings.HasPrefix(f, toComplete) {
				out = append(out, f)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}
