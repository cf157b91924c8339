package k8stest

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// DebianSuite is the Debian release DebianImage builds: the host's, whose mirrors it uses.
	DebianSuite = "bookworm"
	// DebianRepository is the repository of the node's registry that DebianImage pushes to,
	// tagged by cache key.
	DebianRepository = "modelci/debian"

	// debianEpoch (SOURCE_DATE_EPOCH) is bookworm's release day: every file's time is clamped
	// to it and the image is dated by it, so that the same packages make the same bytes.
	debianEpoch = 1686355200
	// debianFormat changes the cache key when this file builds differently in a way that the
	// key's other inputs do not show.
	debianFormat = 1
	// debianTimeout bounds a build: a cold PyTorch image takes about 3 minutes on 2 cores.
	debianTimeout = 20 * time.Minute
	// debianKeyring is the keyring every apt source of the build is checked against, so
	// that only Debian's archives can serve it.
	debianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
)

// debianBuilds counts the images this process built (not found in the cache), for tests.
var debianBuilds atomic.Int64

// debianPackage is what DebianImage accepts as a package: a Debian package name, so that
// nothing else reaches mmdebstrap's --include.
var debianPackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// debianArch is Debian's name of each Go architecture the images may be built for: this
// machine's (the node runs here).
var debianArch = map[string]string{
	"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64",
}

// DebianImage returns a Debian image (DebianSuite, this machine's architecture) with packages
// installed, pushed to n.Registry (DebianRepository), by digest. Its root filesystem is built by
// mmdebstrap (variant apt, without recommended packages, without documentation, manual pages
// or translations) from the Debian mirrors the host's apt sources name, and is the image's only
// layer, gzip-compressed. The build is reproducible (SOURCE_DATE_EPOCH; the same packages and Go
// version make the same digest) and cached under
// ${XDG_CACHE_HOME:-~/.cache}/modelci/debian/KEY, KEY a hash of what the build depends on but
// the packages' versions: a cached image stays as it is when Debian updates a package (remove
// its directory to rebuild it). Downloaded packages are kept under debian/archives, and the
// host's /var/cache/apt/archives is used when it holds them. The image's command is /bin/sh.
//
// Without mmdebstrap it skips t as StartNode does (apt-get install mmdebstrap).
func DebianImage(t testing.TB, n *Node, packages ...string) string {
	t.Helper()
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		if os.Getenv(EnvNodeRequired) == "1" {
			t.Fatalf("DebianImage: %v (apt-get install mmdebstrap)", err)
		}
		t.Skipf("DebianImage: %v (apt-get install mmdebstrap; set %s=1 to make this a failure)", err, EnvNodeRequired)
	}
	ctx, cancel := context.WithTimeout(context.Background(), debianTimeout)
	defer cancel()
	start := time.Now()
	layer, built, err := debianLayer(ctx, packages)
	if err != nil {
		t.Fatalf("DebianImage %v: %v", packages, err)
	}
	if built {
		t.Logf("DebianImage %v: built %s (%d MB, %d MB compressed) in %s", packages, layer.dir, layer.TarSize/1e6, layer.Size/1e6, time.Since(start).Round(time.Millisecond))
	}
	start = time.Now()
	ref, err := pushDebian(ctx, n.Registry, layer)
	if err != nil {
		t.Fatalf("DebianImage %v: %v", packages, err)
	}
	t.Logf("DebianImage %v: %s pushed in %s", packages, ref, time.Since(start).Round(time.Millisecond))
	return ref
}

// debianCache is DebianImage's cache directory.
func debianCache() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("debian image cache: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "modelci", "debian"), nil
}

// cachedLayer is a built root filesystem: dir/layer.tar.gz, with its digests and sizes recorded
// in dir/layer.json (a 1 GB layer is not hashed again at each use).
type cachedLayer struct {
	dir     string
	Digest  v1.Hash `json:"digest"`
	Size    int64   `json:"size"`
	DiffID  v1.Hash `json:"diffID"`
	TarSize int64   `json:"tarSize"`
}

