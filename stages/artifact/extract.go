package artifact

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// extractTar writes the tar r holds into root, which only this pull
// writes to: directories and regular files under part (or directories
// above it), nothing else. Names must be clean relative paths, so that
// with no link ever created nothing can land outside root. Files' bytes
// count against budget; one that would take it below zero is refused with
// ErrTooLarge before it is written.
func extractTar(r io.Reader, root, part string, budget *int64) error {
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name, err := entryName(h, part)
		if err != nil {
			return err
		}
		if seen[name] {
			return fmt.Errorf("%w: %q appears twice", ErrUnsafeEntry, h.Name)
		}
		seen[name] = true
		target := filepath.Join(root, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		case tar.TypeReg:
			if name == part || strings.HasPrefix(part, name+"/") {
				return fmt.Errorf("%w: %q is a file where the part's directory goes", ErrUnsafeEntry, h.Name)
			}
			if h.Size > *budget {
				*budget = -1
				return fmt.Errorf("%w: file %q (%d bytes) passes the limit", ErrTooLarge, h.Name, h.Size)
			}
			*budget -= h.Size
			if err := writeFile(target, tr, h.Mode); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		default:
			return fmt.Errorf("%w: %q is a %s", ErrUnsafeEntry, h.Name, typeName(h.Typeflag))
		}
	}
	// An empty part is an empty directory.
	return os.MkdirAll(filepath.Join(root, filepath.FromSlash(part)), 0o755)
}

// maxName is the longest entry name Pull writes: Linux's PATH_MAX.
const maxName = 4096

// entryName is h's name without a directory's trailing slash, once it is
// known to be a clean relative path inside part, or a directory above it.
func entryName(h *tar.Header, part string) (string, error) {
	name := h.Name
	if h.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	switch {
	case len(name) > maxName:
		// Also bounds the work of making its directories: a megabyte of
		// "a/a/…" would cost minutes of stat calls.
		return "", fmt.Errorf("%w: a name of %d bytes (at most %d): %.64q…", ErrUnsafeEntry, len(name), maxName, name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%w: %q is absolute", ErrUnsafeEntry, h.Name)
	case name == ".." || strings.HasPrefix(name, "../") || strings.HasSuffix(name, "/..") || strings.Contains(name, "/../"):
		return "", fmt.Errorf("%w: %q climbs out with ..", ErrUnsafeEntry, h.Name)
	case !validPath(name):
		return "", fmt.Errorf("%w: %q is not a clean relative path", ErrUnsafeEntry, h.Name)
	case name == part || strings.HasPrefix(name, part+"/"):
		return name, nil
	case strings.HasPrefix(part, name+"/") && h.Typeflag == tar.TypeDir:
		return name, nil
	}
	return "", fmt.Errorf("%w: %q is outside the part's path %s", ErrUnsafeEntry, h.Name, part)
}

// writeFile creates target, which must not exist (O_EXCL: nor be a link,
// which it then does not follow), with mode 0755 when the
// entry has an executable bit and 0644 otherwise, and copies r into it.
func writeFile(target string, r io.Reader, mode int64) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if mode&0o111 != 0 {
		perm = 0o755
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// The umask may have taken bits the artifact says the file has.
	return os.Chmod(target, perm)
}

// typeName says what a refused tar entry is.
func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}
