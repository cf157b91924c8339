package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// GCResult says what GC removed.
type GCResult struct {
	Runs       []string `json:"runs"`
	Blobs      int      `json:"blobs"`
	BlobsBytes int64    `json:"blobs_bytes"`
}

// GC keeps the newest keep runs of output, removes the older ones, and
// removes blobs of the OCI layout that no tag reaches. It takes the output
// directory's lock, so it never races a run.
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
	if len(ids) > keep {
		for _, id := range ids[:len(ids)-keep] {
			if err := os.RemoveAll(filepath.Join(RunsDir(output), id)); err != nil {
				return res, fmt.Errorf("gc: remove run %s: %w", id, err)
			}
			res.Runs = append(res.Runs, id)
		}
	}
	// Leftovers of runs that died before publishing.
	if entries, err := os.ReadDir(RunsDir(output)); err == nil {
		for _, e := range entries {
			if e.IsDir() && len(e.Name()) > 5 && e.Name()[:5] == ".tmp-" {
				os.RemoveAll(filepath.Join(RunsDir(output), e.Name()))
			}
		}
	}
	// Images of kept runs stay, even when their tag has moved on.
	var roots []v1.Descriptor
	kept, _ := ListRuns(output)
	for _, id := range kept {
		if rec, err := ReadRecord(output, id); err == nil && rec.Outputs.Image != nil {
			if h, err := v1.NewHash(rec.Outputs.Image.Digest); err == nil {
				roots = append(roots, v1.Descriptor{Digest: h})
			}
		}
	}
	n, size, err := gcLayout(LayoutDir(output), roots)
	res.Blobs, res.BlobsBytes = n, size
	return res, err
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
