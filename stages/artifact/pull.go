package artifact

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// Pulled says what Pull wrote.
type Pulled struct {
	Ref          string // as given: HOST[:PORT]/PATH@sha256:…
	Digest       v1.Hash
	ArtifactType string
	// Dir is the destination, absolute: each part is in Dir/Path.
	Dir   string
	Parts []Descriptor
}

// Pull fetches the artifact ref names (in a registry, by digest: a tag can
// move) and unpacks every part into dir/Path. dir must not exist, or be an
// empty directory. The tree is unpacked beside dir, in its parent, and
// renamed into place once every blob has matched its digest, so a failed
// pull leaves no dir and nothing beside it; a volume's mount point cannot
// be replaced that way: pull into a directory inside the volume.
func Pull(ctx context.Context, ref, dir string, opts ...Option) (Pulled, error) {
	o := makeOptions(opts)
	r, err := oci.ParseRef(ref)
	if err != nil {
		return Pulled{}, fmt.Errorf("pull artifact: %w", err)
	}
	if err := r.RequireRegistry(); err != nil {
		return Pulled{}, fmt.Errorf("pull artifact: %w", err)
	}
	if err := r.RequireDigest(); err != nil {
		return Pulled{}, fmt.Errorf("pull artifact: %w", err)
	}
	dest, err := checkDest(dir)
	if err != nil {
		return Pulled{}, fmt.Errorf("pull artifact %s: %w", ref, err)
	}
	a, err := registry.Pull(ctx, ref, o.registry...)
	if err != nil {
		return Pulled{}, fmt.Errorf("pull artifact: %w", err)
	}
	img, m, err := readManifest(a, r.Digest(), o)
	if err != nil {
		return Pulled{}, fmt.Errorf("pull artifact %s: %w", ref, err)
	}
	out := Pulled{Ref: ref, Digest: r.Digest(), ArtifactType: m.ArtifactType, Dir: dest}
	for _, l := range m.Layers {
		out.Parts = append(out.Parts, Descriptor{Path: l.Annotations[AnnotationPath], MediaType: string(l.MediaType), Digest: l.Digest, Size: l.Size})
	}
	if err := unpack(ctx, img, out.Parts, dest, o.maxSize); err != nil {
		return Pulled{}, fmt.Errorf("pull artifact %s: %w", ref, err)
	}
	return out, nil
}

// checkDest returns dir made absolute once it is known to be absent or an
// empty directory.
func checkDest(dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("%w: no destination", ErrDestNotEmpty)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Lstat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return abs, nil
	case err != nil:
		return "", err
	case !fi.IsDir():
		return "", fmt.Errorf("%s: %w: it is a %v", abs, ErrDestNotEmpty, fi.Mode().Type())
	}
	names, err := os.ReadDir(abs)
	if err != nil {
		return "", err
	}
	if len(names) > 0 {
		return "", fmt.Errorf("%s: %w: it holds %s", abs, ErrDestNotEmpty, names[0].Name())
	}
	return abs, nil
}

// readManifest checks the manifest against the digest asked for and
// against what an artifact must be, before any blob is fetched.
func readManifest(a registry.Artifact, want v1.Hash, o *options) (v1.Image, *manifest, error) {
	raw, err := a.RawManifest()
	if err != nil {
		return nil, nil, err
	}
	if got, _, err := v1.SHA256(bytes.NewReader(raw)); err != nil || got != want {
		return nil, nil, fmt.Errorf("%w: the manifest served hashes to %s", ErrDigestMismatch, got)
	}
	img, ok := a.(v1.Image)
	if !ok {
		return nil, nil, fmt.Errorf("%w: an index, not an image manifest", ErrNotArtifact)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, fmt.Errorf("%w: manifest: %w", ErrNotArtifact, err)
	}
	switch {
	case m.SchemaVersion != 2 || m.MediaType != types.OCIManifestSchema1:
		return nil, nil, fmt.Errorf("%w: manifest media type %q, schema version %d", ErrNotArtifact, m.MediaType, m.SchemaVersion)
	case m.ArtifactType == "":
		return nil, nil, fmt.Errorf("%w: no artifactType", ErrNotArtifact)
	case o.artifactType != "" && m.ArtifactType != o.artifactType:
		return nil, nil, fmt.Errorf("%w: artifactType %s, want %s", ErrNotArtifact, m.ArtifactType, o.artifactType)
	case len(m.Layers) == 0:
		return nil, nil, fmt.Errorf("%w: no layers", ErrNotArtifact)
	}
	var (
		paths []string
		total int64
	)
	for i, l := range m.Layers {
		p := l.Annotations[AnnotationPath]
		if ok, _ := isTar(string(l.MediaType)); !ok {
			return nil, nil, fmt.Errorf("%w: layer %d (%s): media type %q is not a tar", ErrNotArtifact, i, p, l.MediaType)
		}
		if len(l.URLs) > 0 || l.Size < 0 {
			// Foreign URLs would be fetched from elsewhere.
			return nil, nil, fmt.Errorf("%w: layer %d (%s): urls or a negative size", ErrNotArtifact, i, p)
		}
		if _, err := v1.NewHash(l.Digest.String()); err != nil || l.Digest.Algorithm != "sha256" {
			return nil, nil, fmt.Errorf("%w: layer %d (%s): digest %q", ErrNotArtifact, i, p, l.Digest)
		}
		paths = append(paths, p)
		if total += l.Size; total > o.maxSize || total < 0 {
			return nil, nil, fmt.Errorf("%w: its blobs pass the limit of %d bytes", ErrTooLarge, o.maxSize)
		}
	}
	if err := checkPaths(paths); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNotArtifact, err)
	}
	return img, &m, nil
}

