package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ModulePath is the module whose cmd/modelci-serve is the serving runtime.
const ModulePath = "github.com/modelci/modelci"

// RuntimeName is the runtime binary's name in the image and in the cache.
const RuntimeName = "modelci-serve"

// CLIName is the CLI's command (cmd/modelci): WithCommand(CLIName) builds
// it as Runtime builds the server, for the CLI image (CLIImage).
const CLIName = "modelci"

// buildFlags are part of the cache key, so that changing them invalidates
// every cached binary. -s -w drop the symbol tables: a smaller layer, and
// stack traces still work.
var buildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w"}

// ErrNoRuntime means no runtime binary can be had for a platform: no Go
// toolchain and no usable running executable. The image then needs a base
// image that carries its own server.
var ErrNoRuntime = errors.New("no modelci runtime binary for this platform")

// ErrUnsupportedPlatform is returned for platforms the runtime cannot be
// built for (anything but linux).
var ErrUnsupportedPlatform = errors.New("unsupported platform")

// RuntimeOption configures Runtime.
type RuntimeOption func(*runtimeOptions)

type runtimeOptions struct {
	sourceDir string
	cacheDir  string
	version   string
	command   string
	log       io.Writer
}

// WithCommand builds modelci's cmd/NAME instead of the server
// (RuntimeName), the same way and into the same cache, under its own
// file name: WithCommand(CLIName) is the static CLI a training Job's
// containers run (CLIImage).
func WithCommand(name string) RuntimeOption {
	return func(o *runtimeOptions) { o.command = name }
}

// WithModuleVersion names the version of modelci whose source builds the
// runtime when no source tree is found (default: the running binary's own,
// from its build info, as `go install …@VERSION` records it).
func WithModuleVersion(v string) RuntimeOption {
	return func(o *runtimeOptions) { o.version = v }
}

// WithSourceDir names a directory from which to look upwards for modelci's
// source (usually the project directory). The current working directory is
// searched too.
func WithSourceDir(dir string) RuntimeOption {
	return func(o *runtimeOptions) { o.sourceDir = dir }
}

// WithCacheDir overrides the cache root (default
// $XDG_CACHE_HOME/modelci/runtime, or ~/.cache/modelci/runtime).
func WithCacheDir(dir string) RuntimeOption {
	return func(o *runtimeOptions) { o.cacheDir = dir }
}

// WithLog receives one line per decision (cache hit, build, fallback); nil
// discards them.
func WithLog(w io.Writer) RuntimeOption {
	return func(o *runtimeOptions) {
		if w != nil {
			o.log = w
		}
	}
}

// Runtime returns the path of a static modelci binary for platform (the
// server, cmd/modelci-serve, or the command WithCommand names), building it
// from modelci's source when needed and caching it by source digest.
//
// The source is, in order: $MODELCI_SOURCE; the nearest enclosing module
// github.com/modelci/modelci above the source dir or the working directory;
// the module at the running binary's version, fetched with `go mod download`.
// Without a Go toolchain (or without any source) the running executable is
// used when it is a static Linux binary of the platform's architecture.
func Runtime(ctx context.Context, platform v1.Platform, opts ...RuntimeOption) (string, error) {
	o := runtimeOptions{log: io.Discard, command: RuntimeName}
	for _, opt := range opts {
		opt(&o)
	}
	if o.command == "" || strings.ContainsAny(o.command, `/\.`) {
		return "", fmt.Errorf("runtime: command %q: want the name of a directory of %s/cmd", o.command, ModulePath)
	}
	if platform.OS != "linux" {
		return "", fmt.Errorf("runtime for %s: %w: only linux images are built", platformString(platform), ErrUnsupportedPlatform)
	}
	goarch, extraEnv, err := goPlatformEnv(platform)
	if err != nil {
		return "", err
	}

	// Why no binary could be built, for the error when the fallback fails too.
	why := ""
	goBin, lookErr := exec.LookPath("go")
	if lookErr == nil {
		src, err := findSource(ctx, goBin, o)
		if err != nil {
			return "", err
		}
		if src != "" {
			return buildRuntime(ctx, goBin, src, platform, goarch, extraEnv, o)
		}
		why = "no modelci source: " + noSourceHint(o.version)
	} else {
		why = fmt.Sprintf("no Go toolchain (%v): install Go, or set image.base to a runtime image", lookErr)
	}
	fmt.Fprintf(o.log, "runtime: %s\n", why)

	exe, err := os.Executable()
	if err != nil || (o.command != RuntimeName && o.command != CLIName) {
		// Only the CLI stands in for the server, or for itself.
		return "", fmt.Errorf("runtime for %s: %w: %s", platformString(platform), ErrNoRuntime, why)
	}
	if ok, reason := isStaticELF(exe, goarch); !ok {
		return "", fmt.Errorf("runtime for %s: %w: %s; the running executable %s %s", platformString(platform), ErrNoRuntime, why, exe, reason)
	}
	if o.command == CLIName {
		fmt.Fprintf(o.log, "runtime: using the running executable %s as %s\n", exe, CLIName)
		return exe, nil
	}
	// Installed in the image as modelci-serve, the CLI is the server.
	fmt.Fprintf(o.log, "runtime: using the running executable %s (the whole CLI; the lean server needs Go and modelci's source)\n", exe)
	return exe, nil
}

