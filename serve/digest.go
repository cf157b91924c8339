package serve

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// modelDigest is the digest the V2 model metadata gives: sha256 over the
// model directory's regular files, in the byte order of their paths
// relative to dir ('/'-separated, subdirectories included, other entries
// such as links left out). It is the sha256 of the listing that sha256sum
// prints for those files, one "HEX  PATH\n" line each, so that
//
//	cd MODEL_DIR && find . -type f | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum | sha256sum
//
// gives the same hex (for paths without spaces, backslashes or newlines),
// written here as "sha256:HEX". Open computes it once, when the model
// loads.
func modelDigest(dir string) (string, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			paths = append(paths, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("digest of model %s: %w", dir, err)
	}
	slices.Sort(paths)
	listing := sha256.New()
	for _, p := range paths {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			return "", fmt.Errorf("digest of model %s: %w", dir, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("digest of model %s: %w", dir, err)
		}
		fmt.Fprintf(listing, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), p)
	}
	return "sha256:" + hex.EncodeToString(listing.Sum(nil)), nil
}
