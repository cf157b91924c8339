package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/Khan/genqlient/graphql"

	"github.com/modelci/modelci/ci/internal/dagger"
)

// builderEnv names, in the module's environment, the engine's built-in Go
// image (written by tools/dagger/sdkimage next to the Go SDK image): the
// toolchain `modelci run` uses on that host, with its module cache.
const builderEnv = "MODELCI_GO_BUILDER_DIGEST"

// goBuilder is a container with the Go toolchain and caches for modules and
// builds. It is the engine's built-in builder image when there is one (no
// pulls; the host's toolchain), else the official image of the Go version
// this module was compiled with.
func (m *Modelci) goBuilder(ctx context.Context) (*dagger.Container, error) {
	if d := os.Getenv(builderEnv); d != "" {
		c, err := builtinContainer(ctx, d)
		if err != nil {
			return nil, err
		}
		return c.
			WithMountedCache("/go/pkg/mod", dag.CacheVolume("modelci-go-mod"), dagger.ContainerWithMountedCacheOpts{Source: c.Directory("/go/pkg/mod")}).
			WithMountedCache("/root/.cache/go-build", dag.CacheVolume("modelci-go-build")), nil
	}
	return dag.Container().From("golang:"+strings.TrimPrefix(runtime.Version(), "go")).
		WithMountedCache("/go/pkg/mod", dag.CacheVolume("modelci-go-mod")).
		WithMountedCache("/root/.cache/go-build", dag.CacheVolume("modelci-go-build")), nil
}

// builtinContainer loads an image from the engine's built-in content store
// by manifest digest. The engine serves it to SDKs under a field the
// generated client does not list, so ask for it directly.
func builtinContainer(ctx context.Context, digest string) (*dagger.Container, error) {
	var data struct {
		Container struct {
			ID dagger.ContainerID `json:"id"`
		} `json:"_builtinContainer"`
	}
	err := dag.GraphQLClient().MakeRequest(ctx, &graphql.Request{
		Query:     `query($digest: String!) { _builtinContainer(digest: $digest) { id } }`,
		Variables: map[string]any{"digest": digest},
	}, &graphql.Response{Data: &data})
	if err != nil {
		return nil, fmt.Errorf("load the built-in Go image %s: %w", digest, err)
	}
	return dag.LoadContainerFromID(data.Container.ID), nil
}

// goBuild compiles a package of modelci's source into a static linux
// binary with the flags stages/image uses for the runtime, so that the same
// source and toolchain give the same bytes here and under `modelci run`.
func (m *Modelci) goBuild(ctx context.Context, pkg string) (*dagger.File, error) {
	b, err := m.goBuilder(ctx)
	if err != nil {
		return nil, err
	}
	const out = "/modelci/bin/out"
	return b.
		WithMountedDirectory(srcDir, m.ModelciSource).
		WithWorkdir(srcDir).
		WithEnvVariable("CGO_ENABLED", "0").
		WithEnvVariable("GOOS", "linux").
		WithEnvVariable("GOARCH", runtime.GOARCH).
		WithEnvVariable("GOWORK", "off").
		// The builder's GOFLAGS=-mod=mod is for the SDK's codegen; a build
		// of modelci uses its go.sum as committed.
		WithEnvVariable("GOFLAGS", "-mod=readonly").
		WithExec([]string{"go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg}).
		File(out), nil
}

// binary is modelci: the caller's prebuilt one, else built from source.
// It runs every step.
func (m *Modelci) binary(ctx context.Context) (*dagger.File, error) {
	if m.ModelciBinary != nil {
		return m.ModelciBinary, nil
	}
	return m.goBuild(ctx, "./cmd/modelci")
}

// runtime is the image's server, modelci-serve: the caller's prebuilt one,
// else built from source with the flags `modelci run` builds it with, so
// that both build the same image.
func (m *Modelci) runtime(ctx context.Context) (*dagger.File, error) {
	if m.ModelciRuntime != nil {
		return m.ModelciRuntime, nil
	}
	return m.goBuild(ctx, "./cmd/modelci-serve")
}

// RuntimeBin returns the image's server the module builds images with:
// the one passed to the module, else the one it builds from modelciSource.
// A caller can check it against its own build of the same source.
func (m *Modelci) RuntimeBin(ctx context.Context) (*dagger.File, error) {
	return m.runtime(ctx)
}

// ModelciBin returns the modelci binary the steps run: the one passed to
// the module, else the one it builds from modelciSource. A caller can
// check it against its own build of the same source.
func (m *Modelci) ModelciBin(ctx context.Context) (*dagger.File, error) {
	return m.binary(ctx)
}

// stageContainer is a scratch container with modelci and CA certificates.
func (m *Modelci) stageContainer(ctx context.Context) (*dagger.Container, error) {
	bin, err := m.binary(ctx)
	if err != nil {
		return nil, err
	}
	b, err := m.goBuilder(ctx)
	if err != nil {
		return nil, err
	}
	return dag.Container().
		WithFile(cliBin, bin, dagger.ContainerWithFileOpts{Permissions: 0o755}).
		WithFile(caBundle, b.File(caBundle)).
		WithDirectory("/tmp", dag.Directory()).
		WithEnvVariable("TMPDIR", "/tmp"), nil
}
