package proc

import "syscall"

// setPdeathsig has the kernel SIGKILL the child when the thread that
// started it exits: modelci's death, kill -9 included. Run starts and waits
// for the child on a goroutine locked to its OS thread, so that this thread
// is not some other goroutine's to end (a goroutine that exits while locked
// takes its thread with it, which would fire the signal early; Go issue
// 27505).
func setPdeathsig(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
