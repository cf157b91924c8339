package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/image"
)

// GCResult says what GC removed.
type GCResult struct {
	// Runs are the removed runs' ids, Failed how many of them had failed.
	Runs       []string `json:"runs"`
	Failed     int      `json:"failed"`
	Blobs      int      `json:"blobs"`
	BlobsBytes int64    `json:"blobs_bytes"`
	// Leftovers are what runs killed part-way left (RemoveLeftovers).
	Leftovers Leftovers `json:"leftovers"`
}

// GC keeps the newest keep succeeded runs of output and removes the older
// ones and every failed run, then removes the blobs of the OCI layout that
// neither a tag nor a kept run's image reaches: an image only a failed run
// built (never tagged) goes. It takes the output directory's lock, so it
// never races a run.
func GC(output string, keep int) (*GCResult, error) {
	if keep < 0 {
		return nil, fmt.Errorf("gc: keep %d: must be 0 or more", keep)
	}
	lock, err := LockDir(output)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	res := &GCResult{Runs: []string{}}
	ids, err := ListRuns(output)
	if err != nil {
		return nil, err
	}
	// A record that cannot be read counts as succeeded, as every run did
	// before failed runs were recorded: kept while among the newest.
	var succeeded []string
	remove := map[string]bool{}
	for _, id := range ids {
		if rec, err := ReadRecord(output, id); err == nil && rec.Status == StatusFailed {
			remove[id] = true
			res.Failed++
			continue
		}
		succeeded = append(succeeded, id)
	}
	if len(succeeded) > keep {
		for _, id := range succeeded[:len(succeeded)-keep] {
			remove[id] = true
		}
	}
	for _, id := range ids {
		if !remove[id] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(RunsDir(output), id)); err != nil {
			return res, fmt.Errorf("gc: remove run %s: %w", id, err)
		}
		res.Runs = append(res.Runs, id)
	}
	if res.Leftovers, err = RemoveLeftovers(output); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	// Images of kept runs stay, even when their tag has moved on, and so do
	// their ModelPack artifacts and runtime images.
	var roots []v1.Descriptor
	kept := map[v1.Hash]bool{}
	for _, id := range ids {
		if remove[id] {
			continue
		}
		rec, err := ReadRecord(output, id)
		if err != nil || rec.Status != StatusSucceeded {
			continue
		}
		for _, d := range runManifests(rec) {
			if h, err := v1.NewHash(d); err == nil {
				roots = append(roots, v1.Descriptor{Digest: h})
				kept[h] = true
			}
		}
	}
	// The untagged entries index.json lists for removed runs go, so that
	// what only they reach is collected.
	if _, err := image.PruneUntagged(LayoutDir(output), kept); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	n, size, err := gcLayout(LayoutDir(output), roots)
	res.Blobs, res.BlobsBytes = n, size
	return res, err
}

// runManifests are the digests of the manifests a run wrote into the
// layout: its image, ModelPack artifact and runtime image.
func runManifests(rec *Record) []string {
	var out []string
	if rec.Outputs.Image != nil {
		out = append(out, rec.Outputs.Image.Digest)
	}
	for _, a := range []*ArtifactOutput{rec.Outputs.ModelPack, rec.Outputs.Runtime} {
		if a != nil {
			out = append(out, a.Digest)
		}
	}
	return out
}

// Leftovers says what RemoveLeftovers removed.
type Leftovers struct {
	// Runs is the number of run directories never published (.tmp-*
	// under runs/), Files the number of temporary files in the OCI layout
	// (.tmp-* blobs and index.json being written), Bytes what both held.
	Runs  int   `json:"runs"`
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// RemoveLeftovers removes what runs killed part-way (SIGKILL, a crash, a
// full disk) left in output: their temporary run directories and the
// temporary files of the layout. The caller holds output's lock, so none
// of them belongs to a live run: Run calls it before it starts, and GC.
func RemoveLeftovers(output string) (Leftovers, error) {
	var left Leftovers
	var errs []error
	runs := RunsDir(output)
	entries, err := os.ReadDir(runs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		dir := filepath.Join(runs, e.Name())
		n, _ := treeSize(dir)
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		left.Runs++
		left.Bytes += n
	}
	files, n, err := image.RemoveTemporaries(LayoutDir(output))
	left.Files += files
	left.Bytes += n
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return left, fmt.Errorf("remove the leftovers of interrupted runs in %s: %w", output, err)
	}
	return left, nil
}

// gcLayout deletes the blobs that neither index.json nor roots reach.
func gcLayout(dir string, roots []v1.Descriptor) (int, int64, error) {
	idx, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("gc: %w", err)
	}
	live := map[string]bool{}
	if err := markReachable(dir, idx, live); err != nil {
		return 0, 0, fmt.Errorf("gc %s: %w", dir, err)
	}
	for _, d := range roots {
		b, err := json.Marshal(struct {
			Manifests []v1.Descriptor `json:"manifests"`
		}{[]v1.Descriptor{d}})
		if err != nil {
			return 0, 0, err
		}
		// A run's image that is already gone is not an error.
		if err := markReachable(dir, b, live); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, 0, fmt.Errorf("gc %s: %w", dir, err)
		}
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	entries, err := os.ReadDir(blobs)
	if err != nil {
		return 0, 0, fmt.Errorf("gc: %w", err)
	}
	var n int
	var size int64
	for _, e := range entries {
		if live[e.Name()] {
			continue
		}
		info, err := e.Info()
		if err == nil {
			size += info.Size()
		}
		if err := os.Remove(filepath.Join(blobs, e.Name())); err != nil {
			return n, size, fmt.Errorf("gc: %w", err)
		}
		n++
	}
	return n, size, nil
}

// markReachable walks an index or manifest document and marks every blob
// it references, recursing into nested indexes and manifests.
func markReachable(dir string, doc []byte, live map[string]bool) error {
	var m struct {
		Manifests []v1.Descriptor `json:"manifests"`
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Subject   *v1.Descriptor  `json:"subject"`
	}
	if err := json.Unmarshal(doc, &m); err != nil {
		return err
	}
	mark := func(d v1.Descriptor) { live[d.Digest.Hex] = true }
	for _, d := range m.Manifests {
		if live[d.Digest.Hex] {
			continue
		}
		mark(d)
		b, err := os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm, d.Digest.Hex))
		if err != nil {
			return err
		}
		if err := markReachable(dir, b, live); err != nil {
			return err
		}
	}
	if m.Config != nil {
		mark(*m.Config)
	}
	for _, d := range m.Layers {
		mark(d)
	}
	return nil
}