// debianLayer returns the cached root filesystem of packages, building it on a miss; built
// says whether it did.
func debianLayer(ctx context.Context, packages []string) (_ *cachedLayer, built bool, _ error) {
	pkgs := slices.Sorted(slices.Values(packages))
	pkgs = slices.Compact(pkgs)
	for _, p := range pkgs {
		if !debianPackage.MatchString(p) {
			return nil, false, fmt.Errorf("%q is not a Debian package name", p)
		}
	}
	arch, ok := debianArch[runtime.GOARCH]
	if !ok {
		return nil, false, fmt.Errorf("no Debian architecture for %s", runtime.GOARCH)
	}
	sources, err := debianSources()
	if err != nil {
		return nil, false, err
	}
	version, err := exec.CommandContext(ctx, "mmdebstrap", "--version").Output()
	if err != nil {
		return nil, false, fmt.Errorf("mmdebstrap --version: %w", err)
	}
	args := debianArgs(arch, pkgs)
	// ARCHIVES stands for the package cache's path, which does not change the result.
	inputs, err := json.MarshalIndent(map[string]any{
		"format": debianFormat, "suite": DebianSuite, "architecture": arch, "packages": pkgs,
		"mmdebstrap": strings.TrimSpace(string(version)), "args": args("ARCHIVES"), "sources": sources,
	}, "", "  ")
	if err != nil {
		return nil, false, err
	}
	sum := sha256.Sum256(inputs)
	cache, err := debianCache()
	if err != nil {
		return nil, false, err
	}
	dir := filepath.Join(cache, hex.EncodeToString(sum[:8]))
	if l, err := readCachedLayer(dir); err == nil {
		return l, false, nil
	}
	if err := os.MkdirAll(filepath.Join(cache, "archives"), 0o755); err != nil {
		return nil, false, fmt.Errorf("debian image cache: %w", err)
	}
	// One build at a time per host: the builds share the package cache (apt locks it), and
	// two cores gain nothing from a second one.
	unlock, err := flock(filepath.Join(cache, "build.lock"))
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if l, err := readCachedLayer(dir); err == nil {
		return l, false, nil // another process built it while this one waited
	}
	if err := buildDebian(ctx, dir, filepath.Join(cache, "archives"), args, sources, inputs); err != nil {
		return nil, false, err
	}
	debianBuilds.Add(1)
	l, err := readCachedLayer(dir)
	return l, true, err
}

// debianArgs returns mmdebstrap's arguments but the target, for the package cache at archives.
func debianArgs(arch string, pkgs []string) func(archives string) []string {
	return func(archives string) []string {
		args := []string{
			// A mount namespace of its own, so that the package cache's bind mount cannot
			// outlive the build.
			"--mode=unshare",
			"--variant=apt",
			"--architectures=" + arch,
			"--aptopt=APT::Install-Recommends \"false\"",
			// Without apt's sandbox user always: mmdebstrap disables it when _apt cannot
			// reach the build directory (under /root, say), which changes the owner of
			// apt's partial directories in the image, and so its digest.
			"--aptopt=APT::Sandbox::User \"root\"",
			"--dpkgopt=force-unsafe-io",
			// /bin, /lib, /sbin as links into /usr, as Debian installs it, instead of
			// the usrmerge package (and perl, which it needs).
			"--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
			// The downloaded packages stay in the bind-mounted cache; unmounted before
			// mmdebstrap's clean-up, which would empty it.
			"--skip=essential/unlink",
			`--setup-hook=mkdir -p "$1"/var/cache/apt/archives && mount --bind ` + shellQuote(archives) + ` "$1"/var/cache/apt/archives`,
			`--customize-hook=umount "$1"/var/cache/apt/archives`,
			// Removed after the install rather than excluded by dpkg's path-exclude,
			// which makes mmdebstrap filter every package through a Python process (a
			// minimal image took 50 s instead of 25).
			`--customize-hook=rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/*`,
		}
		if len(pkgs) > 0 {
			args = append(args, "--include="+strings.Join(pkgs, ","))
		}
		return args
	}
}

