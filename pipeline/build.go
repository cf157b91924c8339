package pipeline

import (
	"context"
	"fmt"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
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
		// The model also as a CNCF ModelPack artifact, on the same blobs,
		// and the image that serves it from an image volume.
		ModelPack:    modelPackOf(spec),
		RuntimeImage: true,
	})
	if err != nil {
		return nil, err
	}
	r.written, r.untagged = out.Written, out.Untagged()
	r.rec.Outputs.Model.Layers = nil
	for _, l := range out.ModelLayers {
		r.rec.Outputs.Model.Layers = append(r.rec.Outputs.Model.Layers, Layer{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType)})
	}
	// Until then the smoke test and the push read the image through a
	// layout of its own that shares the output layout's blobs.
	view := filepath.Join(r.tmp, viewDir)
	ref, err := image.View(view, layout, out.Written, r.untagged...)
	if err != nil {
		return nil, err
	}
	for _, a := range []struct {
		w   *image.Written
		out **ArtifactOutput
	}{{out.ModelPack, &r.rec.Outputs.ModelPack}, {out.Runtime, &r.rec.Outputs.Runtime}} {
		if a.w == nil {
			continue
		}
		ref, err := oci.LayoutRef(view, a.w.Digest)
		if err != nil {
			return nil, err
		}
		*a.out = &ArtifactOutput{
			Ref: ref.String(), Digest: a.w.Digest.String(), MediaType: string(a.w.MediaType),
			ArtifactType: a.w.Descriptor.ArtifactType,
		}
	}
	if mp := r.rec.Outputs.ModelPack; mp != nil {
		mp.Subject = out.Digest.String()
	}
	if rt := r.rec.Outputs.Runtime; rt != nil {
		rt.ArtifactType = "" // an image: go-containerregistry names its config type
	}
	return &ImageOutput{
		Ref: ref, Digest: out.Digest.String(), MediaType: string(out.MediaType),
		Tag: out.Tag, Layout: view,
	}, nil
}

// modelPackOf describes the spec's model for the ModelPack artifact's
// config: its format (train.format: linear, onnx) and, for the built-in
// model, its architecture; the precision modelci's runtime computes in.
func modelPackOf(sp *spec.Spec) *image.ModelPack {
	mp := &image.ModelPack{Format: sp.Train.Format}
	switch sp.Train.Format {
	case model.FormatLinear:
		mp.Architecture, mp.Precision = "linear", "float64"
	case model.FormatONNX:
		mp.Precision = "float32"
	}
	return mp
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
	line := fmt.Sprintf("%s in %s, tag %s once the run succeeds", short(img.Digest), LayoutDir(r.out), img.Tag)
	if mp := r.rec.Outputs.ModelPack; mp != nil {
		line += fmt.Sprintf("; modelpack %s", short(mp.Digest))
	}
	return line, nil
}
