package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtractTar: whatever the bytes, extraction writes only directories
// and regular files, only under the part's path (or directories above
// it), and never more file bytes than the budget allows.
func FuzzExtractTar(f *testing.F) {
	seed := func(entries ...tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			tw.WriteHeader(&h)
			if h.Typeflag == tar.TypeReg {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	reg := func(name string, size int64) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Size: size, Mode: 0o644}
	}
	d := func(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	f.Add(seed(d("a/"), d("a/b/"), reg("a/b/x", 3), d("a/b/sub/"), reg("a/b/sub/y", 0)))
	f.Add(seed(reg("a/b/../../x", 1)))
	f.Add(seed(reg("/a/b/x", 1)))
	f.Add(seed(d("a/b/"), tar.Header{Name: "a/b/l", Typeflag: tar.TypeSymlink, Linkname: "/"}, reg("a/b/l/x", 1)))
	f.Add(seed(tar.Header{Name: "a/b/h", Typeflag: tar.TypeLink, Linkname: "a/b/x"}))
	f.Add(seed(reg("a/b/x", 1), reg("a/b/x", 1)))
	f.Add(seed(reg("a/b/big", 5000)))
	f.Add(seed(reg("a", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		root := filepath.Join(base, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		const limit = 4096
		budget := int64(limit)
		err := extractTar(bytes.NewReader(data), root, "a/b", &budget)
		if err == nil && budget < 0 {
			t.Fatalf("budget %d after a successful extraction", budget)
		}
		var written int64
		walkErr := filepath.WalkDir(base, func(p string, de fs.DirEntry, werr error) error {
			if werr != nil {
				return werr
			}
			rel, _ := filepath.Rel(root, p)
			rel = filepath.ToSlash(rel)
			switch {
			case p == base, rel == ".":
				return nil
			case strings.HasPrefix(rel, "../"):
				t.Fatalf("%s written outside the root", p)
			case de.IsDir():
				if rel != "a" && rel != "a/b" && !strings.HasPrefix(rel, "a/b/") {
					t.Fatalf("directory %s outside the part", rel)
				}
			case de.Type().IsRegular():
				if !strings.HasPrefix(rel, "a/b/") {
					t.Fatalf("file %s outside the part", rel)
				}
				fi, _ := de.Info()
				written += fi.Size()
			default:
				t.Fatalf("%s is a %v", rel, de.Type())
			}
			return nil
		})
		if walkErr != nil {
			t.Fatal(walkErr)
		}
		if written > limit {
			t.Fatalf("%d bytes written past a budget of %d", written, limit)
		}
		if err != nil && !errors.Is(err, ErrUnsafeEntry) && !errors.Is(err, ErrTooLarge) && !strings.Contains(err.Error(), "tar") {
			// Malformed tars are refused by archive/tar; what else fails
			// is the file system (a name too long, a file where a
			// directory goes), which must still write nothing unsafe.
			t.Logf("extract: %v", err)
		}
	})
}
