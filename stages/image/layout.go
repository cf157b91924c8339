package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/oci"
)

// AnnotationRefName tags a descriptor in a layout's index.json.
const AnnotationRefName = "org.opencontainers.image.ref.name"

var (
	// ErrBadTag: not a valid OCI tag.
	ErrBadTag = errors.New("malformed tag")
	// ErrBadLayout: the directory's index.json cannot be read as an OCI index.
	ErrBadLayout = errors.New("malformed OCI layout")
)

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Tag is the image tag for a model version: "+" is not allowed in tags and
// is written as "_".
func Tag(version string) string { return strings.ReplaceAll(version, "+", "_") }

// Written says what WriteLayout (or WriteBlobs and TagLayout) did.
type Written struct {
	Digest    v1.Hash
	MediaType types.MediaType
	Size      int64
	// Descriptor is the image's (or index's) descriptor as index.json lists
	// it, without the tag annotation: digest, media type, size and, for a
	// single image, its platform.
	Descriptor v1.Descriptor
	// Ref is oci-layout://ABS_DIR@sha256:…; empty until the image is tagged
	// (WriteBlobs alone leaves nothing in index.json that readers could
	// find it by).
	Ref string
	Tag string
	// Moved is set when the tag pointed at another digest, Previous, before;
	// the layout keeps that image's blobs.
	Moved    bool
	Previous v1.Hash
}

// WriteLayout writes an image or image index (and every blob under it) to
// the OCI image layout at dir, creating it when missing, and points tag at
// it in index.json, replacing any descriptor the tag was on: WriteBlobs,
// then TagLayout.
//
// Every file is written to a temporary name and renamed, so an interrupted
// write leaves the layout as it was, apart from unreferenced blobs. Blobs are
// checked against their digests as they are written. One writer per layout
// at a time: callers hold the output directory's lock.
func WriteLayout(ctx context.Context, dir string, a mutate.Appendable, tag string) (Written, error) {
	w, err := WriteBlobs(ctx, dir, a, tag)
	if err != nil {
		return Written{}, err
	}
	return TagLayout(dir, w)
}

// WriteBlobs writes an image or image index, every blob under it and its
// manifest, into the layout at dir, content-addressed, and leaves
// index.json as it is: nothing in the layout names the image until
// TagLayout(dir, w) points w.Tag at it. A caller that gives up in between
// leaves index.json byte for byte as it was, and only blobs that nothing
// references (which modelci gc removes). The oci-layout file is written
// when missing.
func WriteBlobs(ctx context.Context, dir string, a mutate.Appendable, tag string) (Written, error) {
	if !oci.ValidTag(tag) {
		return Written{}, fmt.Errorf("layout %s: tag %q: %w", dir, tag, ErrBadTag)
	}
	w, err := writeBlobs(ctx, dir, a)
	w.Tag = tag
	return w, err
}

// writeUntagged writes a as WriteBlobs does, for an index.json entry
// without a tag marked as modelci's entry (AnnotationLayoutEntry).
func writeUntagged(ctx context.Context, dir string, a mutate.Appendable, entry string) (Written, error) {
	w, err := writeBlobs(ctx, dir, a)
	if err != nil {
		return Written{}, err
	}
	w.Descriptor.Annotations = map[string]string{AnnotationLayoutEntry: entry}
	return w, nil
}

func writeBlobs(ctx context.Context, dir string, a mutate.Appendable) (Written, error) {
	desc, err := partial.Descriptor(a)
	if err != nil {
		return Written{}, fmt.Errorf("layout %s: %w", dir, err)
	}
	w := &layoutWriter{dir: dir, written: map[v1.Hash]bool{}}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return Written{}, fmt.Errorf("layout %s: %w", dir, err)
	}
	switch t := a.(type) {
	case v1.ImageIndex:
		err = w.index(ctx, t)
	case v1.Image:
		var cf *v1.ConfigFile
		if cf, err = t.ConfigFile(); err == nil {
			desc.Platform = cf.Platform()
			err = w.image(ctx, t)
		}
	default:
		err = fmt.Errorf("%T is neither an image nor an index", a)
	}
	if err != nil {
		return Written{}, fmt.Errorf("layout %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic(filepath.Join(dir, "oci-layout"), []byte(layoutVersion)); err != nil {
			return Written{}, fmt.Errorf("layout %s: %w", dir, err)
		}
	}
	desc.Annotations = nil
	return Written{Digest: desc.Digest, MediaType: desc.MediaType, Size: desc.Size, Descriptor: *desc}, nil
}

// layoutVersion is the content of a layout's oci-layout file.
const layoutVersion = `{"imageLayoutVersion":"1.0.0"}`

