//go:build unix && !linux

package proc

import "syscall"

// setPdeathsig: only Linux has a parent-death signal; the watcher
// (watchScript) still kills the group when modelci dies.
func setPdeathsig(*syscall.SysProcAttr) {}
