// Package image builds the serving image: modelci's static server binary in
// one layer and the model files under /model in their own layers, with OCI
// media types and the same digest for the same inputs. It writes images to
// an OCI image layout; nothing needs a container daemon.
package image

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotation keys set on manifests (and as config labels).
const (
	AnnotationTitle         = "org.opencontainers.image.title"
	AnnotationVersion       = "org.opencontainers.image.version"
	AnnotationCreated       = "org.opencontainers.image.created"
	AnnotationSource        = "org.opencontainers.image.source"
	AnnotationRevision      = "org.opencontainers.image.revision"
	AnnotationModelName     = "dev.modelci.model.name"
	AnnotationModelVersion  = "dev.modelci.model.version"
	AnnotationDatasetDigest = "dev.modelci.dataset.digest"
	AnnotationBaseName      = "org.opencontainers.image.base.name"
	AnnotationBaseDigest    = "org.opencontainers.image.base.digest"
)

// Defaults of the image config.
const (
	DefaultPlatform = "linux/amd64"
	DefaultUser     = "65532"
	DefaultPort     = "8080/tcp"
)

// DefaultEntrypoint serves the model baked in at ModelPath.
// Exec form, one element per flag and per value, so that deploy can append
// --role ROLE as the container's args.
var DefaultEntrypoint = []string{RuntimePath, "--model", ModelPath, "--addr", ":8080"}

var (
	// ErrBaseNotSupported: a registry base without a PullFunc to read it
	// (scratch and oci-layout:// bases need none), or a base that is
	// neither an image nor an index.
	ErrBaseNotSupported = errors.New("image base not supported")
	// ErrBadPlatform: a platform is not os/arch[/variant].
	ErrBadPlatform = errors.New("malformed platform")
	// ErrBadSourceDateEpoch: SOURCE_DATE_EPOCH is not a non-negative integer.
	ErrBadSourceDateEpoch = errors.New("malformed SOURCE_DATE_EPOCH")
	// ErrMultiplePlatforms: Build was asked for more than one platform; use
	// BuildIndex.
	ErrMultiplePlatforms = errors.New("several platforms need an image index")
)

// RuntimeFunc returns the path of the runtime binary for a platform.
type RuntimeFunc func(ctx context.Context, p v1.Platform) (string, error)

// Input describes one serving image.
type Input struct {
	ModelDir      string // its files go under ModelPath
	Name          string // model name
	Version       string // model version
	DatasetDigest string // sha256:… of the training data
	Source        string // optional org.opencontainers.image.source
	Revision      string // optional org.opencontainers.image.revision

	// Base is "" or "scratch" (modelci's own server in a runtime layer), or
	// an image or index holding a server of its own (model layers go on
	// top; no runtime is needed): an oci-layout:// reference, or a registry
	// reference (HOST/PATH:TAG or @sha256:…) read through Pull.
	Base string
	// Pull reads registry bases; nil refuses them with ErrBaseNotSupported.
	Pull PullFunc
	// Platforms as os/arch[/variant]; default [linux/amd64].
	Platforms []string
	// Created is the config's creation time; zero means SOURCE_DATE_EPOCH,
	// or the Unix epoch when that is unset.
	Created time.Time
	// Runtime gives the server binary per platform; nil means Runtime with
	// default options.
	Runtime RuntimeFunc
	// Entrypoint defaults to DefaultEntrypoint on scratch and to the base's
	// own entrypoint (and command) on a base image. Cmd, when set, replaces
	// the command; an Entrypoint without a Cmd drops the base's command.
	Entrypoint []string
	Cmd        []string
	// SizeCutoff defaults to DefaultSizeCutoff.
	SizeCutoff int64

	// Layout is the OCI image layout directory Run writes to.
	Layout string
	// Tag defaults to Tag(Version).
	Tag string
	// NoTag writes the image's blobs and manifest into Layout but leaves
	// its index.json as it is (WriteBlobs): the caller moves the tag with
	// TagLayout(Layout, out.Written) once it is done with the image, and a
	// caller that gives up leaves the layout's tags untouched.
	NoTag bool

	// ModelPack, when set, also writes the model as a CNCF ModelPack
	// artifact (modelpack.go): an OCI manifest of artifactType
	// ArtifactTypeModelPack whose layers are the serving image's model
	// layers, blob for blob, whose subject is the serving image, and whose
	// config describes the model with these fields.
	ModelPack *ModelPack
	// RuntimeImage also writes the runtime image: the serving image without
	// its model layers and without anything of the model in its config
	// (runtime layer or base, entrypoint, user), created at the Unix epoch,
	// so that its digest changes only with the runtime. It serves a model
	// mounted at ModelPath (deploy.model_source: volume).
	RuntimeImage bool
}

