// Package artifact moves directories to and from a registry as one OCI
// artifact, by digest only: how a training Job's pod gets its inputs (an
// init container runs `modelci stage fetch`) and hands back its outputs
// (`modelci stage put`), which modelci then pulls
// (docs/training-artifacts.md).
//
// An artifact is an OCI image manifest
// (application/vnd.oci.image.manifest.v1+json) with an artifactType
// (ArtifactTypeTrainingInput, ArtifactTypeTrainingOutput, or the caller's),
// the OCI empty config (application/vnd.oci.empty.v1+json, "{}": the image
// spec's choice for an artifact that has no config of its own; the
// artifactType says what it is), and one layer per Part: a tar whose
// entries sit under the part's Path (src/train.py), annotated
// org.cncf.model.filepath: Path as ModelPack's layers are, so that the
// artifact unpacks as one tree, by Pull or by a container runtime mounting
// it as an image volume. Layers are uncompressed tars unless the part's
// media type ends in +gzip.
//
// Layers are reproducible: entries sorted, every time the Unix epoch,
// owners 0 with no names, modes 0755 (directories, and files with an
// executable bit) or 0644, no extended attributes. The same files give the
// same digests, so a re-push uploads nothing.
//
// Pull trusts the manifest's digest, nothing the registry says: every blob
// is hashed and counted against its descriptor, a tar entry must be a
// directory or a regular file under its part's Path (no absolute names,
// no "..", no links or devices, no duplicates), the artifact must fit a
// size limit, and the tree appears at the destination by one rename once
// all of it has been checked.
package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/registry"
)

// Artifact types modelci gives a training Job's artifacts.
const (
	// ArtifactTypeTrainingInput is what a training Job's pod pulls before
	// the trainer starts: the trainer's code and its training data.
	ArtifactTypeTrainingInput = "application/vnd.modelci.training.input.v1+json"
	// ArtifactTypeTrainingOutput is what the pod pushes once the trainer
	// has finished: its MODELCI_OUT directory (trainer contract v1:
	// model/ and train.json).
	ArtifactTypeTrainingOutput = "application/vnd.modelci.training.output.v1+json"
)

// Media types of parts (layers).
const (
	// MediaTypeCode is ModelPack's code layer: a training Job's code.
	MediaTypeCode = image.MediaTypeModelCode
	// MediaTypeDataset is ModelPack's dataset layer: a training Job's data.
	MediaTypeDataset = image.MediaTypeModelDataset
	// MediaTypeTrainingOutput is modelci's own layer of what a trainer
	// wrote (MODELCI_OUT): ModelPack has no type for a trainer's outputs.
	MediaTypeTrainingOutput = "application/vnd.modelci.training.output.v1.tar"
	// MediaTypeTar is a part with no media type of its own: the OCI
	// uncompressed layer.
	MediaTypeTar = string(types.OCIUncompressedLayer)
	// MediaTypeEmptyConfig is the config of every artifact: the OCI empty
	// descriptor's media type, its content "{}".
	MediaTypeEmptyConfig = "application/vnd.oci.empty.v1+json"
)

// AnnotationPath is the layer annotation naming the part's Path:
// ModelPack's org.cncf.model.filepath.
const AnnotationPath = image.AnnotationModelPackFilepath

// OutPath is the Path of the one part `stage put` pushes: the trainer's
// output directory.
const OutPath = "out"

// DefaultMaxSize is the most bytes Pull takes from one artifact, its
// blobs as stored and its files as extracted, each counted alone: a bound
// on what a registry can make a pod write, well above a data set a
// training Job moves this way.
const DefaultMaxSize int64 = 64 << 30

