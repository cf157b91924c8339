package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/registry"
)

// The model of the push benchmark: two small files (in the image's one
// compressed model layer) and five weights files over
// image.DefaultSizeCutoff, each stored uncompressed in a layer of its own,
// sharing the weights budget in these parts per thousand; the first, the
// largest, takes what rounding leaves. With the runtime layer that makes
// 7 files and 7 layers.
var weights = []struct {
	name     string
	permille int64
}{
	{"model.safetensors", 600},
	{"embed.safetensors", 160},
	{"lm_head.safetensors", 120},
	{"vision.safetensors", 80},
	{"adapter.safetensors", 40},
}

// modelResult is what the model subcommand prints, one JSON line.
type modelResult struct {
	Ref          string  `json:"ref"`
	Digest       string  `json:"digest"`
	Layers       []int64 `json:"layers"`
	LayerBytes   int64   `json:"layer_bytes"`
	ImageBytes   int64   `json:"image_bytes"` // layers, config and manifest
	BuildSeconds float64 `json:"build_seconds"`
}

// model writes a model directory of 7 files whose image's 7 layers total
// -size bytes (to within 511: tar pads files to 512 bytes), weights of
// seeded random bytes written streaming, builds its image with image.Run
// into DIR/layout under the tag 1.0.0, deletes the model directory and
// prints a modelResult.
//
// The sizes come from a probe: the same files with 1 MiB weights, built
// the same way, give the runtime layer's and the small layer's sizes and
// each weights layer's tar overhead, which do not change with a weights
// file's size when that is a multiple of 512.
func model(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("model", flag.ContinueOnError)
	sizeFlag := fs.String("size", "2GiB", "total bytes of the image's layers: N, NKiB, NMiB or NGiB")
	dir := fs.String("dir", "", "work directory: the layout is built in DIR/layout")
	runtime := fs.String("runtime", "", "runtime binary (default: the cached build of this checkout)")
	seed := fs.Uint64("seed", 1, "seed of the weights' bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() != 0 {
		return errors.New("usage: oci model -dir DIR [-size SIZE] [-runtime FILE] [-seed N]")
	}
	size, err := parseSize(*sizeFlag)
	if err != nil {
		return err
	}
	rt := *runtime
	if rt == "" {
		if rt, err = image.Runtime(ctx, amd64, image.WithSourceDir("."), image.WithLog(os.Stderr)); err != nil {
			return err
		}
	}
	build := func(name string, sizes []int64, seed uint64) (image.Output, []int64, error) {
		m := filepath.Join(*dir, name+"-model")
		if err := writeModel(m, sizes, seed); err != nil {
			return image.Output{}, nil, err
		}
		defer os.RemoveAll(m)
		out, err := image.Run(ctx, image.Input{
			ModelDir: m, Name: "bench", Version: "1.0.0", Layout: filepath.Join(*dir, name),
			Runtime: func(context.Context, v1.Platform) (string, error) { return rt, nil },
		})
		if err != nil {
			return image.Output{}, nil, err
		}
		layers, err := layerSizes(filepath.Join(*dir, name), out.Digest)
		return out, layers, err
	}

	const cutoff = image.DefaultSizeCutoff
	probe := make([]int64, len(weights))
	for i := range probe {
		probe[i] = cutoff
	}
	_, layers, err := build("probe", probe, *seed)
	os.RemoveAll(filepath.Join(*dir, "probe"))
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if len(layers) != 2+len(weights) {
		return fmt.Errorf("probe: %d layers, want %d", len(layers), 2+len(weights))
	}
	// Layers: the runtime, the small files, then the weights in name order.
	fixed := sum(layers) - int64(len(weights))*cutoff
	budget := size - fixed
	sizes := make([]int64, len(weights))
	for i := len(weights) - 1; i >= 0; i-- {
		n := budget * weights[i].permille / 1000
		if i == 0 {
			n = budget - sum(sizes)
		}
		sizes[i] = n &^ 511
	}
	if slicesMin(sizes) < cutoff {
		least := fixed + cutoff*1000/weights[len(weights)-1].permille
		return fmt.Errorf("-size %s: too small for %d weights files of at least %d bytes; at least %d", *sizeFlag, len(weights), cutoff, least)
	}

	start := time.Now()
	out, layers, err := build("layout", sizes, *seed)
	if err != nil {
		return err
	}
	res := modelResult{
		Ref:          out.Ref,
		Digest:       out.Digest.String(),
		Layers:       layers,
		LayerBytes:   sum(layers),
		BuildSeconds: time.Since(start).Seconds(),
	}
	if res.ImageBytes, err = imageBytes(filepath.Join(*dir, "layout"), out.Digest); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// writeModel writes the model directory: model.json and tokenizer.json,
// small, and the weights files of these sizes (in the order of weights),
// random bytes from a ChaCha8 stream seeded with seed and the file's
// index, copied to disk 32 KiB at a time.
func writeModel(dir string, sizes []int64, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The same bytes whatever the sizes, so that the probe's small layer
	// is the real one's.
	var files []string
	for _, w := range weights {
		files = append(files, w.name)
	}
	doc, err := json.Marshal(map[string]any{
		"schema": "modelci.dev/bench/v1", "name": "bench", "version": "1.0.0", "files": files,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "model.json"), doc, 0o644); err != nil {
		return err
	}
	// A vocabulary of 20,000 tokens: text, as a tokenizer is (about 400 KB).
	var tok strings.Builder
	tok.WriteString(`{"version":"1.0","model":{"type":"BPE","vocab":{`)
	for i := range 20000 {
		if i > 0 {
			tok.WriteByte(',')
		}
		fmt.Fprintf(&tok, "\"tok%05d\":%d", i, i)
	}
	tok.WriteString("}}}\n")
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(tok.String()), 0o644); err != nil {
		return err
	}
	for i, w := range weights {
		var key [32]byte
		binary.LittleEndian.PutUint64(key[:], seed)
		binary.LittleEndian.PutUint64(key[8:], uint64(i))
		if err := writeRandom(filepath.Join(dir, w.name), sizes[i], rand.NewChaCha8(key)); err != nil {
			return err
		}
	}
	return nil
}