// noSourceHint says why version (default: this binary's) cannot name
// modelci's source, and what to do.
func noSourceHint(version string) string {
	if version == "" {
		info, ok := debug.ReadBuildInfo()
		if !ok || info.Main.Path != ModulePath {
			return "set MODELCI_SOURCE to a checkout of " + ModulePath
		}
		version = info.Main.Version
	}
	switch {
	case version == "" || version == "(devel)":
		return "this modelci was built as (devel), outside version control: run it inside its source tree, or set MODELCI_SOURCE to a checkout of " + ModulePath + " at the commit you built"
	case strings.HasSuffix(version, "+dirty"):
		return "this modelci (" + version + ") was built from a modified tree: set MODELCI_SOURCE to that tree"
	}
	return "set MODELCI_SOURCE to a checkout of " + ModulePath + "@" + version
}

// goPlatformEnv maps an OCI platform to GOARCH and any variant variable.
func goPlatformEnv(p v1.Platform) (goarch string, env []string, err error) {
	v := strings.TrimPrefix(p.Variant, "v")
	switch {
	case p.Architecture == "":
		return "", nil, fmt.Errorf("runtime for %s: %w: no architecture", platformString(p), ErrUnsupportedPlatform)
	case p.Variant == "":
		return p.Architecture, nil, nil
	case p.Architecture == "arm" && (v == "5" || v == "6" || v == "7"):
		return "arm", []string{"GOARM=" + v}, nil
	case p.Architecture == "arm64" && v == "8":
		return "arm64", nil, nil
	case p.Architecture == "amd64" && (v == "1" || v == "2" || v == "3" || v == "4"):
		return "amd64", []string{"GOAMD64=v" + v}, nil
	}
	return "", nil, fmt.Errorf("runtime for %s: %w: variant %q", platformString(p), ErrUnsupportedPlatform, p.Variant)
}

