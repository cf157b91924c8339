package artifact_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"github.com/modelci/modelci/internal/ocitest"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelci/modelci/stages/artifact"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// inputs are a training Job's inputs: code (with an executable script
// and an empty directory) and data.
func inputs(t testing.TB) (code, data map[string]string, parts []artifact.Part) {
	code = map[string]string{"train.py": "print('train')\n", "run.sh*": "#!/bin/sh\nexec python train.py\n", "lib/util.py": "x = 1\n", "empty/": ""}
	data = map[string]string{"train.csv": "a,b\n1,2\n3,4\n"}
	parts = []artifact.Part{
		{Path: "src", Dir: writeFiles(t, code), MediaType: artifact.MediaTypeCode},
		{Path: "data", Dir: writeFiles(t, data), MediaType: artifact.MediaTypeDataset},
	}
	return code, data, parts
}

// under prefixes every name of files with dir/.
func under(dir string, files map[string]string) map[string]string {
	out := map[string]string{dir + "/": ""}
	for name, content := range files {
		out[dir+"/"+name] = content
		for d := filepath.Dir(strings.TrimSuffix(name, "/")); d != "."; d = filepath.Dir(d) {
			out[dir+"/"+d+"/"] = ""
		}
	}
	return out
}

// A pushed artifact pulls back as the same files, under its parts' paths;
// the same files (other mtimes, other permission bits but the executable
// one) push to the same digest and upload nothing; the repository gets no
// tag.
func TestRoundTrip(t *testing.T) {
	srv := newServer(t)
	ctx := t.Context()
	repo := srv.Host + "/train/inputs"
	code, data, parts := inputs(t)

	pushed, err := artifact.Push(ctx, repo, artifact.ArtifactTypeTrainingInput, parts, fast)
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Ref != repo+"@"+pushed.Digest.String() || len(pushed.Parts) != 2 {
		t.Fatalf("pushed %+v", pushed)
	}
	if tags, err := registry.ListTags(ctx, repo); err != nil || len(tags) != 0 {
		t.Errorf("tags after a push by digest: %v, %v; want none", tags, err)
	}

	// The manifest: the artifact type, the empty config, a layer per part
	// with its media type and path.
	r, _ := oci.ParseRef(pushed.Ref)
	desc, err := remote.Get(r.Name())
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		MediaType    string `json:"mediaType"`
		ArtifactType string `json:"artifactType"`
		Config       struct{ MediaType string }
		Layers       []struct {
			MediaType   string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.ArtifactType != artifact.ArtifactTypeTrainingInput ||
		m.Config.MediaType != artifact.MediaTypeEmptyConfig || len(m.Layers) != 2 ||
		m.Layers[0].MediaType != "application/vnd.cncf.model.code.v1.tar" || m.Layers[0].Annotations["org.cncf.model.filepath"] != "src" ||
		m.Layers[1].MediaType != "application/vnd.cncf.model.dataset.v1.tar" || m.Layers[1].Annotations["org.cncf.model.filepath"] != "data" {
		t.Errorf("manifest %s", desc.Manifest)
	}

	dest := filepath.Join(t.TempDir(), "in")
	pulled, err := artifact.Pull(ctx, pushed.Ref, dest, fast, artifact.WithArtifactType(artifact.ArtifactTypeTrainingInput))
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Digest != pushed.Digest || pulled.ArtifactType != artifact.ArtifactTypeTrainingInput || pulled.Dir != dest ||
		!slices.Equal(pulled.Parts, pushed.Parts) {
		t.Errorf("pulled %+v, pushed %+v", pulled, pushed)
	}
	want := under("src", code)
	maps.Copy(want, under("data", data))
	if got := tree(t, dest); !maps.Equal(got, want) {
		t.Errorf("pulled tree %v, want %v", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dest, "src", "train.py")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("train.py: %v, %v; want mode 0644", fi.Mode(), err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".modelci-pull-*"))
	if len(leftovers) != 0 {
		t.Errorf("left beside the destination: %v", leftovers)
	}

	// The same files elsewhere, touched and with other permissions: the
	// same digest, nothing uploaded.
	before := srv.Uploads()
	_, _, again := inputs(t)
	for _, p := range again {
		filepath.WalkDir(p.Dir, func(f string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				fi, _ := d.Info()
				os.Chmod(f, fi.Mode().Perm()|0o044)
				os.Chtimes(f, fi.ModTime().AddDate(1, 0, 0), fi.ModTime().AddDate(1, 0, 0))
			}
			return err
		})
	}
	re, err := artifact.Push(ctx, repo, artifact.ArtifactTypeTrainingInput, again, fast)
	if err != nil {
		t.Fatal(err)
	}
	if re.Digest != pushed.Digest {
		t.Errorf("re-push of the same files: %s, want %s", re.Digest, pushed.Digest)
	}
	if n := srv.Uploads() - before; n != 0 {
		t.Errorf("re-push made %d upload requests, want none", n)
	}

	// An existing empty directory is a destination too.
	empty := t.TempDir()
	if _, err := artifact.Pull(ctx, pushed.Ref, empty, fast); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, empty); !maps.Equal(got, want) {
		t.Errorf("pulled into an empty directory: %v", got)
	}
}

