package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/stages/image"
)

// TestSameAsModelciRun runs the stages as the Dagger module runs them, one
// `stage` command after another through files (without the containers),
// and checks every output against `modelci run` on the same example: the
// module's same-digest promise rests on this.
func TestSameAsModelciRun(t *testing.T) {
	ctx := context.Background()
	specPath, err := filepath.Abs("../../examples/linreg/modelci.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := pipeline.LoadSpec(specPath)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Run(ctx, spec, pipeline.WithOutput(t.TempDir()), pipeline.WithCreated(time.Unix(0, 0).UTC()))
	if err != nil {
		t.Fatal(err)
	}
	params, err := spec.ParamsMap()
	if err != nil {
		t.Fatal(err)
	}
	pj, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}

	work := t.TempDir()
	split, out := filepath.Join(work, "split"), filepath.Join(work, "out")
	evalOut, imgOut := filepath.Join(work, "eval"), filepath.Join(work, "image")
	for _, dir := range []string{out, evalOut} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(cmd func(context.Context, []string) error, env map[string]string, args ...string) string {
		t.Helper()
		for k, v := range env {
			t.Setenv(k, v)
		}
		stdout := os.Stdout
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout = w
		errc := make(chan error, 1)
		go func() { errc <- cmd(ctx, args) }()
		err = <-errc
		w.Close()
		os.Stdout = stdout
		b, _ := io.ReadAll(r)
		if err != nil {
			t.Fatalf("stage %v: %v", args, err)
		}
		return string(bytes.TrimSpace(b))
	}

	run(splitCmd, nil, "--data", spec.Path(spec.Data.Path), "--target", spec.Data.Target,
		"--fraction", "0.2", "--seed", "42", "--out", split)
	run(trainCmd, map[string]string{
		"MODELCI_DATA": filepath.Join(split, "train"), "MODELCI_OUT": out,
		"MODELCI_PARAMS": string(pj), "MODELCI_SEED": "42",
	}, "--name", spec.Model.Name, "--version", spec.Model.Version, "--target", spec.Data.Target)
	if got := run(digestCmd, nil, filepath.Join(out, "model")); got != res.Record.Outputs.Model.Digest {
		t.Errorf("model digest %s, modelci run's %s", got, res.Record.Outputs.Model.Digest)
	}
	run(evaluateCmd, map[string]string{
		"MODELCI_MODEL": filepath.Join(out, "model"), "MODELCI_DATA": filepath.Join(split, "test"), "MODELCI_OUT": evalOut,
	}, "--target", spec.Data.Target)

	var sp Split
	readJSON(t, filepath.Join(split, "split.json"), &sp)
	if sp.DatasetDigest != res.Record.Inputs.Dataset.Digest || sp.TestDigest != res.Record.Inputs.Split.TestDigest {
		t.Errorf("split.json %+v, modelci run's inputs %+v %+v", sp, res.Record.Inputs.Dataset, res.Record.Inputs.Split)
	}
	var preds struct {
		PerExample []float64 `json:"per_example_loss"`
	}
	readJSON(t, filepath.Join(evalOut, "predictions.json"), &preds)
	if len(preds.PerExample) != res.Record.Inputs.Split.TestRows {
		t.Errorf("%d losses for %d test rows", len(preds.PerExample), res.Record.Inputs.Split.TestRows)
	}

	rt, err := image.Runtime(ctx, v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(spec.Dir))
	if err != nil {
		t.Fatal(err)
	}
	run(imageCmd, nil, "--model", filepath.Join(out, "model"), "--runtime", rt,
		"--name", spec.Model.Name, "--version", spec.Model.Version, "--dataset-digest", sp.DatasetDigest,
		"--created", "0", "--out", imgOut)
	var img Image
	readJSON(t, filepath.Join(imgOut, "image.json"), &img)
	if img.Digest != res.Record.Outputs.Image.Digest {
		t.Errorf("image digest %s, modelci run's %s", img.Digest, res.Record.Outputs.Image.Digest)
	}
	if _, err := os.Stat(filepath.Join(imgOut, "image.tar")); err != nil {
		t.Errorf("no image tarball for Container.Import: %v", err)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
