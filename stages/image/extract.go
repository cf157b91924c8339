package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrNoModel: an image holds no files under ModelPath.
var ErrNoModel = errors.New("no model files in the image")

// ExtractModel writes the files img holds under ModelPath into dst (created
// if missing), layer by layer as a container runtime would apply them; a
// later layer's file replaces an earlier one's. It refuses entries that are
// neither directories nor regular files and names that would leave dst, so
// that a hostile image cannot write elsewhere. (A champion's model is taken
// out of its image this way to be re-scored.)
func ExtractModel(img v1.Image, dst string) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("extract model: %w", err)
	}
	prefix := ModelPath[1:] + "/"
	files := 0
	for i, l := range layers {
		n, err := extractLayer(l, prefix, dst)
		if err != nil {
			return fmt.Errorf("extract model: layer %d: %w", i, err)
		}
		files += n
	}
	if files == 0 {
		return fmt.Errorf("extract model: %w (%s)", ErrNoModel, ModelPath)
	}
	return nil
}

func extractLayer(l v1.Layer, prefix, dst string) (int, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return files, err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if !strings.HasPrefix(name+"/", prefix) {
			continue
		}
		rel := strings.TrimPrefix(name, strings.TrimSuffix(prefix, "/"))
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if !strings.HasPrefix(target+string(filepath.Separator), filepath.Clean(dst)+string(filepath.Separator)) {
			return files, fmt.Errorf("%s: %w: leaves the model directory", h.Name, ErrUnsupportedFile)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return files, err
			}
		case tar.TypeReg:
			if err := writeFile(target, tr); err != nil {
				return files, fmt.Errorf("%s: %w", h.Name, err)
			}
			files++
		default:
			return files, fmt.Errorf("%s: %w: tar type %q", h.Name, ErrUnsupportedFile, h.Typeflag)
		}
	}
}

func writeFile(target string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
