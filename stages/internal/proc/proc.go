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
	"path/filepath"
	"runtime"
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
	// separator (./train.sh) is resolved against the working directory; a
	// bare name (python3) is looked up on PATH.
	Argv []string
	// Project is the project directory. Unless Workdir is set, the program
	// runs in a fresh staging directory, removed afterwards, that holds a
	// copy of Project's files without ExcludedNames, Exclude and the
	// bytes of ExcludeContent (see stage). Empty stages nothing: the
	// program starts in an empty directory.
	Project string
	// Exclude are files and directories of Project (absolute, or relative
	// to Project) left out of the staging copy: the output directory, the
	// signing key.
	Exclude []string
	// ExcludeContent are files whose bytes the staging copy leaves out
	// under any name: the data set.
	ExcludeContent []string
	// Workdir, when set, is where the program runs, in place and unstaged
	// (train.workdir, the escape hatch); Project is then not copied.
	Workdir string
	// SetEnv are NAME=VALUE variables set for the program: the contract's
	// MODELCI_* variables. Run builds the rest of the environment itself
	// (childEnv: PATH, HOME, LANG, TMPDIR and PassEnv); nothing else of
	// modelci's environment reaches the program.
	SetEnv []string
	// PassEnv names variables passed through from modelci's environment
	// (train.env); an unset one is left unset. A name that CheckPassEnv
	// refuses is an error.
	PassEnv []string
	// Log receives the program's stdout and stderr, and a line about the
	// staging directory; nil discards them.
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
// its children are killed. They are killed too when modelci dies, and
// whatever the program left running is killed when it exits (see command).
//
// The program gets a clean environment (SetEnv, PassEnv) with a fresh HOME
// and TMPDIR, and runs in a staging copy of Project unless Workdir is set;
// Run removes the fresh directories before it returns.
func Run(ctx context.Context, c Cmd) (err error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return fmt.Errorf("run: empty command: %w", ErrNotFound)
	}
	log := c.Log
	if log == nil {
		log = io.Discard
	}
	// stdout and stderr are copied by two goroutines; the lock keeps a
	// writer that is not safe for concurrent use (a bytes.Buffer) intact.
	lw := &LockedWriter{W: log}

	root, err := os.MkdirTemp("", "modelci-run-")
	if err != nil {
		return fmt.Errorf("run %q: %w", c.Argv[0], err)
	}
	defer func() {
		if rmErr := removeAll(root); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("run %q: remove its temporary directories: %w", c.Argv[0], rmErr))
		}
	}()
	home, tmp, work := filepath.Join(root, "home"), filepath.Join(root, "tmp"), filepath.Join(root, "work")
	for _, d := range []string{home, tmp, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("run %q: %w", c.Argv[0], err)
		}
	}
	env, err := childEnv(home, tmp, c.PassEnv, c.SetEnv)
	if err != nil {
		return fmt.Errorf("run %q: environment: %w", c.Argv[0], err)
	}
	dir := work
	if c.Workdir != "" {
		if dir, err = filepath.Abs(c.Workdir); err != nil {
			return fmt.Errorf("run %q: workdir: %w", c.Argv[0], err)
		}
		if fi, err := os.Stat(dir); err != nil {
			return fmt.Errorf("run %q: workdir: %w", c.Argv[0], err)
		} else if !fi.IsDir() {
			return fmt.Errorf("run %q: workdir %s is not a directory", c.Argv[0], dir)
		}
	} else if err := stage(c.Project, work, c.Exclude, c.ExcludeContent, lw); err != nil {
		return fmt.Errorf("run %q: %w", c.Argv[0], err)
	}
	if err := findProgram(c.Argv[0], dir); err != nil {
		return err
	}

	cmd, done, err := command(ctx, c.Argv)
	if err != nil {
		return fmt.Errorf("run %q: %w", c.Argv[0], err)
	}
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = waitDelay
	tail := &tailWriter{}
	cmd.Stdout = lw
	cmd.Stderr = io.MultiWriter(lw, tail)

	// Start and Wait on one goroutine locked to its OS thread: Pdeathsig
	// fires when the thread that started the child exits, and a locked
	// thread runs nothing else, so it lives until the child has exited.
	// Unlocking after Wait gives the thread back to the runtime.
	started, waited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		done()
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("run %q: %w: %w", c.Argv[0], ErrNotFound, err)
		}
		return fmt.Errorf("run %q: %w", c.Argv[0], err)
	}
	err = <-waited
	done()
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

// findProgram reports, as exec would, a program that cannot be run: the
// program is started through a shell (command), which would report it as
// exit status 127 instead. A bare name is looked up on PATH (the child's
// PATH is modelci's); a path is resolved against dir.
func findProgram(name, dir string) error {
	if !strings.Contains(name, "/") {
		if _, err := exec.LookPath(name); err != nil {
			if errors.Is(err, exec.ErrNotFound) {
				return fmt.Errorf("run %q: %w: %w", name, ErrNotFound, err)
			}
			return fmt.Errorf("run %q: %w", name, err)
		}
		return nil
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("run %q: %w: %w", name, ErrNotFound, err)
	case err != nil:
		return fmt.Errorf("run %q: %w", name, err)
	case fi.IsDir():
		return fmt.Errorf("run %q: is a directory", name)
	case fi.Mode()&0o111 == 0:
		return fmt.Errorf("run %q: not executable: %w", name, fs.ErrPermission)
	}
	return nil
}

// LockedWriter serialises writes to W (a program's stdout and stderr are
// copied by two goroutines) and ignores its errors: a log that stops
// accepting output must not fail the run it records.
type LockedWriter struct {
	mu sync.Mutex
	W  io.Writer
}

func (l *LockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.W.Write(p)
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
