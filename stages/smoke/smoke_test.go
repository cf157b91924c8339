package smoke_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/modelci/modelci/model"
	"github.com/modelci/modelci/stages/data"
	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/smoke"
)

var linear = &model.Linear{
	Schema: model.Schema, Name: "diabetes", Version: "1.0.0",
	Features: []string{"age", "bmi", "bp"}, Target: "target",
	Mean: []float64{48.5, 26.4, 94.6}, Scale: []float64{13.1, 4.4, 13.8},
	Weights: []float64{-0.48, 24.7, 15.4}, Bias: 152.1,
}

// rows are test rows of the model's three features.
func rows() ([]any, [][]float64) {
	var inst []any
	var xs [][]float64
	for i := range 300 { // more than one request's batch
		x := []float64{30 + float64(i%40), 20 + float64(i%13)*0.7, 80 + float64(i%29)}
		inst, xs = append(inst, x), append(xs, x)
	}
	return inst, xs
}

// serverImage is the image modelci builds for m: its own runtime (built
// from this checkout, cached) and the model document.
func serverImage(t *testing.T, m *model.Linear) v1.Image {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("runs the linux/amd64 runtime")
	}
	rt, err := image.Runtime(t.Context(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir("."))
	if err != nil {
		t.Fatal(err)
	}
	return buildImage(t, m, rt)
}

