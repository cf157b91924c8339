// Command sdkimage builds the Go SDK runtime image that the Dagger engine
// loads for module mode (`dagger call`), without pulling anything: the Go
// toolchain comes from this host's GOROOT, the shell from busybox-static,
// the codegen binary from build.sh, and /go/pkg/mod is seeded from the
// host's module cache with every module the given Go module needs, so that
// nothing is fetched inside the engine (it runs with GOPROXY=off).
//
// Two kinds of Go module seed it. A -module directory (the Dagger module,
// ci/) gets every module of its build list, zips included: the SDK's codegen
// runs `go mod tidy` there, which loads the tests of its dependencies too. A
// -build directory (modelci's root module, which the module's functions
// compile and test in the builder image) gets the zips of the modules that
// provide its packages and their tests' imports. Any of those missing from
// the host's module cache is an error here, naming the `go mod download`
// to run, rather than a "module lookup disabled" failure inside the engine.
//
// It writes two images into an OCI layout (the engine's built-in content
// directory) and prints their manifest digests:
//
//	builder sha256:…   Go toolchain, busybox, CA certificates, module cache
//	sdk     sha256:…   the same plus codegen; its environment names the builder
//
// The module's functions load the builder by digest to compile modelci in a
// container with the very toolchain `modelci run` uses on this host, so the
// two produce the same runtime binary and image digests.
//
// Usage:
//
//	sdkimage -layout DIR -codegen PATH -busybox PATH -module DIR[,DIR…] [-build DIR[,DIR…]] [-graph DIR[,DIR…]]
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/mod/module"
)

// BuilderEnv names the builder image's manifest digest in the SDK image's
// environment, and so in every module function's environment.
const BuilderEnv = "MODELCI_GO_BUILDER_DIGEST"

func main() {
	var (
		layoutDir = flag.String("layout", "/usr/local/share/dagger/content", "OCI layout to write the images into")
		codegen   = flag.String("codegen", "", "the codegen binary built by build.sh")
		busybox   = flag.String("busybox", "/bin/busybox", "a static busybox binary")
		modDirs   = flag.String("module", ".", "comma-separated Go module directories whose whole build lists seed /go/pkg/mod (go mod tidy runs there)")
		buildDirs = flag.String("build", "", "comma-separated Go module directories whose packages' and tests' dependencies seed /go/pkg/mod (go build and go test run there)")
		graphDirs = flag.String("graph", "", "comma-separated Go module directories whose module graphs (go.mod files only) seed /go/pkg/mod too")
		certs     = flag.String("certs", "/etc/ssl/certs/ca-certificates.crt", "CA certificate bundle")
		work      = flag.String("work", os.TempDir(), "scratch directory for layer files")
	)
	flag.Parse()
	if *codegen == "" {
		fmt.Fprintln(os.Stderr, "sdkimage: -codegen is required")
		os.Exit(2)
	}
	builder, sdk, err := build(*layoutDir, *codegen, *busybox, dirs{module: list(*modDirs), build: list(*buildDirs), graph: list(*graphDirs)}, *certs, *work)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdkimage: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("builder %s\nsdk %s\n", builder, sdk)
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// dirs are the Go modules that seed the module cache, by what runs there.
type dirs struct{ module, build, graph []string }

func build(layoutDir, codegen, busybox string, ds dirs, certs, work string) (v1.Hash, v1.Hash, error) {
	var zero v1.Hash
	if len(ds.module) == 0 {
		return zero, zero, errors.New("no -module directory")
	}
	modDir := ds.module[0]
	goroot, err := goEnv(modDir, "GOROOT")
	if err != nil {
		return zero, zero, err
	}
	modcache, err := goEnv(modDir, "GOMODCACHE")
	if err != nil {
		return zero, zero, err
	}
	seed, err := moduleFiles(ds, modcache)
	if err != nil {
		return zero, zero, err
	}

	var base []v1.Layer
	for _, spec := range []struct {
		name    string
		entries func() ([]entry, error)
	}{
		{"toolchain", func() ([]entry, error) { return treeEntries(goroot, "usr/local/go", skipGoroot) }},
		{"modcache", func() ([]entry, error) { return seed, nil }},
		{"system", func() ([]entry, error) { return systemEntries(busybox, certs) }},
	} {
		es, err := spec.entries()
		if err != nil {
			return zero, zero, fmt.Errorf("%s layer: %w", spec.name, err)
		}
		l, err := writeLayer(work, spec.name, es)
		if err != nil {
			return zero, zero, fmt.Errorf("%s layer: %w", spec.name, err)
		}
		base = append(base, l)
	}
	env := []string{
		"PATH=/go/bin:/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin",
		"GOPATH=/go",
		"GOTOOLCHAIN=local",
		"CGO_ENABLED=0",
		"GOPROXY=off",
		"GOFLAGS=-mod=mod",
		// go.sum verifies every module; there is no checksum database offline.
		"GOSUMDB=off",
	}
	builder, err := image(base, env)
	if err != nil {
		return zero, zero, err
	}
	builderDigest, err := builder.Digest()
	if err != nil {
		return zero, zero, err
	}

	cg, err := writeLayer(work, "codegen", []entry{
		dirEntry("usr"), dirEntry("usr/local"), dirEntry("usr/local/bin"),
		{name: "usr/local/bin/codegen", src: codegen, mode: 0o755},
	})
	if err != nil {
		return zero, zero, fmt.Errorf("codegen layer: %w", err)
	}
	sdk, err := image(append(base, cg), append(env, BuilderEnv+"="+builderDigest.String()))
	if err != nil {
		return zero, zero, err
	}
	sdkDigest, err := sdk.Digest()
	if err != nil {
		return zero, zero, err
	}

	p, err := layout.FromPath(layoutDir)
	if err != nil {
		if p, err = layout.Write(layoutDir, empty.Index); err != nil {
			return zero, zero, fmt.Errorf("create layout %s: %w", layoutDir, err)
		}
	}
	for _, img := range []v1.Image{builder, sdk} {
		if err := p.ReplaceImage(img, matchDigest(img)); err != nil {
			return zero, zero, fmt.Errorf("write image to %s: %w", layoutDir, err)
		}
	}
	return builderDigest, sdkDigest, nil
}

func matchDigest(img v1.Image) func(v1.Descriptor) bool {
	d, _ := img.Digest()
	return func(desc v1.Descriptor) bool { return desc.Digest == d }
}

func image(layers []v1.Layer, env []string) (v1.Image, error) {
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Env = env
	cf.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cf)
}