// Output is what Run built and wrote.
type Output struct {
	Written
	// Images has one entry per platform, in the order asked.
	Images []PlatformImage
	// ModelLayers are the layers holding the model under ModelPath, the
	// same in every platform's image, in order; each is a blob of the
	// layout (blobs/sha256/HEX).
	ModelLayers []v1.Descriptor
	// ModelPack (Input.ModelPack) and Runtime (Input.RuntimeImage) are
	// written into the layout beside the image, untagged: TagLayout(Layout,
	// out.Written, out.Untagged()...) lists them in index.json without a
	// tag (Run does so itself unless NoTag).
	ModelPack *Written
	Runtime   *Written
}

// Untagged are the entries Run wrote beside the image that index.json
// lists without a tag: the runtime image and the ModelPack artifact, when
// built.
func (o Output) Untagged() []Written {
	var out []Written
	for _, w := range []*Written{o.Runtime, o.ModelPack} {
		if w != nil {
			out = append(out, *w)
		}
	}
	return out
}

// PlatformImage records one platform's image digests.
type PlatformImage struct {
	Platform string
	Digest   v1.Hash
	Config   v1.Hash
	Layers   []v1.Hash
}

// Run builds the image (an image index when several platforms are asked)
// and writes it to in.Layout under in.Tag (with in.NoTag, untagged). Each layer is generated once,
// straight into the layout's blobs, rather than once for its digest and
// again to write it.
func Run(ctx context.Context, in Input) (Output, error) {
	if in.Layout == "" {
		return Output{}, fmt.Errorf("build %s: no layout directory", in.Name)
	}
	tag := in.Tag
	if tag == "" {
		tag = Tag(in.Version)
	}
	pp, err := in.parts(ctx)
	if err != nil {
		return Output{}, err
	}
	if err := pp.spill(ctx, in.Layout); err != nil {
		return Output{}, err
	}
	var (
		art  mutate.Appendable
		imgs []v1.Image
	)
	for i := range pp.platforms {
		img, err := in.image(pp, i)
		if err != nil {
			return Output{}, err
		}
		imgs = append(imgs, img)
	}
	if len(imgs) == 1 {
		art = imgs[0]
	} else if art, err = in.index(imgs, pp.platforms); err != nil {
		return Output{}, err
	}
	w, err := WriteBlobs(ctx, in.Layout, art, tag)
	if err != nil {
		return Output{}, err
	}
	out := Output{Written: w}
	if in.RuntimeImage {
		rt, err := in.runtimeArtifact(pp)
		if err != nil {
			return Output{}, err
		}
		rw, err := writeUntagged(ctx, in.Layout, rt, LayoutEntryRuntime)
		if err != nil {
			return Output{}, err
		}
		out.Runtime = &rw
	}
	if in.ModelPack != nil {
		var runtime *v1.Descriptor
		if out.Runtime != nil {
			runtime = &out.Runtime.Descriptor
		}
		a, err := in.modelPack(pp, w.Descriptor, runtime)
		if err != nil {
			return Output{}, err
		}
		img, err := a.image()
		if err != nil {
			return Output{}, err
		}
		mw, err := writeUntagged(ctx, in.Layout, img, LayoutEntryModelPack)
		if err != nil {
			return Output{}, err
		}
		out.ModelPack = &mw
	}
	if !in.NoTag {
		if out.Written, err = TagLayout(in.Layout, w, out.Untagged()...); err != nil {
			return Output{}, err
		}
	}
	for _, l := range pp.models {
		d, err := partial.Descriptor(l)
		if err != nil {
			return Output{}, err
		}
		out.ModelLayers = append(out.ModelLayers, *d)
	}
	for i, img := range imgs {
		pi, err := describe(img)
		if err != nil {
			return Output{}, err
		}
		pi.Platform = platformString(pp.platforms[i])
		out.Images = append(out.Images, pi)
	}
	return out, nil
}

func describe(img v1.Image) (PlatformImage, error) {
	var pi PlatformImage
	var err error
	if pi.Digest, err = img.Digest(); err != nil {
		return pi, err
	}
	m, err := img.Manifest()
	if err != nil {
		return pi, err
	}
	pi.Config = m.Config.Digest
	for _, l := range m.Layers {
		pi.Layers = append(pi.Layers, l.Digest)
	}
	return pi, nil
}

