package image_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/modelci/modelci/stages/image"
)

// umoci (Debian's) unpacks our layout into a runtime bundle: the runtime
// binary at RuntimePath runs, and the model files, gzip layer and
// uncompressed weight layer alike, are under /model.
func TestUmociUnpack(t *testing.T) {
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skip("umoci not on PATH (CI installs it: apt-get install -y umoci)")
	}
	weights := strings.Repeat("0123456789abcdef", 256)
	in := exampleInput(t, writeFiles(t, map[string]string{"model.json": modelJSON, "weights/w.bin": weights}))
	in.SizeCutoff = 1024
	in.Platforms = []string{"linux/" + runtime.GOARCH}
	in.Layout = filepath.Join(t.TempDir(), "oci")
	in.Tag = "1.0.0"
	if _, err := image.Run(context.Background(), in); err != nil {
		t.Fatal(err)
	}

	bundle := filepath.Join(t.TempDir(), "bundle")
	args := []string{"unpack", "--image", in.Layout + ":" + in.Tag, bundle}
	if os.Geteuid() != 0 {
		args = []string{"unpack", "--rootless", "--image", in.Layout + ":" + in.Tag, bundle}
	}
	if out, err := exec.Command("umoci", args...).CombinedOutput(); err != nil {
		t.Fatalf("umoci %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	out, err := exec.Command(filepath.Join(rootfs, image.RuntimePath), "serve").CombinedOutput()
	if err != nil {
		t.Fatalf("run the unpacked runtime: %v\n%s", err, out)
	}
	if got, want := string(out), "hello from the test runtime [serve]\n"; got != want {
		t.Errorf("unpacked runtime printed %q, want %q", got, want)
	}
	for name, want := range map[string]string{"model.json": modelJSON, "weights/w.bin": weights} {
		got, err := os.ReadFile(filepath.Join(rootfs, image.ModelPath, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("unpacked %s differs from the model file", name)
		}
	}
	// umoci writes the image config as the runtime spec: our entrypoint
	// and non-root user must survive.
	spec, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(spec), `"`+image.RuntimePath+`"`) || !strings.Contains(string(spec), `"uid": 65532`) {
		t.Errorf("bundle config.json lacks the entrypoint or user 65532:\n%s", spec)
	}
}