// A gzip part (+gzip media type) round-trips too, and its digest is
// stable.
func TestGzipPart(t *testing.T) {
	srv := newServer(t)
	ctx := t.Context()
	files := map[string]string{"model/model.json": strings.Repeat(`{"w":1}`, 1000), "train.json": `{"loss":[3,2,1]}`}
	part := []artifact.Part{{Path: artifact.OutPath, Dir: writeFiles(t, files), MediaType: "application/vnd.modelci.training.output.v1.tar+gzip"}}
	p1, err := artifact.Push(ctx, srv.Host+"/out", artifact.ArtifactTypeTrainingOutput, part, fast)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := artifact.Push(ctx, srv.Host+"/out", artifact.ArtifactTypeTrainingOutput, part, fast)
	if err != nil || p2.Digest != p1.Digest {
		t.Fatalf("second push: %+v, %v; want %s", p2, err, p1.Digest)
	}
	if p1.Parts[0].Size > 2000 {
		t.Errorf("gzip part is %d bytes: not compressed", p1.Parts[0].Size)
	}
	dest := filepath.Join(t.TempDir(), "out")
	if _, err := artifact.Pull(ctx, p1.Ref, dest, fast); err != nil {
		t.Fatal(err)
	}
	if got, want := tree(t, dest), under("out", files); !maps.Equal(got, want) {
		t.Errorf("pulled %v, want %v", got, want)
	}
}

// Debian's docker-registry (the CNCF distribution registry) takes the
// artifact and serves it back.
func TestDistribution(t *testing.T) {
	host := ocitest.Distribution(t)
	ctx := t.Context()
	code, data, parts := inputs(t)
	pushed, err := artifact.Push(ctx, host+"/train/inputs", artifact.ArtifactTypeTrainingInput, parts, fast)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "in")
	if _, err := artifact.Pull(ctx, pushed.Ref, dest, fast); err != nil {
		t.Fatal(err)
	}
	want := under("src", code)
	maps.Copy(want, under("data", data))
	if got := tree(t, dest); !maps.Equal(got, want) {
		t.Errorf("pulled %v, want %v", got, want)
	}
}

// modelci's embedded registry, which validates manifests as distribution
// does, takes the artifact and serves it back.
func TestEmbeddedRegistry(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	addrs, errc := make(chan net.Addr, 1), make(chan error, 1)
	go func() {
		errc <- registry.Serve(ctx, "127.0.0.1:0", t.TempDir(), registry.OnListen(func(a net.Addr) { addrs <- a }))
	}()
	var host string
	select {
	case a := <-addrs:
		host = a.String()
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-errc })
	code, data, parts := inputs(t)
	pushed, err := artifact.Push(ctx, host+"/train/inputs", artifact.ArtifactTypeTrainingInput, parts, fast)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "in")
	if _, err := artifact.Pull(ctx, pushed.Ref, dest, fast); err != nil {
		t.Fatal(err)
	}
	want := under("src", code)
	maps.Copy(want, under("data", data))
	if got := tree(t, dest); !maps.Equal(got, want) {
		t.Errorf("pulled %v, want %v", got, want)
	}
}

// A registry that serves other bytes than were pushed, in a file's data
// or in a tar header, is refused with ErrDigestMismatch, and the pull
// leaves nothing behind.
func TestPullRefusesTamperedBlob(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   func(n int) int
	}{
		{"file data", func(n int) int { return 512*2 + 2 }}, // after the headers of data/ and data/x.csv
		{"tar header", func(int) int { return 100 }},
		{"padding", func(n int) int { return n - 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			ctx := t.Context()
			part := []artifact.Part{{Path: "data", Dir: writeFiles(t, map[string]string{"x.csv": strings.Repeat("1,2\n", 500)})}}
			pushed, err := artifact.Push(ctx, srv.Host+"/in", artifact.ArtifactTypeTrainingInput, part, fast)
			if err != nil {
				t.Fatal(err)
			}
			layer := pushed.Parts[0].Digest.String()
			srv.Tamper(func(digest string, body []byte) []byte {
				if digest != layer {
					return body
				}
				b := bytes.Clone(body)
				b[tc.at(len(b))] ^= 0x01
				return b
			})
			parent := t.TempDir()
			_, err = artifact.Pull(ctx, pushed.Ref, filepath.Join(parent, "in"), fast)
			if !errors.Is(err, artifact.ErrDigestMismatch) || !strings.Contains(err.Error(), layer) {
				t.Fatalf("pull of a tampered blob: %v; want ErrDigestMismatch naming %s", err, layer)
			}
			if names, _ := os.ReadDir(parent); len(names) != 0 {
				t.Errorf("a refused pull left %v", names)
			}
		})
	}
}

