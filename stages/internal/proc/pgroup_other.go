//go:build !unix

package proc

import (
	"context"
	"os/exec"
)

// command keeps exec's defaults: only the program itself is killed on
// cancellation, and nothing when modelci dies.
func command(ctx context.Context, argv []string) (*exec.Cmd, func(), error) {
	return exec.CommandContext(ctx, argv[0], argv[1:]...), func() {}, nil
}
