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
	"strings"
	"sync"
	"sync/atomic"
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
	ctx, interrupted, stop := notifySignals(context.Background())
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if sig := interrupted(); sig != 0 {
		code = signalExit(sig)
	}
	os.Exit(code)
}

// notifySignals returns a context cancelled by SIGINT or SIGTERM (its
// context.Cause names the signal), a function that says which of them
// arrived (0: none), and stop. The command then cleans up as on any
// cancellation (children killed, a run recorded as failed, the lock
// released) and modelci exits 128+signal (signalExit). A second signal
// has its default effect: modelci dies at once; its children die with it,
// the kernel drops the lock, and the next run removes what it left.
func notifySignals(parent context.Context) (context.Context, func() syscall.Signal, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	var got atomic.Int32
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			sig := s.(syscall.Signal)
			got.Store(int32(sig))
			signal.Stop(ch)
			cancel(fmt.Errorf("%w: %v", errInterrupted, sig))
		case <-done:
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(done)
			signal.Stop(ch)
			cancel(nil)
		})
	}
	return ctx, func() syscall.Signal { return syscall.Signal(got.Load()) }, stop
}

// errInterrupted is the cause of a context a signal cancelled.
var errInterrupted = errors.New("interrupted by a signal")

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
	// modelci --version prints what modelci version does.
	var v strings.Builder
	writeVersion(&v, buildInfo())
	root.Version = modelciVersion()
	root.SetVersionTemplate(strings.NewReplacer("{{", "{{`{{`}}").Replace(v.String()))
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w\n%s", err, c.UsageString()))
	})
	root.AddCommand(newRunCmd(), newInitCmd(), newVersionCmd(), newServeCmd(), newGateCmd(), newGCCmd(), newRunsCmd(), newRebuildCmd(), newRegistryCmd(), newCopyCmd(), newDoctorCmd(), newKeygenCmd(), newSignCmd(), newVerifyCmd(), newDeployCmd(), newStatusCmd(), newHistoryCmd(), newRollbackCmd(), newPromoteCmd(), newStageCmd())
	root.AddCommand(newDiffCmd())
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
