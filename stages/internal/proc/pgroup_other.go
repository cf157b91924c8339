//go:build !unix

package proc

import "os/exec"

// setProcessGroup keeps exec's default: only the program itself is killed on
// cancellation.
func setProcessGroup(*exec.Cmd) {}
