package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/modelci/modelci/stages/image"
)

// PullBase returns an image.PullFunc that reads base images with Pull and
// opts, so that image.Input can build on a registry base without
// stages/image reaching registries itself. A reference the registry does
// not have is reported as image.ErrBaseNotFound (and ErrNotFound).
func PullBase(opts ...Option) image.PullFunc {
	return func(ctx context.Context, ref string) (mutate.Appendable, error) {
		a, err := Pull(ctx, ref, opts...)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %w", image.ErrBaseNotFound, err)
		}
		if err != nil {
			return nil, err
		}
		return a, nil
	}
}
