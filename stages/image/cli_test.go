package image_test

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/image"
)

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// cli is the static modelci CLI built from this repository, as a training
// Job's image gets it: once per test binary, from the default cache (a
// cold build of the whole CLI takes minutes on a small machine).
func cli(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs the built linux/amd64 binary")
	}
	cliOnce.Do(func() {
		cliBin, cliErr = image.Runtime(context.Background(), v1.Platform{OS: "linux", Architecture: "amd64"},
			image.WithCommand(image.CLIName), image.WithSourceDir("../.."))
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliBin
}

// WithCommand builds another command of the module the way Runtime builds
// the server, into the same cache under its own name; the server's build
// is unaffected.
func TestRuntimeWithCommand(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs the built linux/amd64 binary")
	}
	src := writeFiles(t, map[string]string{
		"go.mod":                    "module github.com/modelci/modelci\n\ngo 1.26\n",
		"cmd/modelci-serve/main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Print(\"serve\") }\n",
		"cmd/modelci/main.go":       "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Print(\"cli\") }\n",
	})
	t.Setenv("MODELCI_SOURCE", src)
	cache := t.TempDir()
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	ctx := context.Background()
	serve, err := image.Runtime(ctx, amd64, image.WithCacheDir(cache))
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := image.Runtime(ctx, amd64, image.WithCacheDir(cache), image.WithCommand(image.CLIName))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(serve) != image.RuntimeName || filepath.Base(cmd) != image.CLIName ||
		filepath.Dir(filepath.Dir(serve)) != cache || filepath.Dir(filepath.Dir(cmd)) != cache || filepath.Dir(serve) == filepath.Dir(cmd) {
		t.Errorf("server %s, CLI %s: want cache/<key>/%s and cache/<another key>/%s", serve, cmd, image.RuntimeName, image.CLIName)
	}
	for bin, want := range map[string]string{serve: "serve", cmd: "cli"} {
		if out, err := exec.Command(bin).Output(); err != nil || string(out) != want {
			t.Errorf("%s printed %q, %v; want %q", bin, out, err, want)
		}
	}
	if again, err := image.Runtime(ctx, amd64, image.WithCacheDir(cache)); err != nil || again != serve {
		t.Errorf("the server after the CLI: %s, %v; want the cached %s", again, err, serve)
	}
	for _, bad := range []string{"", "../x", "a/b", "x.y"} {
		if _, err := image.Runtime(ctx, amd64, image.WithCacheDir(cache), image.WithCommand(bad)); err == nil {
			t.Errorf("WithCommand(%q) accepted", bad)
		}
	}
}

// The CLI image: the same binary gives the same digest; its one layer holds
// the binary, which runs, and the host's CA bundle; it runs as 65532.
func TestCLIImage(t *testing.T) {
	bin := cli(t)
	img, err := image.CLIImage(bin)
	if err != nil {
		t.Fatal(err)
	}
	again, err := image.CLIImage(bin)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	if d2, _ := again.Digest(); d1 != d2 {
		t.Errorf("built twice: %s and %s", d1, d2)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{image.CLIPath}) || cf.Config.User != "65532" ||
		cf.OS != "linux" || cf.Architecture != "amd64" || cf.Created.Unix() != 0 {
		t.Errorf("config %+v", cf)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v; want 1", len(layers), err)
	}
	dir := t.TempDir()
	files := untar(t, layers[0], dir)
	hostCA := ""
	for _, p := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"} {
		if _, err := os.Stat(p); err == nil {
			hostCA = p
			break
		}
	}
	if hostCA != "" && !slices.Contains(files, image.CABundlePath[1:]) {
		t.Errorf("layer %v has no CA bundle at %s (the host has %s)", files, image.CABundlePath, hostCA)
	}
	out, err := exec.Command(filepath.Join(dir, image.CLIPath[1:]), "version").Output()
	if err != nil || !strings.Contains(string(out), "modelci") {
		t.Errorf("modelci version from the layer: %q, %v", out, err)
	}

	// Without a bundle: another layer, still reproducible.
	bare, err := image.CLIImage(bin, image.WithCABundle(""))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := bare.Digest(); d == d1 {
		t.Errorf("the image without a CA bundle has the digest of the one with it")
	}
	bl, _ := bare.Layers()
	if files := untar(t, bl[0], t.TempDir()); slices.Contains(files, image.CABundlePath[1:]) {
		t.Errorf("WithCABundle(\"\") kept the bundle: %v", files)
	}
}

// CLIImage takes a static Linux binary only.
func TestCLIImageRefusesDynamicBinaries(t *testing.T) {
	script := filepath.Join(t.TempDir(), "modelci")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := image.CLIImage(script); !errors.Is(err, image.ErrNoRuntime) {
		t.Errorf("a script: %v, want ErrNoRuntime", err)
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if _, err := image.CLIImage(sh); !errors.Is(err, image.ErrNoRuntime) {
			t.Errorf("%s: %v, want ErrNoRuntime", sh, err)
		}
	}
}

// untar writes l's regular files under dir and returns every entry's name.
func untar(t *testing.T, l v1.Layer, dir string) []string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d time %s", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}