func goEnv(dir, name string) (string, error) {
	cmd := exec.Command("go", "env", name)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// entry is one file of a layer: src is read from the host; link makes a
// symbolic link; neither makes a directory.
type entry struct {
	name string
	src  string
	link string
	mode int64
	dir  bool
}

func dirEntry(name string) entry { return entry{name: name, mode: 0o755, dir: true} }

// skipGoroot leaves out what no build needs, to keep the layer small.
func skipGoroot(rel string) bool {
	switch rel {
	case "test", "doc", "api", "misc", "pkg/obj":
		return true
	}
	return false
}

func treeEntries(root, prefix string, skip func(rel string) bool) ([]entry, error) {
	es := parents(prefix)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel != "." && skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		name := prefix
		if rel != "." {
			name = path.Join(prefix, rel)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			es = append(es, dirEntry(name))
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			es = append(es, entry{name: name, link: target, mode: 0o777})
		case info.Mode().IsRegular():
			mode := int64(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			es = append(es, entry{name: name, src: p, mode: mode})
		}
		return nil
	})
	return es, err
}

func parents(name string) []entry {
	var es []entry
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		es = append(es, dirEntry(strings.Join(parts[:i], "/")))
	}
	return es
}

// systemEntries: busybox as /bin/sh and its applets, CA certificates, and
// the directories Go and the SDK write to.
func systemEntries(busybox, certs string) ([]entry, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets of %s: %w", busybox, err)
	}
	es := []entry{
		dirEntry("bin"), {name: "bin/busybox", src: busybox, mode: 0o755},
		dirEntry("etc"), dirEntry("etc/ssl"), dirEntry("etc/ssl/certs"),
		{name: "etc/ssl/certs/ca-certificates.crt", src: certs, mode: 0o644},
		{name: "tmp", mode: 0o1777, dir: true},
		dirEntry("root"), dirEntry("root/.cache"), dirEntry("root/.cache/go-build"),
		dirEntry("go/bin"),
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		a := strings.TrimSpace(sc.Text())
		if a == "" || a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		es = append(es, entry{name: "bin/" + a, link: "busybox", mode: 0o777})
	}
	return es, nil
}