// SourceDateEpoch returns the time SOURCE_DATE_EPOCH names, or the Unix
// epoch when it is unset, so that builds are reproducible by default.
func SourceDateEpoch() (time.Time, error) {
	s, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("%w: %q", ErrBadSourceDateEpoch, s)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// ParsePlatform parses os/arch[/variant].
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return v1.Platform{}, fmt.Errorf("platform %q: %w: want os/arch[/variant]", s, ErrBadPlatform)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// Build builds the image for in's single platform.
func Build(ctx context.Context, in Input) (v1.Image, error) {
	platforms, err := in.platforms()
	if err != nil {
		return nil, err
	}
	if len(platforms) != 1 {
		return nil, fmt.Errorf("build %s: %w: %d asked", in.Name, ErrMultiplePlatforms, len(platforms))
	}
	pp, err := in.parts(ctx)
	if err != nil {
		return nil, err
	}
	return in.image(pp, 0)
}

// BuildIndex builds one image per platform and an OCI image index over them.
// The model layers are shared: their digests are the same in every image.
func BuildIndex(ctx context.Context, in Input) (v1.ImageIndex, error) {
	pp, err := in.parts(ctx)
	if err != nil {
		return nil, err
	}
	var imgs []v1.Image
	for i := range pp.platforms {
		img, err := in.image(pp, i)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return in.index(imgs, pp.platforms)
}

// parts are the layers of a build: the model layers, shared by every
// platform, and per platform either a runtime layer or a base image.
type parts struct {
	platforms []v1.Platform
	models    []*layer
	runtimes  []*layer
	bases     []v1.Image
}

func (in Input) parts(ctx context.Context) (parts, error) {
	var pp parts
	var err error
	if pp.platforms, err = in.platforms(); err != nil {
		return pp, err
	}
	if pp.models, err = in.modelLayers(); err != nil {
		return pp, err
	}
	if !isScratch(in.Base) {
		// Resolved once: a registry base is one manifest request, not one
		// per platform.
		base, err := resolveBase(ctx, in.Base, in.Pull)
		if err != nil {
			return pp, err
		}
		for _, p := range pp.platforms {
			img, err := platformImage(in.Base, base, p)
			if err != nil {
				return pp, err
			}
			pp.bases = append(pp.bases, img)
			pp.runtimes = append(pp.runtimes, nil)
		}
		return pp, nil
	}
	runtimeFor := in.Runtime
	if runtimeFor == nil {
		runtimeFor = func(ctx context.Context, p v1.Platform) (string, error) { return Runtime(ctx, p) }
	}
	for _, p := range pp.platforms {
		bin, err := runtimeFor(ctx, p)
		if err != nil {
			return pp, err
		}
		rt, err := runtimeLayer(bin)
		if err != nil {
			return pp, err
		}
		pp.runtimes = append(pp.runtimes, rt)
	}
	return pp, nil
}

// spill writes every layer into the layout's blobs concurrently.
func (pp parts) spill(ctx context.Context, dir string) error {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	all := slices.DeleteFunc(slices.Concat(pp.runtimes, pp.models), func(l *layer) bool { return l == nil })
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, l := range all {
		wg.Go(func() { errs[i] = l.spill(ctx, blobs) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	return nil
}

func (in Input) index(imgs []v1.Image, platforms []v1.Platform) (v1.ImageIndex, error) {
	annotations, err := in.annotations()
	if err != nil {
		return nil, err
	}
	idx, err := NewIndex(imgs, platforms, annotations)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", in.Name, err)
	}
	return idx, nil
}

func (in Input) platforms() ([]v1.Platform, error) {
	names := in.Platforms
	if len(names) == 0 {
		names = []string{DefaultPlatform}
	}
	seen := map[string]bool{}
	var out []v1.Platform
	for _, s := range names {
		p, err := ParsePlatform(s)
		if err != nil {
			return nil, err
		}
		if seen[platformString(p)] {
			return nil, fmt.Errorf("platform %q: %w: listed twice", s, ErrBadPlatform)
		}
		seen[platformString(p)] = true
		out = append(out, p)
	}
	return out, nil
}

func (in Input) modelLayers() ([]*layer, error) {
	if err := checkBase(in.Base, in.Pull); err != nil {
		return nil, err
	}
	if in.ModelDir == "" {
		return nil, fmt.Errorf("build %s: no model directory", in.Name)
	}
	cutoff := in.SizeCutoff
	if cutoff <= 0 {
		cutoff = DefaultSizeCutoff
	}
	return modelLayers(in.ModelDir, cutoff)
}

func (in Input) created() (time.Time, error) {
	if !in.Created.IsZero() {
		return in.Created.UTC(), nil
	}
	return SourceDateEpoch()
}

func (in Input) annotations() (map[string]string, error) {
	created, err := in.created()
	if err != nil {
		return nil, err
	}
	a := map[string]string{
		AnnotationTitle:         in.Name,
		AnnotationVersion:       in.Version,
		AnnotationCreated:       created.Format(time.RFC3339),
		AnnotationModelName:     in.Name,
		AnnotationModelVersion:  in.Version,
		AnnotationDatasetDigest: in.DatasetDigest,
		AnnotationSource:        in.Source,
		AnnotationRevision:      in.Revision,
	}
	for k, v := range a {
		if v == "" {
			delete(a, k)
		}
	}
	return a, nil
}

// image assembles platform i's image: the runtime layer (or the base's
// layers), then the model.
func (in Input) image(pp parts, i int) (v1.Image, error) { return in.assemble(pp, i, true) }

// runtimeImage is platform i's image without the model: what image volumes
// mount a model into.
func (in Input) runtimeImage(pp parts, i int) (v1.Image, error) { return in.assemble(pp, i, false) }

// runtimeArtifact is the runtime image, an index over every platform's
// when there are several.
func (in Input) runtimeArtifact(pp parts) (mutate.Appendable, error) {
	var imgs []v1.Image
	for i := range pp.platforms {
		img, err := in.runtimeImage(pp, i)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	if len(imgs) == 1 {
		return imgs[0], nil
	}
	idx, err := NewIndex(imgs, pp.platforms, in.runtimeAnnotations())
	if err != nil {
		return nil, fmt.Errorf("build %s runtime: %w", in.Name, err)
	}
	return idx, nil
}

// runtimeAnnotations are the runtime image's: nothing of the model.
func (in Input) runtimeAnnotations() map[string]string {
	if isScratch(in.Base) {
		return map[string]string{AnnotationTitle: RuntimeName}
	}
	return map[string]string{}
}

// assemble builds platform i's image, with the model layers and the
// model's annotations, or (runtime image) without them, created at the
// Unix epoch.
func (in Input) assemble(pp parts, i int, withModel bool) (v1.Image, error) {
	p := pp.platforms[i]
	created, annotations := epoch, in.runtimeAnnotations()
	if withModel {
		var err error
		if created, err = in.created(); err != nil {
			return nil, err
		}
		if annotations, err = in.annotations(); err != nil {
			return nil, err
		}
	}

	var (
		adds []mutate.Addendum
		base v1.Image
	)
	start := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	if pp.bases != nil {
		base = pp.bases[i]
		start = base
		h, err := start.Digest()
		if err != nil {
			return nil, fmt.Errorf("build %s for %s: base: %w", in.Name, platformString(p), err)
		}
		annotations[AnnotationBaseName] = in.Base
		annotations[AnnotationBaseDigest] = h.String()
	} else {
		adds = append(adds, mutate.Addendum{
			Layer:     pp.runtimes[i],
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "modelci: runtime " + RuntimePath, Comment: platformString(p)},
		})
	}
	models := pp.models
	if !withModel {
		models = nil
	}
	for _, l := range models {
		ml := onBase(base, l)
		mt, _ := ml.MediaType()
		adds = append(adds, mutate.Addendum{
			Layer:     ml,
			MediaType: mt,
			History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "modelci: model " + ModelPath},
		})
	}
	img, err := mutate.Append(start, adds...)
	if err != nil {
		return nil, fmt.Errorf("build %s for %s: %w", in.Name, platformString(p), err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("build %s for %s: %w", in.Name, platformString(p), err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	if pp.bases == nil {
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		cf.Config = v1.Config{
			Entrypoint:   DefaultEntrypoint,
			User:         DefaultUser,
			WorkingDir:   "/",
			Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
			ExposedPorts: map[string]struct{}{DefaultPort: {}},
		}
	} else if cf.Config.User == "" {
		// Serving images run as non-root whatever the base says.
		cf.Config.User = DefaultUser
	}
	if len(in.Entrypoint) > 0 {
		cf.Config.Entrypoint, cf.Config.Cmd = in.Entrypoint, nil
	}
	if len(in.Cmd) > 0 {
		cf.Config.Cmd = in.Cmd
	}
	labels := map[string]string{}
	maps.Copy(labels, cf.Config.Labels)
	maps.Copy(labels, annotations)
	cf.Config.Labels = labels
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build %s for %s: %w", in.Name, platformString(p), err)
	}
	return mutate.Annotations(img, annotations).(v1.Image), nil
}
