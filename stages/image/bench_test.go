package image_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/image"
)

// BenchmarkBuildExample builds the example's image (a ~1 KB model.json) with
// a prebuilt runtime and writes it to a fresh OCI layout each time, with
// runtimes of three sizes: the tiny test binary, this test binary, and the
// real server built from this checkout.
func BenchmarkBuildExample(b *testing.B) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	runtimes := []struct{ name, path string }{
		{"runtime=hello", hello(b, "amd64")},
		{"runtime=test-binary", self},
	}
	// The real server, when this checkout builds (cached after the first run).
	if p, err := image.Runtime(context.Background(), v1.Platform{OS: "linux", Architecture: "amd64"}, image.WithSourceDir(".")); err == nil {
		runtimes = append(runtimes, struct{ name, path string }{"runtime=modelci", p})
	} else {
		b.Logf("no modelci runtime: %v", err)
	}
	model := writeFiles(b, map[string]string{"model.json": modelJSON})
	for _, rt := range runtimes {
		fi, err := os.Stat(rt.path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s/%dMB", rt.name, fi.Size()>>20), func(b *testing.B) {
			in := image.Input{
				ModelDir:      model,
				Name:          "diabetes",
				Version:       "1.0.0",
				DatasetDigest: "sha256:" + hex64,
				Runtime:       func(context.Context, v1.Platform) (string, error) { return rt.path, nil },
			}
			root := b.TempDir()
			i := 0
			start, cpu0 := time.Now(), cpuTime(b)
			for b.Loop() {
				in.Layout = filepath.Join(root, fmt.Sprint(i))
				i++
				if _, err := image.Run(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(i), "ms/op")
			// CPU time is the steadier figure on a shared machine.
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/float64(i), "cpu-ms/op")
		})
	}
}

// cpuTime is the process's user and system time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCLIImage builds the CLI image from the static CLI (built once,
// then cached): hashing and compressing its one layer dominates.
func BenchmarkCLIImage(b *testing.B) {
	bin := cli(b)
	var size int64
	i := 0
	start, cpu0 := time.Now(), cpuTime(b)
	for b.Loop() {
		i++
		img, err := image.CLIImage(bin)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := img.Digest(); err != nil {
			b.Fatal(err)
		}
		ls, _ := img.Layers()
		size, _ = ls[0].Size()
	}
	fi, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size())/1e6, "binary-MB")
	b.ReportMetric(float64(size)/1e6, "layer-MB")
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(i), "ms/op")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/1000/float64(i), "cpu-ms/op")
}
