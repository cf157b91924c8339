// Package smoke checks that what was gated is what ships: before an image
// is pushed, it starts the image's own entrypoint from the image's layers
// on a loopback port, waits until it is ready, sends it every test row and
// compares its answers with the predictions the evaluator scored. Images
// whose server modelci cannot run here (a base image of the user's) get
// their entrypoint checked in the merged filesystem, and the spec's smoke
// command run against them.
package smoke

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Sentinel errors, for errors.Is.
var (
	// ErrMismatch: the served model answered rows otherwise than the
	// evaluator scored them.
	ErrMismatch = errors.New("the image serves other predictions than the evaluated model")
	// ErrNotReady: the image's server exited, or did not become ready in
	// time.
	ErrNotReady = errors.New("the image's server did not become ready")
	// ErrEntrypoint: the entrypoint is missing from the image, or not an
	// executable file.
	ErrEntrypoint = errors.New("the image's entrypoint is not an executable file")
	// ErrCommand: the spec's smoke command failed.
	ErrCommand = errors.New("smoke command failed")
)

// rootfs is what the smoke test knows of an image's merged filesystem: a
// header per path (layers applied, whiteouts honoured), and the files
// extracted under dir for the prefixes asked.
type rootfs struct {
	dir     string
	headers map[string]*tar.Header // by clean relative path, "usr/local/bin/x"
}

// unpack reads img's merged filesystem, writing the regular files and
// directories under the given path prefixes ("usr/local/bin/x", "model")
// into dir; everything else is only indexed.
func unpack(img v1.Image, dir string, prefixes ...string) (*rootfs, error) {
	fs := &rootfs{dir: dir, headers: map[string]*tar.Header{}}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the image's filesystem: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") {
			continue
		}
		fs.headers[name] = h
		if !wanted(name, prefixes) {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			if err := writeFile(target, tr, h.FileInfo().Mode().Perm()); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
}

func wanted(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if name == p || strings.HasPrefix(name, p+"/") {
			return true
		}
	}
	return false
}

func writeFile(target string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o400)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// executable resolves name (absolute, or looked up in the image's PATH) in
// the merged filesystem, following symbolic links inside it, and says
// whether it ends at a regular file with an execute bit. It returns the
// path it resolved to.
func (fs *rootfs) executable(name string, env []string) (string, error) {
	candidates := []string{name}
	if !strings.HasPrefix(name, "/") {
		candidates = nil
		for _, dir := range strings.Split(imagePath(env), ":") {
			if dir != "" {
				candidates = append(candidates, path.Join(dir, name))
			}
		}
	}
	var last error
	for _, c := range candidates {
		p, err := fs.resolve(c)
		if err != nil {
			last = err
			continue
		}
		h := fs.headers[p]
		if h.Typeflag != tar.TypeReg || h.FileInfo().Mode().Perm()&0o111 == 0 {
			last = fmt.Errorf("%s is not an executable file (mode %v)", c, h.FileInfo().Mode())
			continue
		}
		return p, nil
	}
	if last == nil {
		last = fmt.Errorf("%s is not in the image", name)
	}
	return "", last
}

// resolve follows p's symbolic links inside the filesystem (at most 40).
func (fs *rootfs) resolve(p string) (string, error) {
	cur := path.Clean(strings.TrimPrefix(p, "/"))
	for range 40 {
		h, ok := fs.headers[cur]
		if !ok {
			return "", fmt.Errorf("%s is not in the image", "/"+cur)
		}
		if h.Typeflag != tar.TypeSymlink {
			return cur, nil
		}
		target := h.Linkname
		if !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir("/"+cur), target)
		}
		cur = path.Clean(strings.TrimPrefix(target, "/"))
	}
	return "", fmt.Errorf("%s: too many symbolic links", p)
}

// imagePath is the PATH of the image's environment, or the usual default.
func imagePath(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			return v
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// CheckEntrypoint checks that img's entrypoint (or, without one, its
// command) names an executable file of its merged filesystem: what a
// container runtime would start. It returns the argv it checked.
func CheckEntrypoint(ctx context.Context, img v1.Image) ([]string, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("smoke: the image's config: %w", err)
	}
	argv := append(append([]string{}, cf.Config.Entrypoint...), cf.Config.Cmd...)
	if len(argv) == 0 {
		return nil, fmt.Errorf("smoke: %w: the image names no entrypoint or command", ErrEntrypoint)
	}
	dir, err := os.MkdirTemp("", "modelci-smoke-")
	if err != nil {
		return argv, err
	}
	defer os.RemoveAll(dir)
	fs, err := unpack(img, dir)
	if err != nil {
		return argv, fmt.Errorf("smoke: %w", err)
	}
	if _, err := fs.executable(argv[0], cf.Config.Env); err != nil {
		return argv, fmt.Errorf("smoke: %w: %v", ErrEntrypoint, err)
	}
	return argv, nil
}
