// Command modelci trains, evaluates, gates and packages machine-learning
// models (ARCHITECTURE.md). stdout carries only results; progress and logs
// go to stderr; exit codes: 0 ok, 1 error, 2 usage, 3 refused, 4 held.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/serve"
	"github.com/modelci/modelci/stages/image"
)

func main() {
	// Installed as modelci-serve (the image's entrypoint name), the CLI is
	// the server: the fallback runtime when no Go toolchain can build the
	// lean one (stages/image.Runtime).
	if filepath.Base(os.Args[0]) == image.RuntimeName {
		os.Exit(serve.Main(context.Background(), image.RuntimeName, os.Args[1:], os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// execute runs the CLI with args and returns the process exit code.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "modelci:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "modelci:", err)
	return 1
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "modelci",
		Short:         "Train, gate, package, sign and ship machine-learning models",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w\n%s", err, c.UsageString()))
	})
	root.AddCommand(newRunCmd(), newInitCmd(), newVersionCmd(), newServeCmd(), newGateCmd(), newGCCmd(), newRebuildCmd(), newRegistryCmd(), newCopyCmd(), newDoctorCmd(), newKeygenCmd(), newSignCmd(), newVerifyCmd(), newDeployCmd(), newStatusCmd(), newHistoryCmd(), newRollbackCmd(), newPromoteCmd(), newStageCmd())
	return root
}

// args wraps a cobra argument check so that a violation exits 2 (usage).
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError(fmt.Errorf("%s: %w", cmd.CommandPath(), err))
		}
		return nil
	}
}