// buildDebian runs mmdebstrap into a temporary sibling of dir and renames it to dir once
// complete, so that an interrupted build never looks cached.
func buildDebian(ctx context.Context, dir, archives string, args func(string) []string, sources string, inputs []byte) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp.")
	if err != nil {
		return fmt.Errorf("debian image cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700, unlike the cache
		return fmt.Errorf("debian image cache: %w", err)
	}
	// The packages the host downloaded, if any (Debian's docker images delete them).
	debs, _ := filepath.Glob("/var/cache/apt/archives/*.deb")
	for _, deb := range debs {
		if err := linkOrCopy(deb, filepath.Join(archives, filepath.Base(deb))); err != nil {
			return err
		}
	}
	log, err := os.Create(filepath.Join(tmp, "build.log"))
	if err != nil {
		return fmt.Errorf("debian image build log: %w", err)
	}
	defer log.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The sources come on standard input, the tarball goes to standard output ("-", "-"), to
	// be compressed as it comes; mmdebstrap's chroot is made in tmp, so that a killed build
	// leaves nothing elsewhere.
	cmd := exec.CommandContext(ctx, "mmdebstrap", append(args(archives), DebianSuite, "-", "-")...)
	cmd.Stdin = strings.NewReader(sources)
	cmd.Stderr = log
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", debianEpoch), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("mmdebstrap: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mmdebstrap: %w", err)
	}
	l, werr := writeLayer(out, filepath.Join(tmp, "layer.tar.gz"))
	if werr != nil {
		cancel() // or mmdebstrap blocks on the pipe nobody reads
	}
	if err := errors.Join(werr, cmd.Wait()); err != nil {
		return fmt.Errorf("mmdebstrap: %w: %s", err, tail(log.Name()))
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "layer.json"), b, 0o644); err != nil {
		return fmt.Errorf("debian image cache: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "inputs.json"), inputs, 0o644); err != nil {
		return fmt.Errorf("debian image cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("debian image cache: %w", err)
	}
	return nil
}

// writeLayer writes the tarball r to path, gzip-compressed, and returns its digests and sizes.
// Go's fastest level: a 1.2 GB root filesystem takes 15 s to 460 MB (the default level, 36 s to
// 410 MB); pushing and pulling it compressed was no slower than uncompressed, and it takes a
// third of the space in the cache, the registry and containerd's content store.
func writeLayer(r io.Reader, path string) (*cachedLayer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("debian image layer: %w", err)
	}
	defer f.Close()
	digest, diffID := sha256.New(), sha256.New()
	compressed := &countingWriter{w: io.MultiWriter(f, digest)}
	zw, err := gzip.NewWriterLevel(compressed, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(io.MultiWriter(zw, diffID), r)
	if err != nil {
		return nil, fmt.Errorf("debian image layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("debian image layer: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("debian image layer: %w", err)
	}
	return &cachedLayer{
		Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(digest.Sum(nil))}, Size: compressed.n,
		DiffID: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diffID.Sum(nil))}, TarSize: n,
	}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func readCachedLayer(dir string) (*cachedLayer, error) {
	b, err := os.ReadFile(filepath.Join(dir, "layer.json"))
	if err != nil {
		return nil, err
	}
	l := &cachedLayer{dir: dir}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("debian image cache %s: %w", dir, err)
	}
	return l, nil
}

// debianSources returns the host's apt sources of DebianSuite (and its -updates, -security…
// suites), as deb822 stanzas checked against Debian's keyring: only Debian's archives, as the
// host reaches them, serve the build.
func debianSources() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	if _, err := os.Stat("/etc/apt/sources.list"); err == nil {
		lists = append(lists, "/etc/apt/sources.list")
	}
	var entries []aptSource
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("apt sources: %w", err)
		}
		entries = append(entries, parseDeb822(string(b))...)
	}
	for _, f := range lists {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("apt sources: %w", err)
		}
		entries = append(entries, parseSourcesList(string(b))...)
	}
	out := debianStanzas(entries)
	if out == "" {
		return "", fmt.Errorf("no apt source of Debian %s in /etc/apt (sources.list, sources.list.d)", DebianSuite)
	}
	return out, nil
}

