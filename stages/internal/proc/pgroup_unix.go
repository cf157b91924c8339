//go:build unix

package proc

import (
	"context"
	"os"
	"os/exec"
	"syscall"
)

// shell runs watchScript; without it (a minimal container), the program is
// started directly and only Pdeathsig covers modelci's death.
const shell = "/bin/sh"

// watchScript starts a watcher in the background, then execs the program
// in its place: the program keeps its pid, argv, exit status and signals,
// and is the direct child that Pdeathsig kills. The watcher blocks reading
// fd 3, a pipe whose only write end modelci holds (close-on-exec, so no
// other child inherits it). When modelci dies, however it dies (kill -9
// included), the kernel closes that end, the read returns, and the watcher
// kills its own process group: the program's children and grandchildren,
// which Pdeathsig does not reach. The program does not inherit fd 3; the
// watcher holds none of the program's output pipes.
//
// The shell exports PWD, which modelci does not set; it is unset again so
// that the program's environment is exactly Run's.
const watchScript = `(read _; kill -s KILL 0) <&3 >/dev/null 2>&1 & exec 3<&-; unset PWD; exec "$@"`

// command returns the exec.Cmd that runs argv in its own process group,
// killed as a group on cancellation, when modelci dies (above) and when
// the program has exited (whatever it left running in the background), and
// the function to call once Wait has returned, or Start has failed.
func command(ctx context.Context, argv []string) (*exec.Cmd, func(), error) {
	var cmd *exec.Cmd
	var r, w *os.File
	if _, err := os.Stat(shell); err == nil {
		if r, w, err = os.Pipe(); err != nil {
			return nil, nil, err
		}
		cmd = exec.CommandContext(ctx, shell, append([]string{"-c", watchScript, "modelci-watch"}, argv...)...)
		cmd.ExtraFiles = []*os.File{r}
	} else {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setPdeathsig(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	done := func() {
		if cmd.Process != nil && cmd.ProcessState != nil {
			// The group outlives its leader while the watcher, a member,
			// waits on the pipe, so its id is not yet anyone else's.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if r != nil {
			r.Close()
			w.Close()
		}
	}
	return cmd, done, nil
}