// TagLayout points w.Tag at the image WriteBlobs wrote into the layout at
// dir, replacing any descriptor the tag was on, and lists untagged (the
// runtime image and ModelPack artifact Run wrote beside it) after it
// without a tag, once each. index.json is replaced in one rename of a
// synced temporary file: readers, and a process killed meanwhile, see the
// old index or the new one.
func TagLayout(dir string, w Written, untagged ...Written) (Written, error) {
	if !oci.ValidTag(w.Tag) {
		return Written{}, fmt.Errorf("layout %s: tag %q: %w", dir, w.Tag, ErrBadTag)
	}
	for _, x := range append([]Written{w}, untagged...) {
		if x.Descriptor.Digest != x.Digest || x.Digest == (v1.Hash{}) {
			return Written{}, fmt.Errorf("layout %s: tag %s: no descriptor for %s (written by WriteBlobs?)", dir, w.Tag, x.Digest)
		}
		manifest := filepath.Join(dir, "blobs", x.Digest.Algorithm, x.Digest.Hex)
		if fi, err := os.Stat(manifest); err != nil || fi.Size() != x.Size {
			return Written{}, fmt.Errorf("layout %s: tag %s: manifest %s: %w", dir, w.Tag, x.Digest, errOr(err, fs.ErrNotExist))
		}
	}
	index, err := readIndex(dir)
	if err != nil {
		return Written{}, err
	}
	out := w
	out.Moved, out.Previous = false, v1.Hash{}
	desc := w.Descriptor
	desc.Annotations = map[string]string{AnnotationRefName: w.Tag}
	// The tag keeps its place in the list when it moves; a new one comes last.
	listed := map[v1.Hash]bool{w.Digest: true}
	kept := index.Manifests[:0]
	placed := false
	for _, d := range index.Manifests {
		if d.Annotations[AnnotationRefName] == w.Tag {
			out.Previous = d.Digest
			out.Moved = d.Digest != w.Digest
			if !placed {
				kept = append(kept, desc)
				placed = true
			}
			continue
		}
		listed[d.Digest] = true
		kept = append(kept, d)
	}
	if !placed {
		kept = append(kept, desc)
	}
	index.Manifests = kept
	for _, u := range untagged {
		if listed[u.Digest] {
			continue
		}
		listed[u.Digest] = true
		index.Manifests = append(index.Manifests, u.Descriptor)
	}
	if err := writeIndex(dir, index); err != nil {
		return Written{}, err
	}
	ref, err := oci.LayoutRef(dir, w.Digest)
	if err != nil {
		return Written{}, err
	}
	out.Ref = ref.String()
	return out, nil
}

// writeIndex replaces dir's index.json with index (writeFileAtomic).
func writeIndex(dir string, index *v1.IndexManifest) error {
	raw, err := json.MarshalIndent(index, "", "  ")
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "index.json"), raw); err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	return nil
}

// PruneUntagged removes from the index.json of the layout at dir the
// untagged entries modelci wrote (AnnotationLayoutEntry) whose digest keep
// does not hold, and returns how many it removed; their blobs stay until
// a garbage collection finds nothing reaching them. Callers hold the
// output directory's lock.
func PruneUntagged(dir string, keep map[v1.Hash]bool) (int, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	index, err := readIndex(dir)
	if err != nil {
		return 0, err
	}
	kept := index.Manifests[:0]
	removed := 0
	for _, d := range index.Manifests {
		if d.Annotations[AnnotationLayoutEntry] != "" && d.Annotations[AnnotationRefName] == "" && !keep[d.Digest] {
			removed++
			continue
		}
		kept = append(kept, d)
	}
	if removed == 0 {
		return 0, nil
	}
	index.Manifests = kept
	return removed, writeIndex(dir, index)
}

