//go:build unix

package proc

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts the program in its own process group and kills the
// whole group on cancellation, so that a shell script's children (a python
// trainer and its data loader workers) do not outlive it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