func buildImage(t *testing.T, m *model.Linear, runtimeBin string) v1.Image {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, model.FileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(t.TempDir(), "oci")
	out, err := image.Run(t.Context(), image.Input{
		ModelDir: dir, Name: m.Name, Version: m.Version, DatasetDigest: "sha256:" + strings.Repeat("ab", 32),
		Platforms: []string{"linux/amd64"}, Layout: lay,
		Runtime: func(context.Context, v1.Platform) (string, error) { return runtimeBin, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Image(out.Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func predictions(m *model.Linear, xs [][]float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = m.Predict(x)
	}
	return out
}

func TestServeWhatWasGated(t *testing.T) {
	img := serverImage(t, linear)
	inst, xs := rows()
	var log bytes.Buffer
	res, err := smoke.Serve(t.Context(), smoke.Input{Image: img, Instances: inst, Want: predictions(linear, xs), Tolerance: 1e-5, Log: &log})
	if err != nil {
		t.Fatalf("smoke test of the image built from the gated model: %v\n%s", err, log.String())
	}
	if res.Rows != len(xs) || !res.Compared || res.MaxRelDiff != 0 || len(res.Differ) != 0 {
		t.Fatalf("result %+v, want every row served exactly as the in-process model predicts", res)
	}
	if want := strings.Join(image.DefaultEntrypoint, " "); strings.Join(res.Entrypoint, " ") != want {
		t.Errorf("entrypoint %v, want the image's own %s", res.Entrypoint, want)
	}
	if !strings.Contains(log.String(), `"msg":"listening"`) {
		t.Errorf("the server's log was not passed on (%d bytes):\n%q", log.Len(), log.String())
	}

	// Without the evaluator's predictions: every row gets a finite answer.
	if res, err := smoke.Serve(t.Context(), smoke.Input{Image: img, Instances: inst}); err != nil || res.Compared {
		t.Fatalf("without predictions: %+v, %v", res, err)
	}
}

// TestServeCatchesAnotherModel: the image serves a model other than the one
// evaluated (a weight changed), and the smoke test names the rows.
func TestServeCatchesAnotherModel(t *testing.T) {
	other := *linear
	other.Weights = []float64{-0.48, 24.7, 15.5}
	img := serverImage(t, &other)
	inst, xs := rows()
	res, err := smoke.Serve(t.Context(), smoke.Input{Image: img, Instances: inst, Want: predictions(linear, xs), Tolerance: 1e-5})
	if !errors.Is(err, smoke.ErrMismatch) {
		t.Fatalf("smoke test of another model: %v, want ErrMismatch", err)
	}
	if len(res.Differ) == 0 || res.MaxRelDiff <= 1e-5 || !strings.Contains(err.Error(), "row 0: served") {
		t.Fatalf("result %+v, error %v: want the differing rows named", res, err)
	}
}

// TestServeServerThatDoesNotStart: a runtime that exits at start (as a
// server missing its model file does) is ErrNotReady with its stderr.
func TestServeServerThatDoesNotStart(t *testing.T) {
	img := serverImage(t, linear)
	// The same image with its model removed.
	broken, err := mutate.AppendLayers(img, layer(t, entry{name: "model/.wh.model.json"}))
	if err != nil {
		t.Fatal(err)
	}
	inst, xs := rows()
	_, err = smoke.Serve(t.Context(), smoke.Input{Image: broken, Instances: inst, Want: predictions(linear, xs), Tolerance: 1e-5, Timeout: time.Minute})
	if !errors.Is(err, smoke.ErrNotReady) || !strings.Contains(err.Error(), "model.json") {
		t.Fatalf("smoke test of an image without its model: %v, want ErrNotReady naming model.json", err)
	}
}

type entry struct {
	name, link string
	mode       int64
	dir        bool
}

// layer is a tar layer of entries (files hold "#!/bin/sh\n").
func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: tar.TypeReg}
		body := []byte("#!/bin/sh\n")
		switch {
		case e.dir:
			h.Typeflag, body = tar.TypeDir, nil
		case e.link != "":
			h.Typeflag, h.Linkname, body = tar.TypeSymlink, e.link, nil
		case strings.Contains(e.name, ".wh."):
			body = nil
		}
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCheckEntrypoint(t *testing.T) {
	base, err := mutate.AppendLayers(empty.Image,
		layer(t, entry{name: "srv", dir: true, mode: 0o755}, entry{name: "srv/server", mode: 0o755}, entry{name: "srv/notes", mode: 0o644},
			entry{name: "usr/bin/serve", link: "/srv/server"}, entry{name: "srv/relative", link: "server"}, entry{name: "srv/loop", link: "loop"},
			entry{name: "srv/gone", mode: 0o755}),
		layer(t, entry{name: "srv/.wh.gone"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		entrypoint []string
		cmd        []string
		env        []string
		ok         bool
	}{
		{"absolute", []string{"/srv/server"}, nil, nil, true},
		{"symlink", []string{"/usr/bin/serve", "--port", "8080"}, nil, nil, true},
		{"relative symlink", []string{"/srv/relative"}, nil, nil, true},
		{"on PATH", []string{"serve"}, nil, nil, true},
		{"on the image's PATH", []string{"server"}, nil, []string{"PATH=/srv"}, true},
		{"command only", nil, []string{"/srv/server"}, nil, true},
		{"missing", []string{"/srv/absent"}, nil, nil, false},
		{"deleted by a later layer", []string{"/srv/gone"}, nil, nil, false},
		{"not executable", []string{"/srv/notes"}, nil, nil, false},
		{"a directory", []string{"/srv"}, nil, nil, false},
		{"symlink loop", []string{"/srv/loop"}, nil, nil, false},
		{"not on PATH", []string{"server"}, nil, nil, false},
		{"none", nil, nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := mutate.Config(base, v1.Config{Entrypoint: tc.entrypoint, Cmd: tc.cmd, Env: tc.env})
			if err != nil {
				t.Fatal(err)
			}
			_, err = smoke.CheckEntrypoint(t.Context(), img)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, smoke.ErrEntrypoint)) {
				t.Fatalf("CheckEntrypoint(%v %v) = %v, want ok=%v (else ErrEntrypoint)", tc.entrypoint, tc.cmd, err, tc.ok)
			}
		})
	}
}

// TestCommand: smoke.command gets the image's reference and the test split,
// runs in a staging copy without the data set, and fails the check by its
// exit status.
func TestCommand(t *testing.T) {
	project := t.TempDir()
	script := `test "$MODELCI_IMAGE" = "oci-layout:///x@sha256:0" || exit 3
head -1 "$MODELCI_DATA/test.csv" | grep -q '^a,target$' || exit 4
test ! -e data.csv || exit 5
test -z "$SECRET_TOKEN" || exit 6
exit "${1:-0}"
`
	os.WriteFile(filepath.Join(project, "smoke.sh"), []byte(script), 0o755)
	os.WriteFile(filepath.Join(project, "data.csv"), []byte("a,target\n1,2\n"), 0o644)
	t.Setenv("SECRET_TOKEN", "must not pass")
	test := &data.Dataset{Features: []string{"a"}, Target: "target", X: []float64{1, 2}, Y: []float64{3, 4}}
	in := smoke.CommandInput{
		Argv: []string{"/bin/sh", "smoke.sh"}, Project: project, ExcludeContent: []string{filepath.Join(project, "data.csv")},
		Image: "oci-layout:///x@sha256:0", Test: test, Timeout: time.Minute,
	}
	if err := smoke.Command(t.Context(), in); err != nil {
		t.Fatalf("a passing smoke command: %v", err)
	}
	in.Argv = append(in.Argv, "7")
	if err := smoke.Command(t.Context(), in); !errors.Is(err, smoke.ErrCommand) || !strings.Contains(err.Error(), "exit status 7") {
		t.Fatalf("a failing smoke command: %v, want ErrCommand with its exit status", err)
	}
	in.Argv, in.Timeout = []string{"/bin/sh", "-c", "sleep 30"}, 100*time.Millisecond
	if err := smoke.Command(t.Context(), in); !errors.Is(err, smoke.ErrCommand) {
		t.Fatalf("a smoke command past its timeout: %v, want ErrCommand", err)
	}
}
