package proc

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrProjectTooLarge: the files a staging directory would hold are over
// MaxStageBytes.
var ErrProjectTooLarge = errors.New("project too large to stage")

// MaxStageBytes bounds the bytes copied into a staging directory. The copy
// is a real copy, not hard links: a hard link shares the file, so a trainer
// writing to ./train.py would change the project's. A project over the
// bound is refused; train.workdir (evaluate.workdir) runs in place instead.
const MaxStageBytes = 1 << 30

// maxStageBytes is MaxStageBytes; tests lower it.
var maxStageBytes int64 = MaxStageBytes

// ExcludedNames are the base names, matched without regard to case, that a
// staging directory never holds, files or directories: data files, keys and
// certificates (and the usual files that hold credentials), and git's
// metadata.
var ExcludedNames = []string{"*.csv", "*.tsv", "*.parquet", "*.key", "*.pem", "*.p12", "*.pfx", ".env", ".netrc", ".npmrc", ".pypirc", ".docker", "id_rsa*", "id_ed25519*", "id_ecdsa*", ".git"}

// stager plans and makes a staging copy of a project directory.
type stager struct {
	src     string            // the project, symlinks resolved
	dst     string            // the staging directory, existing and empty
	skip    map[string]string // a path (symlinks resolved) left out → why
	content []contentRule     // files whose bytes are left out under any name
	log     io.Writer

	dirs   []string // relative to src, parents first
	files  []plannedFile
	links  []string
	copied map[string]bool // relative paths of what is copied: dirs and files
	left   []string        // what was left out, for the log
	total  int64
}

type plannedFile struct {
	rel  string
	perm fs.FileMode
}

type contentRule struct {
	path string
	size int64
	sum  [sha256.Size]byte
}

// stage copies project into dst, an existing empty directory, leaving out
// ExcludedNames, the paths in exclude (absolute, or relative to project:
// the output directory, the signing key), every regular file whose bytes
// equal those of a file in excludeContent (the data set, under any name) and
// symlinks that point out of the project or at something left out. Files
// keep their permission bits. It refuses, with ErrProjectTooLarge, a copy over
// maxStageBytes before copying anything. An empty project stages nothing.
func stage(project, dst string, exclude, excludeContent []string, log io.Writer) error {
	if project == "" {
		return nil
	}
	src, err := filepath.EvalSymlinks(project)
	if err != nil {
		return fmt.Errorf("staging: project directory: %w", err)
	}
	if src, err = filepath.Abs(src); err != nil {
		return fmt.Errorf("staging: project directory: %w", err)
	}
	s := &stager{src: src, dst: dst, skip: map[string]string{}, log: log, copied: map[string]bool{".": true}}
	for _, p := range exclude {
		if !filepath.IsAbs(p) {
			p = filepath.Join(project, p)
		}
		s.skip[realPath(p)] = "excluded"
	}
	// The staging directory itself, should TMPDIR lie inside the project.
	s.skip[realPath(filepath.Dir(dst))] = "modelci's own"
	for _, p := range excludeContent {
		r, err := sumFile(p)
		if err != nil {
			return fmt.Errorf("staging: a file to leave out: %w", err)
		}
		s.content = append(s.content, r)
	}
	if err := filepath.WalkDir(src, s.visit); err != nil {
		return fmt.Errorf("staging %s: %w", project, err)
	}
	if s.total > maxStageBytes {
		return fmt.Errorf("staging %s: %d MiB of files to copy, over the %d MiB bound: %w; set train.workdir (evaluate.workdir) to run in a directory in place, unstaged",
			project, s.total>>20, maxStageBytes>>20, ErrProjectTooLarge)
	}
	return s.copy()
}

// realPath resolves p's symlinks when it exists, so that it compares with
// the walked paths.
func realPath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	return filepath.Clean(p)
}

func (s *stager) visit(path string, d fs.DirEntry, err error) error {
	if path == s.src {
		return err
	}
	rel, relErr := filepath.Rel(s.src, path)
	if relErr != nil {
		return relErr
	}
	if err != nil {
		// An unreadable directory is staged empty; an unreadable entry is
		// left out.
		s.leave(rel, "unreadable: "+err.Error(), true)
		return nil
	}
	if why, ok := s.skip[path]; ok {
		s.leave(rel, why, false)
		return skipEntry(d)
	}
	if excludedName(d.Name()) {
		s.leave(rel, "", false)
		return skipEntry(d)
	}
	switch t := d.Type(); {
	case t.IsDir():
		s.dirs = append(s.dirs, rel)
		s.copied[rel] = true
	case t&fs.ModeSymlink != 0:
		s.links = append(s.links, rel)
	case t.IsRegular():
		info, err := d.Info()
		if err != nil {
			s.leave(rel, "unreadable: "+err.Error(), true)
			return nil
		}
		same, err := s.sameContent(path, info.Size())
		if err != nil {
			s.leave(rel, "unreadable: "+err.Error(), true)
			return nil
		}
		if same != "" {
			s.leave(rel, "the same bytes as "+same, false)
			return nil
		}
		s.files = append(s.files, plannedFile{rel: rel, perm: info.Mode().Perm()})
		s.copied[rel] = true
		s.total += info.Size()
	default:
		s.leave(rel, "not a regular file", true)
	}
	return nil
}

