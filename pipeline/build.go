package pipeline

import (
	"context"
	"fmt"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/registry"
)

// LayoutDir is the OCI image layout under an output directory.
func LayoutDir(output string) string { return filepath.Join(output, "oci") }

func (r *run) buildImage(ctx context.Context) (*ImageOutput, error) {
	spec := r.spec
	created, err := image.SourceDateEpoch()
	if err != nil {
		return nil, err
	}
	if r.o.created != nil {
		created = *r.o.created
	}
	runtime := func(ctx context.Context, p v1.Platform) (string, error) {
		path, ok := r.o.runtimes[platformString(p)]
		if !ok {
			var err error
			if path, err = image.Runtime(ctx, p, image.WithSourceDir(spec.Dir), image.WithLog(r.o.log)); err != nil {
				return "", err
			}
		}
		// Recorded so that a rebuild can tell a changed server binary from
		// a changed model.
		d, err := digestFile(path)
		if err != nil {
			return "", err
		}
		r.rec.Inputs.Runtimes = append(r.rec.Inputs.Runtimes, RuntimeInput{Platform: platformString(p), Digest: d})
		return path, nil
	}
	layout := LayoutDir(r.out)
	out, err := image.Run(ctx, image.Input{
		ModelDir:      filepath.Join(r.tmp, "model"),
		Name:          spec.Model.Name,
		Version:       spec.Model.Version,
		DatasetDigest: r.rec.Inputs.Dataset.Digest,
		Base:          spec.Image.Base,
		Entrypoint:    spec.Image.Entrypoint,
		Cmd:           spec.Image.Cmd,
		Pull:          registry.PullBase(r.o.registryOptions()...),
		Platforms:     spec.Image.Platforms,
		Created:       created,
		Runtime:       runtime,
		Layout:        layout,
		// The tag moves when the whole run has succeeded (commit).
		NoTag: true,
	})
	if err != nil {
		return nil, err
	}
	r.written = out.Written
	r.rec.Outputs.Model.Layers = nil
	for _, l := range out.ModelLayers {
		r.rec.Outputs.Model.Layers = append(r.rec.Outputs.Model.Layers, Layer{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
	}
	// Until then the smoke test and the push read the image through a
	// layout of its own that shares the output layout's blobs.
	view := filepath.Join(r.tmp, viewDir)
	ref, err := image.View(view, layout, out.Written)
	if err != nil {
		return nil, err
	}
	return &ImageOutput{
		Ref: ref, Digest: out.Digest.String(), MediaType: string(out.MediaType),
		Tag: out.Tag, Layout: view,
	}, nil
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// build is the image stage: the image's blobs and manifest go into the
// output's OCI layout, untagged until the run succeeds.
func (r *run) build(ctx context.Context) (string, error) {
	img, err := r.buildImage(ctx)
	if err != nil {
		return "", err
	}
	r.rec.Outputs.Image = img
	r.ref = img.Ref
	return fmt.Sprintf("%s in %s, tag %s once the run succeeds", short(img.Digest), LayoutDir(r.out), img.Tag), nil
}
