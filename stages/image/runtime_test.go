package image_test

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"github.com/modelci/modelci/stages/image"
)

// fakeModule writes a module named like modelci whose cmd/modelci-serve prints
// msg, so that Runtime's source path is exercised without building the real
// server.
func fakeModule(t *testing.T, msg string) string {
	return writeFiles(t, map[string]string{
		"go.mod": "module github.com/modelci/modelci\n\ngo 1.26\n",
		"cmd/modelci-serve/main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Print(" +
			strings.ReplaceAll(`"MSG"`, "MSG", msg) + ") }\n",
		"cmd/modelci-serve/main_test.go": "package main\n",
		"internal/notes.txt":             "not part of the build\n",
	})
}

func elfMachine(t *testing.T, path string) elf.Machine {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.Machine
}

func TestRuntimeBuildsAndCaches(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs the built linux/amd64 binary")
	}
	t.Setenv("MODELCI_SOURCE", "")
	src := fakeModule(t, "one")
	cache := t.TempDir()
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	ctx := context.Background()

	var log bytes.Buffer
	// Start below the module root: the source is found by walking up.
	opts := []image.RuntimeOption{image.WithSourceDir(filepath.Join(src, "cmd", "modelci-serve")), image.WithCacheDir(cache), image.WithLog(&log)}
	first, err := image.Runtime(ctx, amd64, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first, cache+string(filepath.Separator)) || filepath.Base(first) != image.RuntimeName {
		t.Errorf("binary %s is not in the cache %s", first, cache)
	}
	if !strings.Contains(log.String(), "building") {
		t.Errorf("log %q does not mention a build", log.String())
	}
	out, err := exec.Command(first).Output()
	if err != nil || string(out) != "one" {
		t.Fatalf("built binary printed %q, %v", out, err)
	}
	if ok, why := image.IsStaticELF(first, "amd64"); !ok {
		t.Errorf("built binary %s", why)
	}

	// Unchanged source: the cached binary, no build.
	log.Reset()
	again, err := image.Runtime(ctx, amd64, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || !strings.Contains(log.String(), "cached") || strings.Contains(log.String(), "building") {
		t.Errorf("second call: %s, log %q; want the cached %s", again, log.String(), first)
	}

	// A cached binary changed since it was built is built again, not used.
	want, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(first, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0})
	f.Close()
	log.Reset()
	if p, err := image.Runtime(ctx, amd64, opts...); err != nil || p != first || !strings.Contains(log.String(), "changed since it was built") {
		t.Fatalf("after the cached binary changed: %s, %v, log %q", p, err, log.String())
	}
	if got, _ := os.ReadFile(first); !bytes.Equal(got, want) {
		t.Errorf("the rebuilt binary differs from the first build (%d bytes, want %d)", len(got), len(want))
	}

	// Files outside the build (tests, notes) do not change the key.
	for name, content := range map[string]string{"cmd/modelci-serve/main_test.go": "package main\n\n// changed\n", "internal/notes.txt": "changed\n"} {
		if err := os.WriteFile(filepath.Join(src, filepath.FromSlash(name)), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := image.Runtime(ctx, amd64, opts...); err != nil || p != first {
		t.Errorf("after changing files outside the build: %s, %v; want %s", p, err, first)
	}

	// A source change is a new key and a new binary; the old one stays.
	if err := os.WriteFile(filepath.Join(src, "cmd/modelci-serve/main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Print(\"two\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := image.Runtime(ctx, amd64, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatalf("source change kept the cache key %s", first)
	}
	if out, err := exec.Command(second).Output(); err != nil || string(out) != "two" {
		t.Errorf("rebuilt binary printed %q, %v", out, err)
	}
	if _, err := os.Stat(first); err != nil {
		t.Errorf("old binary: %v", err)
	}

	// MODELCI_SOURCE wins over the walk and must be modelci's module.
	t.Setenv("MODELCI_SOURCE", t.TempDir())
	if _, err := image.Runtime(ctx, amd64, opts...); err == nil || !strings.Contains(err.Error(), "MODELCI_SOURCE") {
		t.Errorf("MODELCI_SOURCE without go.mod: %v", err)
	}
	t.Setenv("MODELCI_SOURCE", src)
	if p, err := image.Runtime(ctx, amd64, image.WithCacheDir(cache)); err != nil || p != second {
		t.Errorf("MODELCI_SOURCE: %s, %v; want %s", p, err, second)
	}
}

func TestRuntimeCrossCompiles(t *testing.T) {
	t.Setenv("MODELCI_SOURCE", fakeModule(t, "arm"))
	p, err := image.Runtime(context.Background(), v1.Platform{OS: "linux", Architecture: "arm64"}, image.WithCacheDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if m := elfMachine(t, p); m != elf.EM_AARCH64 {
		t.Errorf("machine %v, want EM_AARCH64", m)
	}
	if ok, why := image.IsStaticELF(p, "arm64"); !ok {
		t.Errorf("cross-compiled binary %s", why)
	}
}

func TestRuntimeErrors(t *testing.T) {
	noGo := func(t *testing.T) { t.Setenv("PATH", t.TempDir()) }
	tests := []struct {
		name     string
		setup    func(t *testing.T)
		platform v1.Platform
		want     error
	}{
		{"not linux", nil, v1.Platform{OS: "windows", Architecture: "amd64"}, image.ErrUnsupportedPlatform},
		{"no architecture", nil, v1.Platform{OS: "linux"}, image.ErrUnsupportedPlatform},
		{"unknown variant", nil, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v9"}, image.ErrUnsupportedPlatform},
		// Without Go, the running (amd64) test binary cannot serve s390x.
		{"no toolchain", noGo, v1.Platform{OS: "linux", Architecture: "s390x"}, image.ErrNoRuntime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup(t)
			}
			_, err := image.Runtime(context.Background(), tt.platform, image.WithCacheDir(t.TempDir()))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestIsStaticELF(t *testing.T) {
	text := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, arch string
		want             bool
	}{
		{"static amd64", hello(t, "amd64"), "amd64", true},
		{"wrong arch", hello(t, "amd64"), "arm64", false},
		{"script", text, "amd64", false},
		{"missing", filepath.Join(t.TempDir(), "nope"), "amd64", false},
	}
	if sh, err := exec.LookPath("sh"); err == nil && runtime.GOARCH == "amd64" {
		// The system shell is dynamically linked on every usual distribution.
		if resolved, err := filepath.EvalSymlinks(sh); err == nil && elfInterp(resolved) {
			tests = append(tests, struct {
				name, path, arch string
				want             bool
			}{"dynamic", resolved, "amd64", false})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := image.IsStaticELF(tt.path, tt.arch)
			if ok != tt.want || (!ok && why == "") {
				t.Errorf("IsStaticELF(%s, %s) = %v, %q; want %v", tt.path, tt.arch, ok, why, tt.want)
			}
		})
	}
}

func elfInterp(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

// TestRuntimeFromModuleSource builds the real server from this checkout
// into the user's cache, so later runs are cache hits.
func TestRuntimeFromModuleSource(t *testing.T) {
	if testing.Short() {
		t.Skip("builds modelci-serve (seconds when cold)")
	}
	mains, _ := filepath.Glob("../../cmd/modelci-serve/*.go")
	if len(mains) == 0 {
		t.Skip("cmd/modelci-serve has no source yet")
	}
	t.Setenv("MODELCI_SOURCE", "")
	var log bytes.Buffer
	p, err := image.Runtime(context.Background(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir("."), image.WithLog(&log))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", log.String())
	if ok, why := image.IsStaticELF(p, "amd64"); !ok {
		t.Errorf("runtime %s %s", p, why)
	}
}

// TestRuntimeFromGoInstall: a modelci installed with `go install
// …@VERSION`, run where no source tree is, builds the lean server from the
// module at that version, as the module cache or GOPROXY give it. Here a
// copy of this checkout is served at v0.99.0 by a file-system GOPROXY, and
// the dependencies come from this machine's module cache (itself a
// GOPROXY): nothing is downloaded.
func TestRuntimeFromGoInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds modelci-serve from a module zip")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command")
	}
	out, err := exec.Command(goBin, "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	realCache := strings.TrimSpace(string(out))
	const version = "v0.99.0"
	proxy := t.TempDir()
	at := filepath.Join(proxy, "github.com", "modelci", "modelci", "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	zf, err := os.Create(filepath.Join(at, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	if err := modzip.CreateFromDir(zf, module.Version{Path: image.ModulePath, Version: version}, root); err != nil {
		t.Fatalf("module zip of %s: %v", root, err)
	}
	if err := zf.Close(); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"list":            []byte(version + "\n"),
		version + ".info": []byte(`{"Version":"` + version + `","Time":"2026-12-07T00:00:00Z"}`),
		version + ".mod":  gomod,
	} {
		if err := os.WriteFile(filepath.Join(at, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MODELCI_SOURCE", "")
	t.Setenv("GOPROXY", "file://"+proxy+",file://"+filepath.Join(realCache, "cache", "download"))
	t.Setenv("GOMODCACHE", t.TempDir())
	t.Setenv("GOFLAGS", "-modcacherw")
	t.Setenv("GONOSUMDB", image.ModulePath)
	t.Setenv("GOSUMDB", "off")
	t.Chdir(t.TempDir()) // no source tree above the working directory

	var log bytes.Buffer
	p, err := image.Runtime(t.Context(), v1.Platform{OS: "linux", Architecture: "amd64"},
		image.WithModuleVersion(version), image.WithSourceDir(t.TempDir()), image.WithCacheDir(t.TempDir()), image.WithLog(&log))
	t.Logf("%s", log.String())
	if err != nil {
		t.Fatalf("runtime from %s@%s: %v", image.ModulePath, version, err)
	}
	if !strings.Contains(log.String(), "@"+version) || !strings.Contains(log.String(), "built "+image.RuntimeName+" for linux/amd64 in ") {
		t.Errorf("the log does not say where the source came from and how long the build took:\n%s", log.String())
	}
	if ok, why := image.IsStaticELF(p, "amd64"); !ok {
		t.Fatalf("runtime %s %s", p, why)
	}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		help, err := exec.Command(p, "--help").CombinedOutput()
		if err != nil || !strings.Contains(string(help), "--model") {
			t.Errorf("%s --help: %v\n%s", p, err, help)
		}
	}

	// An image built with it, with no source tree anywhere: the entrypoint
	// is the server built from the module.
	res, err := image.Run(t.Context(), image.Input{
		ModelDir: writeFiles(t, map[string]string{"model.json": modelJSON}), Name: "diabetes", Version: "1.0.0", DatasetDigest: "sha256:" + strings.Repeat("ab", 32),
		Platforms: []string{"linux/amd64"}, Layout: filepath.Join(t.TempDir(), "oci"),
		Runtime: func(context.Context, v1.Platform) (string, error) { return p, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest.Hex == "" {
		t.Fatalf("image result %+v", res)
	}

	// A (devel) build outside a tree says to set MODELCI_SOURCE.
	_, err = image.Runtime(t.Context(), v1.Platform{OS: "linux", Architecture: "s390x"}, image.WithModuleVersion("(devel)"), image.WithSourceDir(t.TempDir()), image.WithCacheDir(t.TempDir()))
	if !errors.Is(err, image.ErrNoRuntime) || !strings.Contains(err.Error(), "MODELCI_SOURCE") {
		t.Errorf("a (devel) build outside its tree: %v, want ErrNoRuntime naming MODELCI_SOURCE", err)
	}
}