// debianStanzas keeps the entries of DebianSuite's suites that are Debian's (no keyring, or
// Debian's), as deb822 stanzas that name Debian's keyring.
func debianStanzas(entries []aptSource) string {
	var out strings.Builder
	for _, e := range entries {
		suites := slices.DeleteFunc(slices.Clone(e.suites), func(s string) bool { return s != DebianSuite && !strings.HasPrefix(s, DebianSuite+"-") })
		debianKey := e.signedBy == "" || strings.HasPrefix(filepath.Base(e.signedBy), "debian-archive-")
		if !slices.Contains(e.types, "deb") || len(suites) == 0 || len(e.uris) == 0 || !debianKey {
			continue
		}
		fmt.Fprintf(&out, "Types: deb\nURIs: %s\nSuites: %s\nComponents: %s\nSigned-By: %s\n\n",
			strings.Join(e.uris, " "), strings.Join(suites, " "), strings.Join(e.components, " "), debianKeyring)
	}
	return out.String()
}

// aptSource is one apt source entry, of either format.
type aptSource struct {
	types, uris, suites, components []string
	signedBy                        string
}

// parseDeb822 reads the stanzas of a .sources file; disabled ones (Enabled: no) are left out.
func parseDeb822(s string) []aptSource {
	var out []aptSource
	for _, stanza := range regexp.MustCompile(`\n\s*\n`).Split(s, -1) {
		fields := map[string]string{}
		var last string
		sc := bufio.NewScanner(strings.NewReader(stanza))
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "#"):
			case strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t"):
				if last != "" { // a continuation line (an inline key's)
					fields[last] += "\n" + line
				}
			default:
				k, v, ok := strings.Cut(line, ":")
				if ok {
					last = strings.ToLower(strings.TrimSpace(k))
					fields[last] = strings.TrimSpace(v)
				}
			}
		}
		if len(fields) == 0 || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		out = append(out, aptSource{
			types: strings.Fields(fields["types"]), uris: strings.Fields(fields["uris"]),
			suites: strings.Fields(fields["suites"]), components: strings.Fields(fields["components"]),
			signedBy: fields["signed-by"],
		})
	}
	return out
}

// parseSourcesList reads the one-line entries of a sources.list file:
// TYPE [OPTIONS] URI SUITE COMPONENT...
func parseSourcesList(s string) []aptSource {
	var out []aptSource
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		var opts string
		if i := strings.Index(line, "["); i >= 0 {
			if j := strings.Index(line[i:], "]"); j >= 0 {
				opts, line = line[i+1:i+j], line[:i]+line[i+j+1:]
			}
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		e := aptSource{types: f[:1], uris: f[1:2], suites: f[2:3], components: f[3:]}
		for _, o := range strings.Fields(opts) {
			if k, v, ok := strings.Cut(o, "="); ok && k == "signed-by" {
				e.signedBy = v
			}
		}
		out = append(out, e)
	}
	return out
}

// pushDebian pushes the image of layer to registry, tagged by its cache key, and returns its
// reference by digest. Blobs the registry has are not sent again.
func pushDebian(ctx context.Context, registry string, l *cachedLayer) (string, error) {
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: &fileLayer{path: filepath.Join(l.dir, "layer.tar.gz"), l: l}})
	if err != nil {
		return "", fmt.Errorf("debian image: %w", err)
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: time.Unix(debianEpoch, 0).UTC()},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{l.DiffID}},
		Config: v1.Config{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"/bin/sh"},
		},
	})
	if err != nil {
		return "", fmt.Errorf("debian image: %w", err)
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	digest, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("debian image: %w", err)
	}
	repo := registry + "/" + DebianRepository
	tag, err := name.NewTag(repo+":"+filepath.Base(l.dir), name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push the debian image to %s: %w", tag, err)
	}
	return repo + "@" + digest.String(), nil
}

// fileLayer is a gzip-compressed layer in a file whose digests are known: go-containerregistry's
// tarball layers would hash it again, decompressing it too.
type fileLayer struct {
	path string
	l    *cachedLayer
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.l.Digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.l.DiffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.l.Size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", l.path, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

var _ v1.Layer = (*fileLayer)(nil)

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// flock takes an exclusive lock on path; the returned function releases it.
func flock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// linkOrCopy makes dst a hard link to src, or a copy across file systems; an existing dst is
// kept (packages' file names carry their versions).
func linkOrCopy(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return nil
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	_, err = io.Copy(out, in)
	if err = errors.Join(err, out.Close()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return os.Rename(tmp, dst)
}