// Tar entries that would write outside their part, links, devices and
// duplicates are refused with ErrUnsafeEntry naming the entry, and nothing
// is left behind.
func TestPullRefusesUnsafeEntries(t *testing.T) {
	srv := newServer(t)
	ctx := t.Context()
	link := func(name, target string, typ byte) entry {
		return entry{tar.Header{Name: name, Linkname: target, Typeflag: typ, Mode: 0o777}, ""}
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		names   string // what the error must name
	}{
		{"dotdot", []entry{dir("p/"), file("p/../x", "evil")}, "p/../x"},
		{"leading dotdot", []entry{file("../x", "evil")}, "../x"},
		{"absolute", []entry{file("/etc/x", "evil")}, "/etc/x"},
		{"outside the part", []entry{file("q/x", "evil")}, "q/x"},
		{"unclean", []entry{file("p/./x", "evil")}, "p/./x"},
		{"symlink", []entry{dir("p/"), link("p/l", "/etc", tar.TypeSymlink)}, "symlink"},
		{"hard link", []entry{dir("p/"), file("p/a", "a"), link("p/l", "p/a", tar.TypeLink)}, "hard link"},
		{"device", []entry{dir("p/"), {tar.Header{Name: "p/dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}, ""}}, "character device"},
		{"fifo", []entry{dir("p/"), {tar.Header{Name: "p/f", Typeflag: tar.TypeFifo, Mode: 0o666}, ""}}, "fifo"},
		{"duplicate", []entry{file("p/a", "one"), file("p/a", "two")}, "twice"},
		{"file for the part", []entry{file("p", "x")}, "part's directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushRaw(t, srv.Host+"/evil", artifact.ArtifactTypeTrainingInput,
				rawLayer{path: "p", mediaType: artifact.MediaTypeTar, data: tarOf(t, tc.entries...)})
			parent := t.TempDir()
			_, err := artifact.Pull(ctx, ref, filepath.Join(parent, "in"), fast)
			if !errors.Is(err, artifact.ErrUnsafeEntry) || !strings.Contains(err.Error(), tc.names) {
				t.Fatalf("pull: %v; want ErrUnsafeEntry naming %q", err, tc.names)
			}
			if names, _ := os.ReadDir(parent); len(names) != 0 {
				t.Errorf("a refused pull left %v", names)
			}
		})
	}
}

// Manifests that are not artifacts of the kind asked for are refused with
// ErrNotArtifact before any blob is read.
func TestPullRefusesNonArtifacts(t *testing.T) {
	srv := newServer(t)
	ctx := t.Context()
	ok := tarOf(t, file("p/a", "a"))
	for _, tc := range []struct {
		name   string
		typ    string
		layers []rawLayer
		opts   []artifact.Option
	}{
		{"no artifact type", "", []rawLayer{{"p", artifact.MediaTypeTar, ok}}, nil},
		{"another artifact type", artifact.ArtifactTypeTrainingInput, []rawLayer{{"p", artifact.MediaTypeTar, ok}},
			[]artifact.Option{artifact.WithArtifactType(artifact.ArtifactTypeTrainingOutput)}},
		{"no path", artifact.ArtifactTypeTrainingInput, []rawLayer{{"", artifact.MediaTypeTar, ok}}, nil},
		{"path with dotdot", artifact.ArtifactTypeTrainingInput, []rawLayer{{"../p", artifact.MediaTypeTar, ok}}, nil},
		{"overlapping paths", artifact.ArtifactTypeTrainingInput, []rawLayer{{"p", artifact.MediaTypeTar, ok}, {"p/q", artifact.MediaTypeTar, tarOf(t, file("p/q/a", "a"))}}, nil},
		{"not a tar", artifact.ArtifactTypeTrainingInput, []rawLayer{{"p", "application/octet-stream", ok}}, nil},
		{"no layers", artifact.ArtifactTypeTrainingInput, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushRaw(t, srv.Host+"/odd", tc.typ, tc.layers...)
			_, err := artifact.Pull(ctx, ref, filepath.Join(t.TempDir(), "in"), append(tc.opts, fast)...)
			if !errors.Is(err, artifact.ErrNotArtifact) {
				t.Fatalf("pull: %v; want ErrNotArtifact", err)
			}
		})
	}
}

// An artifact over the size limit is refused naming it and the limit:
// by its blobs' sizes before any is read, and by its files' sizes as a
// gzip layer unpacks (a small blob of many zeros).
func TestPullSizeLimit(t *testing.T) {
	srv := newServer(t)
	ctx := t.Context()
	big := tarOf(t, file("p/a", strings.Repeat("x", 5000)))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarOf(t, file("p/zeros", strings.Repeat("\x00", 1<<20))))
	zw.Close()
	for _, tc := range []struct {
		name  string
		layer rawLayer
	}{
		{"blobs", rawLayer{"p", artifact.MediaTypeTar, big}},
		{"files", rawLayer{"p", "application/vnd.oci.image.layer.v1.tar+gzip", gz.Bytes()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushRaw(t, srv.Host+"/big", artifact.ArtifactTypeTrainingInput, tc.layer)
			parent := t.TempDir()
			_, err := artifact.Pull(ctx, ref, filepath.Join(parent, "in"), fast, artifact.WithMaxSize(4096))
			if !errors.Is(err, artifact.ErrTooLarge) || !strings.Contains(err.Error(), ref) || !strings.Contains(err.Error(), "4096") {
				t.Fatalf("pull: %v; want ErrTooLarge naming %s and 4096", err, ref)
			}
			if names, _ := os.ReadDir(parent); len(names) != 0 {
				t.Errorf("a refused pull left %v", names)
			}
		})
	}
}