func writeRandom(path string, n int64, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(onlyWriter{f}, io.LimitReader(r, n), make([]byte, 32<<10))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// onlyWriter hides *os.File's ReadFrom, so that io.CopyBuffer uses its
// buffer.
type onlyWriter struct{ io.Writer }

// layerSizes lists the sizes of the layers of the image h in the layout dir.
func layerSizes(dir string, h v1.Hash) ([]int64, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	img, err := lp.Image(h)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	var sizes []int64
	for _, l := range m.Layers {
		sizes = append(sizes, l.Size)
	}
	return sizes, nil
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

func slicesMin(xs []int64) int64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}

// parseSize reads N, NKiB, NMiB or NGiB (also Ki, Mi, Gi, K, M, G, all
// powers of 1024).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i")
	shift := 0
	switch {
	case strings.HasSuffix(t, "K"):
		shift = 10
	case strings.HasSuffix(t, "M"):
		shift = 20
	case strings.HasSuffix(t, "G"):
		shift = 30
	}
	if shift > 0 {
		t = t[:len(t)-1]
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("size %q: want N, NKiB, NMiB or NGiB", s)
	}
	return n << shift, nil
}

// copyResult is what the copy subcommand prints, one JSON line.
type copyResult struct {
	Digest  string  `json:"digest"`
	Seconds float64 `json:"seconds"`
}

// copyImage pushes -from (an oci-layout:// reference by digest) to -to
// (HOST:PORT/PATH:TAG) with registry.Copy and its defaults (chunk size,
// jobs, retries, conditional tag), as `modelci copy` does.
func copyImage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("copy", flag.ContinueOnError)
	from := fs.String("from", "", "oci-layout://DIR@sha256:…")
	to := fs.String("to", "", "HOST:PORT/PATH:TAG")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *to == "" || fs.NArg() != 0 {
		return errors.New("usage: oci copy -from REF -to HOST:PORT/PATH:TAG")
	}
	start := time.Now()
	p, err := registry.Copy(ctx, *from, *to)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(copyResult{Digest: p.Digest.String(), Seconds: time.Since(start).Seconds()})
}
