package image_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// binDir holds the stand-in runtime binaries built from testdata/hello.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "image-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	helloMu   sync.Mutex
	helloBins = map[string]string{}
)

// hello returns a static linux binary for goarch built from testdata/hello,
// building it on first use.
func hello(t testing.TB, goarch string) string {
	t.Helper()
	helloMu.Lock()
	defer helloMu.Unlock()
	if p, ok := helloBins[goarch]; ok {
		return p
	}
	out := filepath.Join(binDir, "hello-"+goarch)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/hello")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/hello for %s: %v\n%s", goarch, err, b)
	}
	helloBins[goarch] = out
	return out
}

// helloRuntime serves hello binaries as the runtime for every platform.
func helloRuntime(t testing.TB) func(context.Context, v1.Platform) (string, error) {
	return func(_ context.Context, p v1.Platform) (string, error) {
		return hello(t, p.Architecture), nil
	}
}

// modelJSON is about the size of the example's model document.
const modelJSON = `{"schema":"modelci.dev/model/linear/v1","name":"diabetes","version":"1.0.0",
"features":["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"],"target":"target",
"mean":[48.5,1.46,26.37,94.64,189.14,115.43,49.78,4.07,4.64,91.26],
"scale":[13.1,0.49,4.41,13.83,34.6,30.41,12.92,1.29,0.52,11.48],
"weights":[-0.48,-11.41,24.73,15.42,-37.68,22.67,4.81,8.42,35.73,3.22],
"bias":152.13}
`

// writeFiles creates files (slash-separated relative names) under a new
// temporary directory and returns it.
func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
