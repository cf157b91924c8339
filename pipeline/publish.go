package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/registry"
)

// ErrNotGreater means the model version is not greater than the champion,
// the greatest version the repository already holds.
var ErrNotGreater = errors.New("version is not greater than the champion")

// WithRepository pushes the image to repo (HOST[:PORT]/PATH), overriding
// image.repository.
func WithRepository(repo string) Option { return func(o *options) { o.repository = repo } }

// WithRegistryOptions passes push settings (WithAllowOverwrite) beyond
// the access to the push.
func WithRegistryOptions(opts ...registry.Option) Option {
	return func(o *options) { o.registry = append(o.registry, opts...) }
}

// WithAllowDowngrade publishes a version that is not greater than the
// repository's greatest.
func WithAllowDowngrade() Option { return func(o *options) { o.allowDowngrade = true } }

// repository is where the run publishes: the option, else the spec.
func (r *run) repository() string {
	if r.o.noPublish {
		return ""
	}
	if r.o.repository != "" {
		return r.o.repository
	}
	return r.spec.Image.Repository
}

// publish pushes the image from the layout to the repository by digest,
// then its version tag (and latest when asked). With deferTags the tags are
// checked but not moved: the run signs the digest first (tagVersion).
func (r *run) publish(ctx context.Context, img *ImageOutput, deferTags bool) (*PushOutput, error) {
	repo := r.repository()
	if err := r.checkChampion(ctx, repo, image.Tag(r.spec.Model.Version), img.Digest); err != nil {
		return nil, err
	}
	opts := r.tagOptions(registry.WithLog(r.o.log), registry.WithProgress(r.o.log))
	if deferTags {
		opts = append(opts, registry.WithDeferredTags())
	}
	pushed, err := registry.Copy(ctx, img.Ref, repo, opts...)
	if err != nil {
		return nil, err
	}
	if pushed.Digest.String() != img.Digest {
		return nil, fmt.Errorf("push to %s: %w: pushed %s, built %s", repo, registry.ErrDigestMismatch, pushed.Digest, img.Digest)
	}
	out := &PushOutput{Repository: repo, Ref: pushed.Ref, Digest: pushed.Digest.String(), Tags: pushed.Tags}
	// Beside it, by digest and untagged: the runtime image, then the
	// ModelPack artifact, whose subject (the image) is now there. Their
	// blobs are the image's but for a config each: the registry has them.
	for _, a := range []struct {
		built *ArtifactOutput
		ref   *string
	}{{r.rec.Outputs.Runtime, &out.Runtime}, {r.rec.Outputs.ModelPack, &out.ModelPack}} {
		if a.built == nil {
			continue
		}
		p, err := registry.Copy(ctx, a.built.Ref, repo, r.o.registryOptions(registry.WithLog(r.o.log))...)
		if err != nil {
			return nil, err
		}
		if p.Digest.String() != a.built.Digest {
			return nil, fmt.Errorf("push to %s: %w: pushed %s, built %s", repo, registry.ErrDigestMismatch, p.Digest, a.built.Digest)
		}
		*a.ref = p.Ref
	}
	return out, nil
}

// tagOptions are the registry options that move the version tag (and
// latest when asked).
func (r *run) tagOptions(extra ...registry.Option) []registry.Option {
	opts := r.o.registryOptions(append([]registry.Option{registry.WithTags(image.Tag(r.spec.Model.Version))}, extra...)...)
	if r.spec.Image.Latest {
		opts = append(opts, registry.WithLatest())
	}
	return opts
}

// tagVersion moves the tags a deferred push left, once the digest is signed.
func (r *run) tagVersion(ctx context.Context) error {
	p := r.rec.Outputs.Push
	tagged, err := registry.Copy(ctx, p.Ref, p.Repository, r.tagOptions(registry.WithLog(r.o.log))...)
	if err != nil {
		return err
	}
	p.Tags = tagged.Tags
	return nil
}

// checkChampion refuses a version below the greatest one in repo. The same
// version is left to the registry stage: a no-op on the same digest,
// ErrTagExists on another.
func (r *run) checkChampion(ctx context.Context, repo, tag, digest string) error {
	if r.o.allowDowngrade {
		return nil
	}
	tags, err := registry.ListTags(ctx, repo, r.o.registryOptions()...)
	if err != nil {
		return err
	}
	champion := ""
	for _, t := range tags {
		if t == tag {
			return nil
		}
		if _, err := modelgate.ParseVersion(t); err != nil {
			continue // latest, sha256-….sig and other tags are not versions
		}
		if champion == "" {
			champion = t
		} else if g, _ := modelgate.Greater(t, champion); g {
			champion = t
		}
	}
	if champion == "" {
		return nil
	}
	greater, err := modelgate.Greater(r.spec.Model.Version, champion)
	if err != nil {
		return err
	}
	if !greater {
		return fmt.Errorf("publish %s %s to %s: %w %s (use --allow-downgrade to publish it anyway)",
			r.spec.Model.Name, r.spec.Model.Version, repo, ErrNotGreater, champion)
	}
	return nil
}

// push is the push stage: the layout's image to the repository, by digest.
func (r *run) push(ctx context.Context) (string, error) {
	signs := r.signs()
	p, err := r.publish(ctx, r.rec.Outputs.Image, signs)
	if err != nil {
		return "", err
	}
	r.rec.Outputs.Push = p
	r.ref = p.Ref
	if signs {
		return p.Ref + ", tagged once signed", nil
	}
	return fmt.Sprintf("%s, tags %s", p.Ref, strings.Join(p.Tags, ", ")), nil
}
