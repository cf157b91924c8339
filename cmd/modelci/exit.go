package main

import (
	"fmt"
	"syscall"

	"github.com/modelci/modelci/modelgate"
)

// The exit codes of every command (ARCHITECTURE.md, "Exit codes"): the one
// table; nothing else in modelci knows these numbers.
const (
	exitOK      = 0
	exitFailed  = 1 // an error
	exitUsage   = 2
	exitRefused = 3 // gate FAIL, INCONCLUSIVE under on_inconclusive: fail, or a verification that did not pass
	exitHeld    = 4 // INCONCLUSIVE under on_inconclusive: hold: a person must approve
	// 128+N after signal N, once the command has cleaned up: 130 after
	// SIGINT, 143 after SIGTERM (signalExit).
	exitSignal = 128
)

// signalExit is the exit code after sig interrupted a command, as shells
// report a process a signal ended: 130 for SIGINT, 143 for SIGTERM.
func signalExit(sig syscall.Signal) int { return exitSignal + int(sig) }

// decisionExit is the exit code of a gate decision.
func decisionExit(d modelgate.Decision) int {
	switch d {
	case modelgate.Released:
		return exitOK
	case modelgate.Held:
		return exitHeld
	}
	return exitRefused
}

// exitError carries a specific exit code (ARCHITECTURE.md, "Exit codes")
// out of a command. A nil err means the command already said why.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitCode returns an error that makes modelci exit with code.
func exitCode(code int, err error) error { return &exitError{code: code, err: err} }

// usageError makes modelci exit 2.
func usageError(err error) error { return exitCode(exitUsage, err) }

// decisionError ends a command that gated a model: nil when it is
// released, else its exit code and why; refused says what a refusal left
// undone.
func decisionError(d modelgate.Decision, v modelgate.Verdict, refused string) error {
	switch d {
	case modelgate.Released:
		return nil
	case modelgate.Held:
		return exitCode(exitHeld, fmt.Errorf("gate verdict %s: held for approval (on_inconclusive: hold)", v))
	}
	return exitCode(exitRefused, fmt.Errorf("gate verdict %s: %s", v, refused))
}