// Pull refuses a reference by tag, and a destination that holds something,
// before it reaches the registry.
func TestPullRefusals(t *testing.T) {
	ctx := t.Context()
	full := writeFiles(t, map[string]string{"keep": "me"})
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, ref, dir string
		want           error
	}{
		{"tag", "127.0.0.1:1/x:latest", filepath.Join(t.TempDir(), "in"), oci.ErrNotDigest},
		{"no host", "x@" + digest, filepath.Join(t.TempDir(), "in"), oci.ErrBadRef},
		{"layout", "oci-layout://" + t.TempDir() + "@" + digest, filepath.Join(t.TempDir(), "in"), oci.ErrLayoutRef},
		{"full destination", "127.0.0.1:1/x@" + digest, full, artifact.ErrDestNotEmpty},
		{"file destination", "127.0.0.1:1/x@" + digest, filepath.Join(full, "keep"), artifact.ErrDestNotEmpty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := artifact.Pull(ctx, tc.ref, tc.dir, fast); !errors.Is(err, tc.want) {
				t.Fatalf("pull %s into %s: %v; want %v", tc.ref, tc.dir, err, tc.want)
			}
		})
	}
	if got := tree(t, full); len(got) != 1 || got["keep"] != "me" {
		t.Errorf("a refused pull changed the destination: %v", got)
	}
}

// Push refuses what Pull would: links in a part, paths that are not clean
// or overlap; and a repository with a tag (artifacts go by digest).
func TestPushRefusals(t *testing.T) {
	ctx := t.Context()
	withLink := writeFiles(t, map[string]string{"a": "a"})
	if err := os.Symlink("/etc/passwd", filepath.Join(withLink, "l")); err != nil {
		t.Fatal(err)
	}
	d := writeFiles(t, map[string]string{"a": "a"})
	for _, tc := range []struct {
		name  string
		repo  string
		parts []artifact.Part
		want  error
	}{
		{"symlink", "127.0.0.1:1/x", []artifact.Part{{Path: "p", Dir: withLink}}, artifact.ErrUnsupportedFile},
		{"dotdot", "127.0.0.1:1/x", []artifact.Part{{Path: "../p", Dir: d}}, artifact.ErrBadPart},
		{"absolute", "127.0.0.1:1/x", []artifact.Part{{Path: "/p", Dir: d}}, artifact.ErrBadPart},
		{"dot", "127.0.0.1:1/x", []artifact.Part{{Path: ".", Dir: d}}, artifact.ErrBadPart},
		{"overlap", "127.0.0.1:1/x", []artifact.Part{{Path: "p", Dir: d}, {Path: "p/q", Dir: d}}, artifact.ErrBadPart},
		{"same path", "127.0.0.1:1/x", []artifact.Part{{Path: "p", Dir: d}, {Path: "p", Dir: d}}, artifact.ErrBadPart},
		{"no parts", "127.0.0.1:1/x", nil, artifact.ErrBadPart},
		{"not a directory", "127.0.0.1:1/x", []artifact.Part{{Path: "p", Dir: filepath.Join(d, "a")}}, artifact.ErrBadPart},
		{"not a tar", "127.0.0.1:1/x", []artifact.Part{{Path: "p", Dir: d, MediaType: "application/json"}}, artifact.ErrBadPart},
		{"tag", "127.0.0.1:1/x:1.0", []artifact.Part{{Path: "p", Dir: d}}, oci.ErrBadRef},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := artifact.Push(ctx, tc.repo, artifact.ArtifactTypeTrainingInput, tc.parts, fast); !errors.Is(err, tc.want) {
				t.Fatalf("push: %v; want %v", err, tc.want)
			}
		})
	}
}
