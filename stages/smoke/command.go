package smoke

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/internal/proc"
)

// Environment of a smoke command.
const (
	// EnvImage names the built image: an oci-layout:// reference by digest.
	EnvImage = "MODELCI_IMAGE"
	// EnvData is a directory holding test.csv, as for an evaluator.
	EnvData = "MODELCI_DATA"
	// TestCSV is the test split's file in EnvData.
	TestCSV = "test.csv"
)

// CommandInput is the spec's smoke.command run against a base image.
type CommandInput struct {
	Argv []string
	// Project, Exclude and ExcludeContent stage the project as for an
	// external evaluator: the command runs in a copy without data files,
	// keys or the data set, with a clean environment.
	Project        string
	Exclude        []string
	ExcludeContent []string
	// Image is the image's oci-layout:// reference.
	Image string
	// Test is the test split, written to $MODELCI_DATA/test.csv.
	Test    *data.Dataset
	Timeout time.Duration
	Log     io.Writer
}

// Command runs in.Argv with the image's reference and the test split; a
// non-zero exit, or one past the timeout, is ErrCommand.
func Command(ctx context.Context, in CommandInput) error {
	dir, err := os.MkdirTemp("", "modelci-smoke-data-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := proc.WriteCSV(filepath.Join(dir, TestCSV), in.Test); err != nil {
		return fmt.Errorf("smoke command: %w", err)
	}
	if in.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, in.Timeout)
		defer cancel()
	}
	err = proc.Run(ctx, proc.Cmd{
		Argv: in.Argv, Project: in.Project, Exclude: in.Exclude, ExcludeContent: in.ExcludeContent,
		SetEnv: []string{EnvImage + "=" + in.Image, EnvData + "=" + dir},
		Log:    in.Log,
	})
	if err != nil {
		return fmt.Errorf("smoke command: %w: %w", ErrCommand, err)
	}
	return nil
}
