package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/modelci/modelci/internal/ocitest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/oci"
	"github.com/modelci/modelci/stages/registry"
)

// needTool skips when a third-party tool is missing; CI installs them from
// Debian (skopeo, docker-registry), so there they always run.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not on PATH (CI installs it: apt-get install -y skopeo docker-registry)", name)
	}
}

func runTool(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// skopeoInspect checks that skopeo reads ref's manifest byte for byte
// (its raw manifest hashes to want) and, for an image, reports want as
// its Digest.
func skopeoInspect(t *testing.T, ref string, want v1.Hash, isImage bool) {
	t.Helper()
	raw := runTool(t, "skopeo", "--insecure-policy", "inspect", "--tls-verify=false", "--raw", ref)
	if h, _, _ := v1.SHA256(strings.NewReader(string(raw))); h != want {
		t.Fatalf("skopeo inspect --raw %s: manifest hashes to %s, want %s", ref, h, want)
	}
	if !isImage {
		return
	}
	var info struct{ Digest string }
	if err := json.Unmarshal(runTool(t, "skopeo", "--insecure-policy", "inspect", "--tls-verify=false", ref), &info); err != nil {
		t.Fatal(err)
	}
	if info.Digest != want.String() {
		t.Fatalf("skopeo inspect %s: Digest %s, want %s", ref, info.Digest, want)
	}
}

// skopeo reads what we push to the embedded registry and the layouts we
// write; what skopeo copies from our registry into a layout and back keeps
// its digest, and we read skopeo's layout.
func TestSkopeo(t *testing.T) {
	needTool(t, "skopeo")
	ctx := context.Background()
	host, _ := serve(t, t.TempDir())
	for _, tc := range []struct {
		name    string
		art     registry.Artifact
		isImage bool
	}{{"image", randomImage(t, 300), true}, {"index", ociIndex(t, 310), false}} {
		t.Run(tc.name, func(t *testing.T) {
			repo := host + "/skopeo/" + tc.name
			p, err := registry.Push(ctx, tc.art, repo, registry.WithTags("1.0.0"), fast)
			if err != nil {
				t.Fatal(err)
			}
			skopeoInspect(t, "docker://"+p.Ref, p.Digest, tc.isImage)
			skopeoInspect(t, "docker://"+repo+":1.0.0", p.Digest, tc.isImage)

			ours := t.TempDir()
			if _, err := image.WriteLayout(ctx, ours, tc.art, "1.0.0"); err != nil {
				t.Fatal(err)
			}
			skopeoInspect(t, "oci:"+ours+":1.0.0", p.Digest, tc.isImage)

			// --preserve-digests holds for indexes too: ours carry no
			// artifactType on their entries, which skopeo 1.9 (Debian 12)
			// would otherwise refuse to copy unchanged.
			theirs := filepath.Join(t.TempDir(), "oci")
			runTool(t, "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
				"--src-tls-verify=false", "docker://"+p.Ref, "oci:"+theirs+":1.0.0")
			runTool(t, "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
				"--dest-tls-verify=false", "oci:"+theirs+":1.0.0", "docker://"+host+"/back/"+tc.name+":1.0.0")
			back, err := registry.Resolve(ctx, host+"/back/"+tc.name+":1.0.0", fast)
			if err != nil {
				t.Fatal(err)
			}
			if back != p.Digest {
				t.Fatalf("after skopeo's round trip: %s, want %s", back, p.Digest)
			}
			// We read what skopeo wrote, in the layout and in our registry.
			inLayout, err := oci.LayoutRef(theirs, back)
			if err != nil {
				t.Fatal(err)
			}
			for _, ref := range []string{inLayout.String(), host + "/back/" + tc.name + ":1.0.0"} {
				a, err := registry.Pull(ctx, ref, fast)
				if err != nil {
					t.Fatal(err)
				}
				checkBlobs(t, a)
			}
		})
	}
}

// An independent registry accepts our pushes (image and index, by digest
// then tag), enforces nothing we rely on, and gives back the same digests.
func TestDistributionRegistry(t *testing.T) {
	host := ocitest.Distribution(t)
	ctx := context.Background()
	mirror, _ := serve(t, t.TempDir())
	for _, tc := range []struct {
		name string
		art  registry.Artifact
	}{{"image", randomImage(t, 400)}, {"index", ociIndex(t, 410)}} {
		t.Run(tc.name, func(t *testing.T) {
			repo := host + "/modelci/" + tc.name
			p, err := registry.Push(ctx, tc.art, repo, registry.WithTags("1.0.0"), fast)
			if err != nil {
				t.Fatal(err)
			}
			if want := digestOf(t, tc.art); p.Digest != want {
				t.Fatalf("pushed %s, want %s", p.Digest, want)
			}
			for _, ref := range []string{p.Ref, repo + ":1.0.0"} {
				a, err := registry.Pull(ctx, ref, fast)
				if err != nil {
					t.Fatal(err)
				}
				if got := digestOf(t, a); got != p.Digest {
					t.Fatalf("pull %s: %s, want %s", ref, got, p.Digest)
				}
				checkBlobs(t, a)
			}
			// Tag immutability holds against it too.
			other := randomImage(t, 499)
			if _, err := registry.Push(ctx, other, repo, registry.WithTags("1.0.0"), fast); !errors.Is(err, registry.ErrTagExists) {
				t.Fatalf("re-push of 1.0.0 with another digest: %v, want ErrTagExists", err)
			}
			// And copies out of it keep the digest.
			c, err := registry.Copy(ctx, repo+":1.0.0", mirror+"/from-distribution/"+tc.name, fast)
			if err != nil {
				t.Fatal(err)
			}
			if c.Digest != p.Digest {
				t.Fatalf("copy out of docker-registry: %s, want %s", c.Digest, p.Digest)
			}
		})
	}
}