var (
	// ErrBadPart: a part's Path is not a relative slash-separated path
	// without "." or ".." elements, or two parts' paths overlap, or a
	// part's Dir is not a directory.
	ErrBadPart = errors.New("bad artifact part")
	// ErrUnsupportedFile: a part's directory holds a symlink, device,
	// socket or pipe; only directories and regular files travel.
	ErrUnsupportedFile = image.ErrUnsupportedFile
	// ErrFileChanged: a file changed while its layer was hashed and
	// uploaded.
	ErrFileChanged = image.ErrFileChanged
	// ErrNotArtifact: what the reference names is not such an artifact (an
	// index, no artifactType or another one than asked for, a layer without
	// a path or of a media type that is not a tar).
	ErrNotArtifact = errors.New("not a modelci artifact")
	// ErrUnsafeEntry: a layer's tar holds an entry Pull refuses to write:
	// an absolute or unclean name, "..", a name outside its part, a link,
	// device or other special file, or a duplicate.
	ErrUnsafeEntry = errors.New("unsafe tar entry")
	// ErrTooLarge: the artifact's blobs, or its files once extracted, pass
	// the size limit (WithMaxSize).
	ErrTooLarge = errors.New("artifact too large")
	// ErrDigestMismatch: a blob or the manifest the registry served does
	// not hash to its digest (or is not its size).
	ErrDigestMismatch = registry.ErrDigestMismatch
	// ErrDestNotEmpty: Pull's destination exists and is not an empty
	// directory.
	ErrDestNotEmpty = errors.New("destination is not an empty directory")
)

// Part is one directory of an artifact.
type Part struct {
	// Path is where the directory's files sit in the artifact and under
	// Pull's destination: relative, slash-separated ("src", "data", "out").
	Path string
	// Dir is the local directory to pack.
	Dir string
	// MediaType is the layer's media type: ending in .tar (stored as is)
	// or .tar+gzip (compressed); empty means MediaTypeTar.
	MediaType string
}

// Descriptor is one part as the artifact holds it.
type Descriptor struct {
	Path      string
	MediaType string
	Digest    v1.Hash
	Size      int64 // of the blob, compressed when the media type says so
}

// Option configures Push and Pull.
type Option func(*options)

type options struct {
	registry     []registry.Option
	maxSize      int64
	artifactType string
}

func makeOptions(opts []Option) *options {
	o := &options{maxSize: DefaultMaxSize}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// WithRegistryOptions sets how the registry is reached (registry.WithAccess,
// WithInsecure, retries, timeouts, progress); credentials come from
// oci.Access as for every stage: explicit, else MODELCI_REGISTRY_USERNAME
// and PASSWORD, else the Docker config keychain ($DOCKER_CONFIG/config.json).
func WithRegistryOptions(opts ...registry.Option) Option {
	return func(o *options) { o.registry = append(o.registry, opts...) }
}

// WithMaxSize sets the most bytes Pull takes from one artifact (default
// DefaultMaxSize); n <= 0 means the default.
func WithMaxSize(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxSize = n
		}
	}
}

// WithArtifactType makes Pull refuse, with ErrNotArtifact, an artifact of
// another artifactType.
func WithArtifactType(t string) Option { return func(o *options) { o.artifactType = t } }

// checkPaths refuses part paths that are not clean relative paths, and
// paths of which one is another's ancestor: the parts would unpack into
// one another.
func checkPaths(paths []string) error {
	for i, p := range paths {
		if !validPath(p) {
			return fmt.Errorf("%w: path %q: want a relative slash-separated path without . or .. elements", ErrBadPart, p)
		}
		for _, q := range paths[:i] {
			if p == q || strings.HasPrefix(p, q+"/") || strings.HasPrefix(q, p+"/") {
				return fmt.Errorf("%w: paths %q and %q overlap", ErrBadPart, q, p)
			}
		}
	}
	return nil
}

// validPath: relative, slash-separated, no empty, "." or ".." element, no
// backslash (a Windows tool would read one as a separator).
func validPath(p string) bool {
	return p != "." && fs.ValidPath(p) && !strings.ContainsRune(p, '\\')
}

// isTar reports whether a part's media type is a tar Pull can unpack, and
// whether it is gzipped.
func isTar(mediaType string) (ok, gzipped bool) {
	switch {
	case strings.HasSuffix(mediaType, ".tar"):
		return true, false
	case strings.HasSuffix(mediaType, ".tar+gzip"), mediaType == string(types.DockerLayer):
		return true, true
	}
	return false, false
}