// findSource returns modelci's module directory, or "" when there is none.
func findSource(ctx context.Context, goBin string, o runtimeOptions) (string, error) {
	if dir := os.Getenv("MODELCI_SOURCE"); dir != "" {
		if !isModelciModule(dir) {
			return "", fmt.Errorf("MODELCI_SOURCE %s: no go.mod for module %s", dir, ModulePath)
		}
		return dir, nil
	}
	starts := []string{}
	if o.sourceDir != "" {
		starts = append(starts, o.sourceDir)
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, start := range starts {
		abs, err := filepath.Abs(start)
		if err != nil {
			continue
		}
		for dir := abs; ; dir = filepath.Dir(dir) {
			if isModelciModule(dir) {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	version := o.version
	if version == "" {
		info, ok := debug.ReadBuildInfo()
		if !ok || info.Main.Path != ModulePath {
			return "", nil
		}
		version = info.Main.Version
	}
	if version == "" || version == "(devel)" || strings.HasSuffix(version, "+dirty") {
		return "", nil
	}
	// The module cache, else GOPROXY: what `go install` used.
	fmt.Fprintf(o.log, "runtime: taking %s@%s from the module cache or GOPROXY\n", ModulePath, version)
	dir, err := downloadModule(ctx, goBin, version)
	if err != nil {
		return "", fmt.Errorf("%w (or set MODELCI_SOURCE to a checkout of %s@%s)", err, ModulePath, version)
	}
	return dir, nil
}

// isModelciModule reports whether dir holds go.mod for ModulePath.
func isModelciModule(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == ModulePath
		}
	}
	return false
}

// downloadModule fetches modelci at version into the module cache; building
// there (rather than `go install`) also works when cross-compiling.
func downloadModule(ctx context.Context, goBin, version string) (string, error) {
	tmp, err := os.MkdirTemp("", "modelci-download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, goBin, "mod", "download", "-json", ModulePath+"@"+version)
	cmd.Dir = tmp // outside any module, so no go.mod is consulted or changed
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("download %s@%s: %w: %s", ModulePath, version, err, strings.TrimSpace(stderr.String()))
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", fmt.Errorf("download %s@%s: decode go mod download output: %w", ModulePath, version, err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("download %s@%s: %s", ModulePath, version, m.Error)
	}
	return m.Dir, nil
}

// buildRuntime returns the cached binary for src's digest, building it first
// when absent. Builds go to a fresh directory and are renamed into place, so
// concurrent builders never see a partial file (both produce the same bytes).
func buildRuntime(ctx context.Context, goBin, src string, p v1.Platform, goarch string, extraEnv []string, o runtimeOptions) (string, error) {
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOWORK=off")
	env = append(env, extraEnv...)
	pkg, name := ModulePath+"/cmd/"+o.command, o.command
	digest, err := sourceDigest(ctx, goBin, src, env, pkg)
	if err != nil {
		return "", err
	}
	root := o.cacheDir
	if root == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("runtime cache: %w", err)
		}
		root = filepath.Join(cache, "modelci", "runtime")
	}
	dir := filepath.Join(root, digest)
	out := filepath.Join(dir, name)
	// The cache is checked, not trusted: a binary changed since it was
	// built (by hand, a test, a disk error) is built again.
	if ok, _ := isStaticELF(out, goarch); ok {
		if cachedIntact(out) {
			fmt.Fprintf(o.log, "runtime: cached %s for %s\n", out, platformString(p))
			return out, nil
		}
		fmt.Fprintf(o.log, "runtime: %s changed since it was built; building it again\n", out)
		if err := os.Remove(out); err != nil {
			return "", fmt.Errorf("runtime cache: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("runtime cache: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("runtime cache: %w", err)
	}
	defer os.RemoveAll(tmp)

	start := time.Now()
	fmt.Fprintf(o.log, "runtime: building %s for %s from %s\n", pkg, platformString(p), src)
	args := append([]string{"build"}, buildFlags...)
	args = append(args, "-o", filepath.Join(tmp, name), pkg)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = src
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build runtime for %s from %s: %w: %s", platformString(p), src, err, strings.TrimSpace(stderr.String()))
	}
	if ok, why := isStaticELF(filepath.Join(tmp, name), goarch); !ok {
		return "", fmt.Errorf("build runtime for %s from %s: output %s", platformString(p), src, why)
	}
	// A source edited during the build must not be cached under the old key.
	if after, err := sourceDigest(ctx, goBin, src, env, pkg); err != nil {
		return "", err
	} else if after != digest {
		return "", fmt.Errorf("build runtime for %s: %w: the source in %s was edited while building", platformString(p), ErrFileChanged, src)
	}
	sum, err := fileDigest(filepath.Join(tmp, name))
	if err != nil {
		return "", fmt.Errorf("runtime cache: %w", err)
	}
	if err := os.WriteFile(out+".sha256", []byte(sum+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("runtime cache: %w", err)
	}
	// A link, not a rename: a builder that finished first keeps its file,
	// which an image build elsewhere may be reading (both are the same
	// bytes).
	if err := os.Link(filepath.Join(tmp, name), out); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("runtime cache: %w", err)
	}
	size := "?"
	if fi, err := os.Stat(out); err == nil {
		size = fmt.Sprintf("%.1f MB", float64(fi.Size())/1e6)
	}
	fmt.Fprintf(o.log, "runtime: built %s for %s in %s (%s)\n", name, platformString(p), time.Since(start).Round(100*time.Millisecond), size)
	return out, nil
}

// cachedIntact says whether a cached binary still has the digest written
// beside it when it was built.
func cachedIntact(path string) bool {
	want, err := os.ReadFile(path + ".sha256")
	if err != nil {
		return false
	}
	got, err := fileDigest(path)
	return err == nil && got == strings.TrimSpace(string(want))
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// sourceDigest is the runtime cache key: sha256 over the build flags, the
// toolchain's environment for the target (GOVERSION, GOOS, GOARCH, variants,
// GOFLAGS), go.mod, go.sum and every file of every local package that cmdPkg
// imports, its own included (Go and embedded files alike, as `go list`
// reports them). Packages from versioned modules are pinned by go.sum. Two
// commands differ in their own files, so their keys differ.
func sourceDigest(ctx context.Context, goBin, src string, env []string, cmdPkg string) (string, error) {
	goenv, err := goOutput(ctx, goBin, src, env, "env", "-json", "GOVERSION", "GOOS", "GOARCH", "GOARM", "GOAMD64", "GOARM64", "GOFLAGS", "CGO_ENABLED")
	if err != nil {
		return "", err
	}
	list, err := goOutput(ctx, goBin, src, env, "list", "-deps", "-json=ImportPath,Dir,GoFiles,SFiles,EmbedFiles,Standard,Module", cmdPkg)
	if err != nil {
		return "", err
	}
	type pkg struct {
		ImportPath string
		Dir        string
		GoFiles    []string
		SFiles     []string
		EmbedFiles []string
		Standard   bool
		Module     *struct {
			Version string
			Replace *struct{ Version string }
		}
	}
	var files []string // "importpath/name" keys; paths relative to be machine-independent
	where := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(list))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			return "", fmt.Errorf("source digest of %s: decode go list output: %w", src, err)
		}
		// Versioned modules are fixed by go.sum; only local code (the main
		// module and directory replacements) can change under the same key.
		if p.Standard || p.Module == nil {
			continue
		}
		local := p.Module.Version == "" || (p.Module.Replace != nil && p.Module.Replace.Version == "")
		if !local {
			continue
		}
		for _, f := range slices.Concat(p.GoFiles, p.SFiles, p.EmbedFiles) {
			key := p.ImportPath + "/" + f
			files = append(files, key)
			where[key] = filepath.Join(p.Dir, filepath.FromSlash(f))
		}
	}
	sort.Strings(files)

	h := sha256.New()
	field := func(name string, data []byte) {
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(data))
		h.Write(data)
	}
	field("flags", []byte(strings.Join(buildFlags, " ")))
	field("go env", goenv)
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil && !(name == "go.sum" && errors.Is(err, os.ErrNotExist)) {
			return "", fmt.Errorf("source digest of %s: %w", src, err)
		}
		field(name, b)
	}
	for _, key := range files {
		b, err := os.ReadFile(where[key])
		if err != nil {
			return "", fmt.Errorf("source digest of %s: %w", src, err)
		}
		field(key, b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func goOutput(ctx context.Context, goBin, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// elfMachines maps GOARCH to the ELF machine of its binaries.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"arm":     elf.EM_ARM,
	"386":     elf.EM_386,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
	"riscv64": elf.EM_RISCV,
}

// isStaticELF reports whether path is a statically linked Linux executable
// for goarch, and if not, why (for error messages).
func isStaticELF(path, goarch string) (bool, string) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Sprintf("is not an ELF binary (%v)", err)
	}
	defer f.Close()
	if want, ok := elfMachines[goarch]; !ok || f.Machine != want {
		return false, fmt.Sprintf("is for %v, not %s", f.Machine, goarch)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return false, fmt.Sprintf("is not an executable (%v)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, "is dynamically linked (has an interpreter)"
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return false, fmt.Sprintf("needs shared libraries %v", libs)
	}
	return true, ""
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
