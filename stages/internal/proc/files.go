package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/modelci/modelci/stages/data"
)

// ErrOutDirNotEmpty means an output directory already holds files.
var ErrOutDirNotEmpty = errors.New("output directory is not empty")

// EmptyDir returns dir's absolute path after creating it, or checking that
// it holds nothing: files left from an earlier run could pass for output.
func EmptyDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("no output directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("output directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("output directory: %w", err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return "", fmt.Errorf("output directory: %w", err)
	}
	if len(entries) > 0 {
		return "", fmt.Errorf("output directory %s holds %s: %w", abs, entries[0].Name(), ErrOutDirNotEmpty)
	}
	return abs, nil
}

// WriteCSV writes d to the file at path in the data package's CSV form.
func WriteCSV(path string, d *data.Dataset) error { return data.WriteFile(path, d) }
