// Package proc runs the host processes of the trainer and evaluator
// contracts and reads the JSON reports they leave behind. train and evaluate
// share it so that both contracts fail in the same, named ways.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

var (
	// ErrNotFound means the program named by argv[0] does not exist or is not
	// on PATH.
	ErrNotFound = errors.New("command not found")
	// ErrExit means the program ran and exited with a non-zero status (or
	// was killed by a signal). The error is an *ExitError.
	ErrExit = errors.New("command failed")
)

// TailLines is how many of the last stderr lines an ExitError keeps.
const TailLines = 20

// tailBytes bounds the memory kept for the stderr tail, whatever the line
// lengths are.
const tailBytes = 8 << 10

// waitDelay bounds how long Run waits for output pipes after the process
// has exited or was killed, in case a grandchild still holds them.
const waitDelay = 5 * time.Second

// Cmd is one program run.
type Cmd struct {
	// Argv is the program and its arguments. A relative program path with a
	// separator (./train.sh) is resolved against Dir.
	Argv []string
	// Dir is the working directory; empty means the current one.
	Dir string
	// Env is added to the current environment, overriding equal names.
	Env []string
	// Log receives the program's stdout and stderr; nil discards them.
	Log io.Writer
}

// ExitError is a run that ended with a non-zero exit status.
type ExitError struct {
	Argv []string
	// Code is the exit status, or -1 when a signal ended the process.
	Code int
	// Status says how the process ended: "exit status 3", "signal: killed".
	Status string
	// Stderr holds the last TailLines lines of the program's stderr.
	Stderr string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%s: %s", strings.Join(e.Argv, " "), e.Status)
	if e.Stderr != "" {
		msg += "; stderr ends with:\n" + e.Stderr
	}
	return msg
}

// Is lets errors.Is(err, ErrExit) match any *ExitError.
func (e *ExitError) Is(target error) bool { return target == ErrExit }

// Run runs c to completion. It returns an error wrapping ErrNotFound when the
// program cannot be found, an *ExitError (matching ErrExit) when it exits
// non-zero, and ctx.Err() when ctx ends first, in which case the program and
// its children are killed.
func Run(ctx context.Context, c Cmd) error {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return fmt.Errorf("run: empty command: %w", ErrNotFound)
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.WaitDelay = waitDelay
	setProcessGroup(cmd)

	log := c.Log
	if log == nil {
		log = io.Discard
	}
	// stdout and stderr are copied by two goroutines; the lock keeps a
	// writer that is not safe for concurrent use (a bytes.Buffer) intact.
	lw := &lockedWriter{w: log}
	tail := &tailWriter{}
	cmd.Stdout = lw
	cmd.Stderr = io.MultiWriter(lw, tail)

	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("run %q: %w: %w", c.Argv[0], ErrNotFound, err)
		}
		return fmt.Errorf("run %q: %w", c.Argv[0], err)
	}
	err := cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("run %q: %w", c.Argv[0], ctx.Err())
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return &ExitError{Argv: c.Argv, Code: exit.ExitCode(), Status: exit.ProcessState.String(), Stderr: tail.String()}
	}
	if err != nil {
		return fmt.Errorf("run %q: %w", c.Argv[0], err)
	}
	return nil
}

// lockedWriter serialises writes to w and ignores its errors: a log that
// stops accepting output must not fail the run it records.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(p)
	return len(p), nil
}

// tailWriter keeps the last tailBytes bytes written to it.
type tailWriter struct {
	buf []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailBytes:]...)
	}
	return len(p), nil
}

// String returns the last TailLines lines, without the final newline.
func (t *tailWriter) String() string {
	b := t.buf
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > TailLines {
		lines = lines[len(lines)-TailLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