func errOr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// View makes dir an OCI layout that holds w's image alone, tagged w.Tag
// (and untagged, listed without a tag: read them by digest), and shares the blobs of the layout at layout (its blobs directory is a
// symbolic link to layout's): a reference to the image, by digest or by tag,
// that readers (go-containerregistry, skopeo, umoci) find before the image
// is tagged in layout itself, at no cost in disk. It returns the view's
// oci-layout:// reference by digest. Removing dir (os.RemoveAll) removes the
// link, not the blobs.
func View(dir, layout string, w Written, untagged ...Written) (string, error) {
	abs, err := filepath.Abs(layout)
	if err != nil {
		return "", fmt.Errorf("layout view %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("layout view %s: %w", dir, err)
	}
	if err := os.Symlink(filepath.Join(abs, "blobs"), filepath.Join(dir, "blobs")); err != nil {
		return "", fmt.Errorf("layout view %s: %w", dir, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "oci-layout"), []byte(layoutVersion)); err != nil {
		return "", fmt.Errorf("layout view %s: %w", dir, err)
	}
	tagged, err := TagLayout(dir, w, untagged...)
	if err != nil {
		return "", fmt.Errorf("layout view: %w", err)
	}
	return tagged.Ref, nil
}

// TempPrefix starts the name of every temporary file a layout writer
// creates (blobs being written, index.json being replaced).
const TempPrefix = ".tmp-"

// RemoveTemporaries removes what writers killed part-way left in the
// layout at dir: the TempPrefix files in it and in its blobs/sha256. Only
// call it while no writer is at work (callers hold the output directory's
// lock). It returns how many files it removed and their bytes.
func RemoveTemporaries(dir string) (files int, freed int64, err error) {
	var errs []error
	for _, d := range []string{dir, filepath.Join(dir, "blobs", "sha256")} {
		entries, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), TempPrefix) || !e.Type().IsRegular() {
				continue
			}
			if info, err := e.Info(); err == nil {
				freed += info.Size()
			}
			if err := os.Remove(filepath.Join(d, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			files++
		}
	}
	if err := errors.Join(errs...); err != nil {
		return files, freed, fmt.Errorf("layout %s: remove temporaries: %w", dir, err)
	}
	return files, freed, nil
}

// readIndex reads dir's index.json, or returns an empty index if it has none.
func readIndex(dir string) (*v1.IndexManifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	index, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("layout %s: index.json: %w: %w", dir, ErrBadLayout, err)
	}
	return index, nil
}

type layoutWriter struct {
	dir     string
	mu      sync.Mutex
	written map[v1.Hash]bool // blobs this call has already written or claimed
}

func (w *layoutWriter) index(ctx context.Context, ii v1.ImageIndex) error {
	m, err := ii.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range m.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := ii.ImageIndex(d.Digest)
			if err == nil {
				err = w.index(ctx, child)
			}
			if err != nil {
				return err
			}
		case d.MediaType.IsImage():
			img, err := ii.Image(d.Digest)
			if err == nil {
				err = w.image(ctx, img)
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("index entry %s: unsupported media type %s", d.Digest, d.MediaType)
		}
	}
	raw, err := ii.RawManifest()
	if err != nil {
		return err
	}
	h, err := ii.Digest()
	if err != nil {
		return err
	}
	return w.bytes(ctx, h, raw)
}

// image writes the layers concurrently (each is generated, hashed and
// compressed on its own), then the config and the manifest, so that a
// manifest is only ever present with its blobs.
func (w *layoutWriter) image(ctx context.Context, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	errs := make([]error, len(layers))
	var wg sync.WaitGroup
	for i, l := range layers {
		wg.Go(func() { errs[i] = w.layer(ctx, l) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if err := w.bytes(ctx, cfgName, cfg); err != nil {
		return err
	}
	h, err := img.Digest()
	if err != nil {
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	return w.bytes(ctx, h, raw)
}

func (w *layoutWriter) layer(ctx context.Context, l v1.Layer) error {
	h, err := l.Digest()
	if err != nil {
		return err
	}
	size, err := l.Size()
	if err != nil {
		return err
	}
	return w.blob(ctx, h, size, l.Compressed)
}

func (w *layoutWriter) bytes(ctx context.Context, h v1.Hash, b []byte) error {
	return w.blob(ctx, h, int64(len(b)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

// blob writes blobs/sha256/HEX unless a file of the right size is there,
// through a temporary file that is renamed only when its digest matches.
func (w *layoutWriter) blob(ctx context.Context, h v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
	if h.Algorithm != "sha256" || !sha256RE.MatchString(h.Hex) {
		return fmt.Errorf("blob %s: unsupported digest", h)
	}
	w.mu.Lock()
	done := w.written[h]
	w.written[h] = true
	w.mu.Unlock()
	if done {
		return nil
	}
	final := filepath.Join(w.dir, "blobs", "sha256", h.Hex)
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		return nil
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(final), TempPrefix+h.Hex[:12]+"-")
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	hasher := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, hasher), ctxReader{ctx, rc})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if got := hashOf(hasher); got != h || n != size {
		return fmt.Errorf("blob %s: %w: wrote %s, %d bytes, want %d", h, ErrFileChanged, got, n, size)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	return nil
}

// ctxReader stops a long copy when the context is done.
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

// writeFileAtomic replaces name with data through a temporary file in the
// same directory, so readers see the old or the new content, never a part.
func writeFileAtomic(name string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), TempPrefix+filepath.Base(name)+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
