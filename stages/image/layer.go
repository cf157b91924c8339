package image

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
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things live inside the image.
const (
	RuntimePath = "/usr/local/bin/" + RuntimeName
	ModelPath   = "/model"
)

// DefaultSizeCutoff is the size from which a model file gets a layer of its
// own, stored uncompressed: weights do not compress, and a layer holding one
// unchanged file keeps its digest across retrains, so it is not uploaded
// again.
const DefaultSizeCutoff = 1 << 20

// gzipLevel is fixed: the compressed bytes, and so the layer digests, depend
// on it. BestSpeed is what go-containerregistry and ko use.
const gzipLevel = gzip.BestSpeed

var (
	// ErrUnsupportedFile: the model directory holds a symlink, device, socket
	// or pipe; only regular files and directories go into an image.
	ErrUnsupportedFile = errors.New("unsupported file type")
	// ErrFileChanged: a file vanished or changed while the image was built
	// or written, so the layer no longer matches its digest.
	ErrFileChanged = errors.New("file changed during the image build")
	// ErrEmptyModel: the model directory has no regular file.
	ErrEmptyModel = errors.New("model directory has no files")
)

// epoch is every file's modification time. Tar times are fixed rather than
// taken from SOURCE_DATE_EPOCH so that an unchanged binary or weights file
// keeps its layer digest across builds of different commits; the build time
// goes in the config's created field.
var epoch = time.Unix(0, 0).UTC()

// entry is one tar entry: a directory (src == "") or a file copied from src.
type entry struct {
	name string // tar name without a leading slash; directories end in "/"
	src  string
	size int64
	mode int64
}

// layer is a v1.Layer whose tar is generated from files on demand, so that
// large weights stream instead of sitting in memory. The digest pass and each
// read regenerate the same bytes; a file that changes in between is caught by
// a size check here and by the digest check when blobs are written.
type layer struct {
	entries []entry
	gzip    bool

	once   sync.Once
	digest v1.Hash
	diffID v1.Hash
	size   int64
	err    error
}

var _ v1.Layer = (*layer)(nil)

// compute fixes the layer's digests from one pass that discards the bytes.
func (l *layer) compute() error {
	l.once.Do(func() { l.err = l.generate(io.Discard) })
	return l.err
}

// spill fixes the layer's digests from one pass that also writes the
// compressed bytes into dir as a blob named by its digest, so that writing
// the layer later finds it there. It does nothing when the digests are
// already known.
func (l *layer) spill(ctx context.Context, dir string) error {
	l.once.Do(func() {
		tmp, err := os.CreateTemp(dir, TempPrefix+"layer-")
		if err != nil {
			l.err = err
			return
		}
		defer os.Remove(tmp.Name()) // a no-op once renamed
		err = l.generate(ctxWriter{ctx, tmp})
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(tmp.Name(), 0o644)
		}
		if err == nil {
			err = os.Rename(tmp.Name(), filepath.Join(dir, l.digest.Hex))
		}
		l.err = err
	})
	return l.err
}

// generate writes the compressed layer to w and sets the digests and size.
func (l *layer) generate(w io.Writer) error {
	diff, dig, n := sha256.New(), sha256.New(), &counter{}
	out := io.MultiWriter(w, dig, n)
	if !l.gzip {
		if err := writeTar(out, l.entries); err != nil {
			return err
		}
		l.diffID, l.digest, l.size = hashOf(dig), hashOf(dig), n.n
		return nil
	}
	zw, err := gzip.NewWriterLevel(out, gzipLevel)
	if err != nil {
		return err
	}
	if err := writeTar(io.MultiWriter(diff, zw), l.entries); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	l.diffID, l.digest, l.size = hashOf(diff), hashOf(dig), n.n
	return nil
}

// ctxWriter stops a long write when the context is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

func (l *layer) Digest() (v1.Hash, error) { return l.digest, l.compute() }
func (l *layer) DiffID() (v1.Hash, error) { return l.diffID, l.compute() }
func (l *layer) Size() (int64, error)     { return l.size, l.compute() }

func (l *layer) MediaType() (types.MediaType, error) {
	if l.gzip {
		return types.OCILayer, nil
	}
	return types.OCIUncompressedLayer, nil
}

func (l *layer) Uncompressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, l.entries)) }()
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
			err = writeTar(zw, l.entries)
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// writeTar writes entries in order with fixed owners, modes and times and
// no user or group names, so the bytes depend only on names and contents.
func writeTar(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if e.src == "" {
			hdr.Typeflag = tar.TypeDir
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("tar %s: %w", e.name, err)
			}
			continue
		}
		hdr.Typeflag = tar.TypeReg
		hdr.Size = e.size
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", e.name, err)
		}
		if err := copyFile(tw, e); err != nil {
			return err
		}
	}
	return tw.Close()
}

// copyFile copies exactly e.size bytes of e.src and checks that the file has
// neither shrunk nor grown since it was listed.
func copyFile(w io.Writer, e entry) error {
	f, err := os.Open(e.src)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w: it vanished", e.src, ErrFileChanged)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", e.src, err)
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

// runtimeLayer holds the runtime binary at RuntimePath.
func runtimeLayer(bin string) (*layer, error) {
	fi, err := os.Stat(bin)
	if err != nil {
		return nil, fmt.Errorf("runtime binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("runtime binary %s: %w: %v", bin, ErrUnsupportedFile, fi.Mode().Type())
	}
	name := RuntimePath[1:]
	entries := parentDirs(name)
	entries = append(entries, entry{name: name, src: bin, size: fi.Size(), mode: 0o755})
	return &layer{entries: entries, gzip: true}, nil
}

// modelLayers lists dir (sorted, depth first) and returns the layers for it
// under ModelPath: first one gzip layer with every directory and every file
// smaller than cutoff, then one uncompressed layer per larger file.
func modelLayers(dir string, cutoff int64) ([]*layer, error) {
	small := &layer{gzip: true}
	var big []*layer
	files := 0
	root := ModelPath[1:]
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := path.Join(root, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			small.entries = append(small.entries, entry{name: name + "/", mode: 0o755})
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("model file %s: %w: %v", p, ErrUnsupportedFile, d.Type())
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("model file %s: %w: %w", p, ErrFileChanged, err)
		}
		files++
		e := entry{name: name, src: p, size: fi.Size(), mode: 0o644}
		if fi.Size() >= cutoff {
			big = append(big, &layer{entries: append(parentDirs(name), e)})
		} else {
			small.entries = append(small.entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("model directory %s: %w", dir, err)
	}
	if files == 0 {
		return nil, fmt.Errorf("model directory %s: %w", dir, ErrEmptyModel)
	}
	return append([]*layer{small}, big...), nil
}

// parentDirs returns directory entries for every parent of name, outermost
// first, so that each layer unpacks on its own.
func parentDirs(name string) []entry {
	var dirs []entry
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		dirs = append([]entry{{name: d + "/", mode: 0o755}}, dirs...)
	}
	return dirs
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}
