package artifact

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is every entry's time, so that digests depend on names, modes and
// contents alone.
var epoch = time.Unix(0, 0).UTC()

// gzipLevel is fixed: the compressed bytes, and so the digests, depend on
// it.
const gzipLevel = gzip.BestSpeed

// entry is one tar entry: a directory (src == "") or a file copied from src.
type entry struct {
	name string // slash-separated, no leading slash; directories end in "/"
	src  string
	size int64
	mode int64
}

// layer is one part's tar, generated from the files on every read, so
// that a large data set streams instead of sitting in memory. hash fixes
// its digests; a file that changes afterwards is caught by a size check
// here and by the registry's digest check on upload.
type layer struct {
	// ctx stops the generation of the tar: v1.Layer's readers take none.
	ctx       context.Context
	entries   []entry
	gzip      bool
	mediaType types.MediaType
	digest    v1.Hash
	diffID    v1.Hash
	size      int64
}

// listPart lists p.Dir under p.Path: the path's parent directories, the
// path itself, then the directory's contents, sorted, depth first.
func listPart(ctx context.Context, p Part) (*layer, error) {
	mt := p.MediaType
	if mt == "" {
		mt = MediaTypeTar
	}
	ok, gz := isTar(mt)
	if !ok {
		return nil, fmt.Errorf("part %s: %w: media type %q is not a tar (.tar or .tar+gzip)", p.Path, ErrBadPart, mt)
	}
	// The directory itself may be reached through a link (a mounted
	// volume); what it holds may not.
	root, err := filepath.EvalSymlinks(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("part %s: %w: %w", p.Path, ErrBadPart, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("part %s: %w: %s is not a directory", p.Path, ErrBadPart, p.Dir)
	}
	l := &layer{ctx: ctx, gzip: gz, mediaType: types.MediaType(mt)}
	for d := path.Dir(p.Path); d != "."; d = path.Dir(d) {
		l.entries = append([]entry{{name: d + "/", mode: 0o755}}, l.entries...)
	}
	err = filepath.WalkDir(root, func(f string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, f)
		if err != nil {
			return err
		}
		name := path.Join(p.Path, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			l.entries = append(l.entries, entry{name: name + "/", mode: 0o755})
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: %w: %v", f, ErrUnsupportedFile, d.Type())
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("%s: %w: %w", f, ErrFileChanged, err)
		}
		mode := int64(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		l.entries = append(l.entries, entry{name: name, src: f, size: fi.Size(), mode: mode})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("part %s (%s): %w", p.Path, p.Dir, err)
	}
	return l, nil
}

// hash reads every file once to fix the layer's digests and size.
func (l *layer) hash() error {
	diff, dig, n := sha256.New(), sha256.New(), &counter{}
	out := io.MultiWriter(dig, n)
	if !l.gzip {
		if err := writeTar(l.ctx, out, l.entries); err != nil {
			return err
		}
		l.diffID, l.digest, l.size = hashOf(dig), hashOf(dig), n.n
		return nil
	}
	zw, err := gzip.NewWriterLevel(out, gzipLevel)
	if err != nil {
		return err
	}
	if err := writeTar(l.ctx, io.MultiWriter(diff, zw), l.entries); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	l.diffID, l.digest, l.size = hashOf(diff), hashOf(dig), n.n
	return nil
}

func (l *layer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *layer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *layer) Size() (int64, error)                { return l.size, nil }
func (l *layer) MediaType() (types.MediaType, error) { return l.mediaType, nil }

func (l *layer) Uncompressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(l.ctx, pw, l.entries)) }()
	return pr, nil
}

func (l *layer) Compressed() (io.ReadCloser, error) {
	if !l.gzip {
		return l.Uncompressed()
	}
	pr, pw := io.Pipe()
	go func() {
		zw, err := gzip.NewWriterLevel(pw, gzipLevel)
		if err == nil {
			err = writeTar(l.ctx, zw, l.entries)
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// writeTar writes entries in order with fixed owners, times and modes and
// no user or group names.
func writeTar(ctx context.Context, w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeDir}
		if e.src != "" {
			hdr.Typeflag, hdr.Size = tar.TypeReg, e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", e.name, err)
		}
		if e.src != "" {
			if err := copyFile(tw, e); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// copyFile copies exactly e.size bytes of e.src and checks that the file
// has neither shrunk nor grown since it was listed.
func copyFile(w io.Writer, e entry) error {
	f, err := os.Open(e.src)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w: it vanished", e.src, ErrFileChanged)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyN(w, f, e.size)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w: %d bytes, listed with %d", e.src, ErrFileChanged, n, e.size)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", e.src, err)
	}
	var one [1]byte
	if k, _ := f.Read(one[:]); k > 0 {
		return fmt.Errorf("%s: %w: larger than the %d bytes listed", e.src, ErrFileChanged, e.size)
	}
	return nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}
