package main

import (
	"errors"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/internal/stage"
)

// newStageCmd is `modelci stage STEP [flags]`, hidden: the Dagger module
// runs each pipeline step in a container through it (internal/stage), so
// that one binary built from this source is both the module's step runner
// and the image's server.
func newStageCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "stage STEP [flags]",
		Short:              "Run one pipeline step (the Dagger module's containers call this)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, a []string) error {
			err := stage.Run(cmd.Context(), a, decisionExit)
			var exit *exec.ExitError
			switch {
			case err == nil:
				return nil
			case errors.As(err, &exit) && exit.ExitCode() > 0:
				// forward's command has spoken for itself: keep its status.
				return &exitError{code: exit.ExitCode()}
			case errors.Is(err, stage.ErrUsage):
				return usageError(err)
			}
			return err
		},
	}
}
