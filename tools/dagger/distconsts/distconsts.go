// Package distconsts defines the paths, names and environment variables that
// the Dagger engine v0.19.10 reads from its distribution constants package.
//
// modelci writes its own values here (see tools/dagger/engine.sh, which puts
// the binaries and the Go SDK image at these paths); nothing in this file is
// copied from the engine's sources, only the names it asks for.
package distconsts

// Host paths the engine uses when it runs directly on a host rather than in
// its own container.
const (
	// EngineDefaultStateDir is the engine's state root when --root is not given.
	EngineDefaultStateDir = "/var/lib/dagger"

	// EngineContainerBuiltinContentDir holds the OCI layout of the built-in
	// SDK runtime images; engine.sh writes the Go SDK image there.
	EngineContainerBuiltinContentDir = "/usr/local/share/dagger/content"

	// EngineCustomCACertsDir is where extra CA certificates would be read from.
	EngineCustomCACertsDir = "/usr/local/share/ca-certificates"

	// RuncPath is the OCI runtime the engine's worker executes.
	RuncPath = "/usr/local/bin/runc"

	// DaggerInitPath is the init process bind-mounted into every container.
	DaggerInitPath = "/usr/local/bin/dagger-init"

	// DefaultEngineSockAddr is where clients look for the engine when neither
	// a runner host nor a session says otherwise.
	DefaultEngineSockAddr = "unix:///run/dagger/engine.sock"

	// EngineContainerName is the container name the CLI would give an engine
	// it starts itself; modelci never lets it do so.
	EngineContainerName = "modelci-dagger-engine"
)

// Environment variables naming the manifest digests of the built-in SDK
// runtime images in EngineContainerBuiltinContentDir.
const (
	GoSDKManifestDigestEnvName         = "DAGGER_GO_SDK_MANIFEST_DIGEST"
	PythonSDKManifestDigestEnvName     = "DAGGER_PYTHON_SDK_MANIFEST_DIGEST"
	TypescriptSDKManifestDigestEnvName = "DAGGER_TYPESCRIPT_SDK_MANIFEST_DIGEST"
)

// OCIVersionAnnotation is the image annotation that carries an engine
// image's version.
const OCIVersionAnnotation = "org.opencontainers.image.version"

// Default image references for features modelci does not use (the
// interactive terminal, the engine's own integration tests). They are never
// pulled here: modelci builds every image it runs.
const (
	AlpineVersion = "3.22"
	AlpineImage   = "alpine:" + AlpineVersion
	BusyboxImage  = "busybox:1.37"
	GolangImage   = "golang:1.25-alpine"
)