func skipEntry(d fs.DirEntry) error {
	if d.IsDir() {
		return fs.SkipDir
	}
	return nil
}

func excludedName(name string) bool {
	lower := strings.ToLower(name)
	for _, pat := range ExcludedNames {
		if ok, _ := filepath.Match(pat, lower); ok {
			return true
		}
	}
	return false
}

// sameContent returns the excluded file whose bytes equal those of path, or
// "": sizes first, the hash only when a size matches.
func (s *stager) sameContent(path string, size int64) (string, error) {
	var sum *[sha256.Size]byte
	for _, c := range s.content {
		if c.size != size || size == 0 {
			continue
		}
		if sum == nil {
			r, err := sumFile(path)
			if err != nil {
				return "", err
			}
			sum = &r.sum
		}
		if *sum == c.sum {
			return c.path, nil
		}
	}
	return "", nil
}

func sumFile(path string) (contentRule, error) {
	f, err := os.Open(path)
	if err != nil {
		return contentRule{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return contentRule{}, fmt.Errorf("%s: %w", path, err)
	}
	r := contentRule{path: path, size: n}
	copy(r.sum[:], h.Sum(nil))
	return r, nil
}

// leave records rel as left out; loud ones are logged one by one, the
// rest in copy's summary line.
func (s *stager) leave(rel, why string, loud bool) {
	if loud {
		fmt.Fprintf(s.log, "modelci: staging: left out %s: %s\n", rel, why)
		return
	}
	if why != "" {
		rel += " (" + why + ")"
	}
	s.left = append(s.left, rel)
}

func (s *stager) copy() error {
	for _, rel := range s.dirs {
		// Owner-writable, so that files can be copied in and the
		// directory removed afterwards.
		info, err := os.Stat(filepath.Join(s.src, rel))
		perm := fs.FileMode(0o755)
		if err == nil {
			perm = info.Mode().Perm() | 0o700
		}
		if err := os.Mkdir(filepath.Join(s.dst, rel), perm); err != nil {
			return fmt.Errorf("staging: %w", err)
		}
	}
	for _, f := range s.files {
		if err := copyFile(filepath.Join(s.src, f.rel), filepath.Join(s.dst, f.rel), f.perm); err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) {
				delete(s.copied, f.rel)
				s.leave(f.rel, "unreadable: "+err.Error(), true)
				continue
			}
			return fmt.Errorf("staging: %w", err)
		}
	}
	for _, rel := range s.links {
		s.link(rel)
	}
	msg := fmt.Sprintf("modelci: staging: copied %d files (%d KiB) of %s into a fresh working directory", len(s.files), s.total>>10, s.src)
	if len(s.left) > 0 {
		const show = 10
		names := s.left
		more := ""
		if len(names) > show {
			names, more = names[:show], fmt.Sprintf(" and %d more", len(s.left)-show)
		}
		msg += "; left out " + strings.Join(names, ", ") + more
	}
	fmt.Fprintln(s.log, msg)
	return nil
}

// link recreates the symlink rel as a relative link when it resolves to
// something copied inside the project, and leaves it out otherwise.
func (s *stager) link(rel string) {
	target, err := filepath.EvalSymlinks(filepath.Join(s.src, rel))
	if err != nil {
		s.leave(rel, "a symlink that does not resolve", true)
		return
	}
	in, err := filepath.Rel(s.src, target)
	if err != nil || in == ".." || strings.HasPrefix(in, ".."+string(filepath.Separator)) {
		s.leave(rel, "a symlink to "+target+", outside the project", true)
		return
	}
	if !s.copied[in] {
		s.leave(rel, "a symlink to "+in+", which is left out", true)
		return
	}
	to, err := filepath.Rel(filepath.Dir(filepath.Join(s.dst, rel)), filepath.Join(s.dst, in))
	if err == nil {
		err = os.Symlink(to, filepath.Join(s.dst, rel))
	}
	if err != nil {
		s.leave(rel, "a symlink: "+err.Error(), true)
	}
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm) // the exact bits, whatever the umask
}

// removeAll removes dir even where the child left directories without
// write permission.
func removeAll(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// Stage is the staging copy Run makes, into dst (an existing empty
// directory), for a command that runs elsewhere: a Job on a cluster.
func Stage(project, dst string, exclude, excludeContent []string, log io.Writer) error {
	return stage(project, dst, exclude, excludeContent, log)
}