// moduleFiles lists the module cache's download files that the engine's
// Go commands read with GOPROXY=off: .info and .mod of every module in the
// module graphs of all dirs (go mod graph), and .zip too for the build lists
// of ds.module and the packages (and tests) of ds.build. The Go SDK's codegen
// merges the SDK's own requirements into the module's go.mod before `go mod
// tidy` prunes them again: tidy then reads their go.mod files, which a
// ds.graph directory requiring the SDK holds.
func moduleFiles(ds dirs, modcache string) ([]entry, error) {
	mods := map[string]bool{} // path@version → needs the zip
	for _, dir := range append(append(append([]string(nil), ds.module...), ds.build...), ds.graph...) {
		graph, err := command(dir, "go", "mod", "graph")
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(graph), "\n") {
			for _, f := range strings.Fields(line) {
				if strings.Contains(f, "@") {
					if _, ok := mods[f]; !ok {
						mods[f] = false
					}
				}
			}
		}
	}
	zips := func(dir string, args ...string) error {
		out, err := command(dir, "go", args...)
		if err != nil {
			return err
		}
		for _, m := range strings.Fields(string(out)) {
			mods[m] = true
		}
		return nil
	}
	for _, dir := range ds.module {
		if err := zips(dir, "list", "-m", "-f", "{{if .Version}}{{.Path}}@{{.Version}}{{end}}", "all"); err != nil {
			return nil, err
		}
	}
	for _, dir := range ds.build {
		if err := zips(dir, "list", "-deps", "-test", "-f", "{{with .Module}}{{if .Version}}{{.Path}}@{{.Version}}{{end}}{{end}}", "./..."); err != nil {
			return nil, err
		}
	}
	// The go toolchain lines (go@1.x, toolchain@…) are not modules.
	delete(mods, "go@"+strings.TrimPrefix(runtime.Version(), "go"))
	keys := make([]string, 0, len(mods))
	for k := range mods {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	seen := map[string]bool{}
	var es []entry
	add := func(name, src string) {
		for _, p := range parents(name) {
			if !seen[p.name] {
				seen[p.name] = true
				es = append(es, p)
			}
		}
		es = append(es, entry{name: name, src: src, mode: 0o644})
	}
	var missing []string
	for _, k := range keys {
		p, v, _ := strings.Cut(k, "@")
		if p == "go" || p == "toolchain" {
			continue
		}
		ep, err := module.EscapePath(p)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", k, err)
		}
		ev, err := module.EscapeVersion(v)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", k, err)
		}
		base := path.Join("cache/download", ep, "@v", ev)
		exts := []string{".info", ".mod"}
		if mods[k] {
			exts = append(exts, ".zip", ".ziphash")
		}
		for _, ext := range exts {
			src := filepath.Join(modcache, filepath.FromSlash(base+ext))
			if _, err := os.Stat(src); err != nil {
				// go mod graph lists modules whose go.mod files graph
				// pruning never reads: only the zips are required.
				if ext == ".zip" {
					missing = append(missing, k)
				}
				continue
			}
			add(path.Join("go/pkg/mod", base+ext), src)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%d modules that Go commands in the engine need are not in %s (first: %s): run `go mod download all` in %s and `go mod download` in %s",
			len(missing), modcache, missing[0], strings.Join(ds.module, ", "), strings.Join(ds.build, ", "))
	}
	return es, nil
}

func command(dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// writeLayer writes a reproducible tar (sorted, fixed owner and times) of
// es to a file and returns it as a layer compressed at the fastest level.
func writeLayer(work, name string, es []entry) (v1.Layer, error) {
	sort.SliceStable(es, func(i, j int) bool { return es[i].name < es[j].name })
	f, err := os.CreateTemp(work, "sdkimage-"+name+"-*.tar")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	last := ""
	for _, e := range es {
		if e.name == last {
			continue
		}
		last = e.name
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			h.Typeflag = tar.TypeReg
		}
		var body io.ReadCloser
		if h.Typeflag == tar.TypeReg && e.src != "" {
			rf, err := os.Open(e.src)
			if err != nil {
				return nil, err
			}
			st, err := rf.Stat()
			if err != nil {
				rf.Close()
				return nil, err
			}
			h.Size, body = st.Size(), rf
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if body != nil {
			_, err := io.Copy(tw, body)
			body.Close()
			if err != nil {
				return nil, fmt.Errorf("add %s: %w", e.src, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return nil, err
	}
	return tarball.LayerFromFile(f.Name(), tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
}
