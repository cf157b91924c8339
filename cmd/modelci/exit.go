package main

import "fmt"

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
func usageError(err error) error { return exitCode(2, err) }