// unpack extracts every part into a temporary directory beside dest and
// renames it to dest once all of them have been checked.
func unpack(ctx context.Context, img v1.Image, parts []Descriptor, dest string, maxSize int64) (err error) {
	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".modelci-pull-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	budget := maxSize
	for _, d := range parts {
		if err := unpackLayer(ctx, img, d, tmp, &budget); errors.Is(err, ErrTooLarge) {
			return fmt.Errorf("part %s (%s): %w (the files' limit is %d bytes)", d.Path, d.Digest, err, maxSize)
		} else if err != nil {
			return fmt.Errorf("part %s (%s): %w", d.Path, d.Digest, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	// An empty destination goes first (os.Rename will not replace a
	// directory); a mount point cannot go, and says so.
	if err := os.Remove(dest); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replace the empty %s (pull into a directory inside a mount point, not onto it): %w", dest, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("move into place: %w", err)
	}
	return nil
}

// unpackLayer streams one blob through a digest check into extractTar.
func unpackLayer(ctx context.Context, img v1.Image, d Descriptor, root string, budget *int64) error {
	l, err := img.LayerByDigest(d.Digest)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	v := &verifier{r: io.LimitReader(rc, d.Size), h: sha256.New(), want: d.Digest, size: d.Size}
	var r io.Reader = ctxReader{ctx, v}
	_, gz := isTar(d.MediaType)
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return v.explain(fmt.Errorf("gzip: %w", err))
		}
		defer zr.Close()
		r = zr
	}
	if err := extractTar(r, root, d.Path, budget); err != nil {
		if errors.Is(err, ErrUnsafeEntry) || errors.Is(err, ErrTooLarge) {
			return err
		}
		// Bytes that are not what was pushed explain a broken tar best.
		return v.explain(err)
	}
	// The rest of the blob (the tar's padding) is read for the digest.
	return v.drain()
}

// verifier hashes and counts a blob as it is read; at its end (size
// bytes, which the reader is limited to) it fails with ErrDigestMismatch
// unless the blob had size bytes that hash to want. It checks on its own
// rather than through the registry client, for an error callers can act
// on.
type verifier struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want v1.Hash
	size int64
	err  error // the check's outcome, once at the end
	done bool
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.done {
		return 0, v.endErr()
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	// At the end, or with every byte in (the registry client's own check
	// fails the read that brings the last ones), the hash decides.
	if errors.Is(err, io.EOF) || (err != nil && v.n == v.size) {
		v.done = true
		if got := hex.EncodeToString(v.h.Sum(nil)); v.n != v.size || got != v.want.Hex {
			v.err = fmt.Errorf("%w: blob %s: got %d bytes hashing to sha256:%s, want %d bytes", ErrDigestMismatch, v.want, v.n, got, v.size)
		}
		return n, v.endErr()
	}
	return n, err
}

func (v *verifier) endErr() error {
	if v.err != nil {
		return v.err
	}
	return io.EOF
}

// drain reads the blob to its end and returns the check's outcome.
func (v *verifier) drain() error {
	if _, err := io.Copy(io.Discard, v); err != nil {
		return err
	}
	return nil
}

// explain returns a digest mismatch in place of err when the blob turns
// out not to be what was pushed, else err.
func (v *verifier) explain(err error) error {
	if derr := v.drain(); errors.Is(derr, ErrDigestMismatch) {
		return derr
	}
	return err
}

// ctxReader stops a long read when the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
