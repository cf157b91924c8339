package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/pipeline"
	"github.com/modelci/modelci/spec"
	"github.com/modelci/modelci/stages/registry"
	"github.com/modelci/modelci/stages/smoke"
	"github.com/modelci/modelci/stages/train"
)

// brokenRuntime is a "server" that exits at once: the smoke test of an
// image built with it fails (ErrNotReady).
func brokenRuntime(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "broken-runtime")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'not a server' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readIndexJSON(t *testing.T, out string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pipeline.LayoutDir(out), "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func blobExists(out, digest string) bool {
	h, err := v1.NewHash(digest)
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(pipeline.LayoutDir(out), "blobs", h.Algorithm, h.Hex))
	return err == nil
}

// TestFailedRunsLeaveLayoutAndRecords: after a run that fails in the smoke
// test, or in the push (an unreachable registry, a tag the registry holds
// on another digest, a version below the registry's greatest), the
// layout's index.json is byte for byte what it was, earlier runs are
// untouched, and the failed run is recorded (status, stage, error, the
// image it built, never tagged). A failed run is no baseline, no rebuild
// subject and no gc anchor: gc removes it and the blobs only it reached.
func TestFailedRunsLeaveLayoutAndRecords(t *testing.T) {
	reg := newCountingRegistry(t)
	dir := project(t, nil)
	out := filepath.Join(dir, ".modelci")
	bin := serverRuntime(t)
	first, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", bin), pipeline.WithRepository(reg.repo()))
	if err != nil {
		t.Fatal(err)
	}
	index := readIndexJSON(t, out)
	earlier := snapshot(t, first.RunDir)

	unreachable := newCountingRegistry(t)
	unreachable.Close() // nothing listens there any more
	cases := []struct {
		name   string
		edit   [2]string // a change of the spec that changes the image
		opts   []pipeline.Option
		stage  string
		want   error  // a sentinel the returned error wraps; nil: see text
		text   string // what the recorded error says
		pushed bool
		// noRun: refused before the run started (the registry preflight):
		// no record, nothing built.
		noRun bool
	}{
		{"smoke failure", [2]string{"epochs: 300", "epochs: 290"},
			[]pipeline.Option{pipeline.WithRuntime("linux/amd64", brokenRuntime(t)), pipeline.WithRepository(reg.repo())},
			"smoke", smoke.ErrNotReady, "did not become ready", false, false},
		{"unreachable registry", [2]string{"epochs: 300", "epochs: 280"},
			[]pipeline.Option{pipeline.WithRuntime("linux/amd64", bin), pipeline.WithRepository(strings.TrimPrefix(unreachable.URL, "http://") + "/models/diabetes")},
			"", registry.ErrUnreachable, "connection refused", false, true},
		{"tag conflict", [2]string{"epochs: 300", "epochs: 270"},
			[]pipeline.Option{pipeline.WithRuntime("linux/amd64", bin), pipeline.WithRepository(reg.repo())},
			"push", registry.ErrTagExists, registry.ErrTagExists.Error(), false, false},
		{"downgrade", [2]string{"version: 1.0.0", "version: 0.9.0"},
			[]pipeline.Option{pipeline.WithRuntime("linux/amd64", bin), pipeline.WithRepository(reg.repo())},
			"push", pipeline.ErrNotGreater, pipeline.ErrNotGreater.Error(), false, false},
	}
	var failed []*pipeline.Record
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec, _ := os.ReadFile(filepath.Join(dir, "modelci.yaml"))
			t.Cleanup(func() { os.WriteFile(filepath.Join(dir, "modelci.yaml"), spec, 0o644) })
			setSpec(t, dir, c.edit)
			res, err := runProject(t, dir, c.opts...)
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if got := readIndexJSON(t, out); !bytes.Equal(got, index) {
				t.Fatalf("index.json changed by a failed run:\n%s\n→\n%s", index, got)
			}
			if c.noRun {
				if res != nil || !strings.Contains(err.Error(), c.text) {
					t.Fatalf("a run refused before it started: %+v, %v", res, err)
				}
				return
			}
			if res == nil {
				t.Fatal("no result naming the failed run's record")
			}
			rec, err := pipeline.ReadRecord(out, res.RunID)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Status != pipeline.StatusFailed || rec.FailedStage != c.stage || !strings.Contains(rec.Error, c.text) {
				t.Fatalf("record: status %q stage %q error %q; want failed, %s, %q", rec.Status, rec.FailedStage, rec.Error, c.stage, c.text)
			}
			// What was done: the image built (its manifest in the layout's
			// blobs, untagged), the smoke test when it ran.
			img := rec.Outputs.Image
			if img == nil || img.Digest == first.Record.Outputs.Image.Digest || img.Tag != "" || img.Ref != "" || !blobExists(out, img.Digest) {
				t.Fatalf("record image %+v; want an untagged image other than %s, in the layout", img, first.Record.Outputs.Image.Digest)
			}
			if (rec.Outputs.Push != nil) != c.pushed || rec.Outputs.Smoke == nil {
				t.Fatalf("record push %+v smoke %+v", rec.Outputs.Push, rec.Outputs.Smoke)
			}
			if _, err := os.Stat(filepath.Join(res.RunDir, "metrics.json")); err != nil {
				t.Fatalf("the failed run's reports: %v", err)
			}
			failed = append(failed, rec)
		})
	}
	if t.Failed() {
		return
	}
	if got := snapshot(t, first.RunDir); len(got) != len(earlier) {
		t.Fatal("failed runs changed the earlier run's directory")
	}
	for name, content := range snapshot(t, first.RunDir) {
		if earlier[name] != content {
			t.Fatalf("failed runs changed %s", name)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(pipeline.RunsDir(out), ".tmp-*")); len(leftovers) > 0 {
		t.Fatalf("temporary run directories left: %v", leftovers)
	}

	list, err := pipeline.Runs(out)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string // the stages of the cases that started a run
	for _, c := range cases {
		if !c.noRun {
			recorded = append(recorded, c.stage)
		}
	}
	if list.Schema != pipeline.RunsSchema || len(list.Runs) != 1+len(recorded) || list.Runs[0].Status != pipeline.StatusSucceeded || list.Runs[0].ImageDigest != first.Record.Outputs.Image.Digest {
		t.Fatalf("runs %+v", list)
	}
	for i, s := range list.Runs[1:] {
		if s.Status != pipeline.StatusFailed || s.FailedStage != recorded[i] || s.ImageDigest != failed[i].Outputs.Image.Digest {
			t.Fatalf("runs[%d] = %+v", i+1, s)
		}
	}

	// Not a rebuild's subject, not a baseline (named by path or not).
	sp, err := spec.Load(filepath.Join(dir, "modelci.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	last := failed[len(failed)-1]
	if _, err := pipeline.Rebuild(context.Background(), sp, out, last.ID, pipeline.WithRuntime("linux/amd64", bin)); !errors.Is(err, pipeline.ErrFailedRun) {
		t.Fatalf("rebuild of a failed run: %v, want ErrFailedRun", err)
	}
	again, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", bin))
	if err != nil {
		t.Fatal(err)
	}
	if b := again.Record.Inputs.Baseline; b == nil || b.Source != "run:"+first.RunID {
		t.Fatalf("baseline %+v, want run:%s (the failed runs passed the gate, and are newer)", b, first.RunID)
	}
	if last.Verdict != modelgate.Pass {
		t.Fatalf("the last failed run's verdict is %s: it proves nothing about baselines", last.Verdict)
	}
	spec, _ := os.ReadFile(filepath.Join(dir, "modelci.yaml"))
	setSpec(t, dir, [2]string{"method: t\n", "method: t\n  baseline: {metrics: .modelci/runs/" + last.ID + "/metrics.json}\n"})
	if _, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", bin)); !errors.Is(err, pipeline.ErrFailedRun) {
		t.Fatalf("gate.baseline.metrics of a failed run: %v, want ErrFailedRun", err)
	}
	os.WriteFile(filepath.Join(dir, "modelci.yaml"), spec, 0o644)

	// gc --keep 2 keeps both succeeded runs, removes every failed one and
	// the blobs only they reached.
	res, err := pipeline.GC(out, 2)
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := pipeline.ListRuns(out)
	if len(ids) != 2 || ids[0] != first.RunID || ids[1] != again.RunID || res.Failed != len(failed)+1 {
		t.Fatalf("after gc: runs %v, gc %+v", ids, res)
	}
	for _, rec := range failed {
		if blobExists(out, rec.Outputs.Image.Digest) {
			t.Fatalf("gc kept the manifest of failed run %s", rec.ID)
		}
	}
	if !blobExists(out, first.Record.Outputs.Image.Digest) {
		t.Fatal("gc removed the succeeded run's image")
	}
}

// TestLargeModelStoredOnce: a model of ModelKeepLimit bytes or more is not
// copied into the run directory; run.json names its layers in the layout,
// which hold it. A small model keeps model/ (TestEndToEnd).
func TestLargeModelStoredOnce(t *testing.T) {
	dir := project(t, nil)
	out := filepath.Join(dir, ".modelci")
	res, err := runProject(t, dir, pipeline.WithRuntime("linux/amd64", serverRuntime(t)))
	if err != nil {
		t.Fatal(err)
	}
	m := res.Record.Outputs.Model
	if m.Path != "model" || m.Size >= pipeline.ModelKeepLimit || len(m.Layers) != 1 {
		t.Fatalf("small model: %+v", m)
	}
	for _, l := range m.Layers {
		if !blobExists(out, l.Digest) {
			t.Fatalf("model layer %s is not in the layout", l.Digest)
		}
	}
}

// TestTrainTimeout: the built-in trainer stops at train.timeout (checked
// between epochs): the run fails in the train stage with train.ErrTimeout,
// recorded, and builds nothing.
func TestTrainTimeout(t *testing.T) {
	dir := project(t, func(s string) string {
		return strings.Replace(s, "  builtin: linear\n", "  builtin: linear\n  timeout: 1ns\n", 1)
	})
	res, err := runProject(t, dir)
	if !errors.Is(err, train.ErrTimeout) || !strings.Contains(err.Error(), "train.timeout 1ns") {
		t.Fatalf("err = %v, want train.ErrTimeout naming train.timeout 1ns", err)
	}
	if res == nil || res.Record.Status != pipeline.StatusFailed || res.Record.FailedStage != "train" || res.Record.Outputs.Image != nil {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(pipeline.LayoutDir(filepath.Join(dir, ".modelci"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a run that timed out in training touched the layout: %v", err)
	}
}
