// Command oci is the driver of bench/oci/run.sh and bench/push.sh. It
// builds and pushes a modelci serving image the way `modelci run
// --repository` does (image.Run into an OCI layout, then registry.Copy by
// digest), so that run.sh can time it against ko and measure its peak RSS
// with /usr/bin/time; it pushes the empty local base image ko builds on, so
// that ko pulls nothing remote; and for push.sh it builds a large model's
// image, runs docker-registry behind a byte-counting, fault-injecting
// proxy, and pushes a layout's image with registry.Copy.
//
//	oci runtime                       print the path of the cached runtime binary
//	oci base REPO                     push an empty linux/amd64 image, print REPO@sha256:…
//	oci push -model DIR -repo REPO    build and push; print a JSON result line
//	oci serve ROOT                    registry.Serve on a free loopback port, as
//	                                  `modelci registry serve` does (run.sh's
//	                                  fallback while cmd/modelci does not build)
//	oci model -dir DIR -size SIZE     build a 7-file model's image of 7 layers
//	                                  totalling SIZE into DIR/layout; print JSON
//	oci distribution -root DIR [-faults P] [-seed N]
//	                                  docker-registry on loopback behind a proxy
//	                                  that counts request bodies and answers a
//	                                  share P of requests 503; JSON counts on exit
//	oci copy -from REF -to DEST       registry.Copy with its defaults; print JSON
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelci/modelci/stages/image"
	"github.com/modelci/modelci/stages/registry"
)

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "oci:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: oci runtime | base REPO | push -model DIR -repo REPO [flags] | serve ROOT | model -dir DIR [flags] | distribution -root DIR [flags] | copy -from REF -to DEST")
	}
	switch args[0] {
	case "runtime":
		p, err := image.Runtime(ctx, amd64, image.WithSourceDir("."), image.WithLog(os.Stderr))
		if err != nil {
			return err
		}
		fmt.Println(p)
		return nil
	case "base":
		if len(args) != 2 {
			return errors.New("usage: oci base REPO")
		}
		return pushBase(ctx, args[1])
	case "push":
		return push(ctx, args[1:])
	case "model":
		return model(ctx, args[1:])
	case "distribution":
		return distribution(ctx, args[1:])
	case "copy":
		return copyImage(ctx, args[1:])
	case "serve":
		if len(args) != 2 {
			return errors.New("usage: oci serve ROOT")
		}
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
		defer stop()
		return registry.Serve(ctx, "127.0.0.1:0", args[1], registry.OnListen(func(a net.Addr) {
			fmt.Fprintf(os.Stderr, "{\"msg\":\"listening\",\"addr\":%q}\n", a.String())
		}))
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// pushBase pushes an empty OCI image for linux/amd64 (ko's stand-in for a
// distroless base) and prints its reference by digest.
func pushBase(ctx context.Context, repo string) error {
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = amd64.OS, amd64.Architecture
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	p, err := registry.Push(ctx, img, repo, registry.WithTags("base"))
	if err != nil {
		return err
	}
	fmt.Println(p.Ref)
	return nil
}

// result is what push prints, one JSON line.
type result struct {
	Digest       string  `json:"digest"`
	BuildSeconds float64 `json:"build_seconds"`
	PushSeconds  float64 `json:"push_seconds"`
	Seconds      float64 `json:"seconds"`
	ImageBytes   int64   `json:"image_bytes"`
	Uploaded     int64   `json:"uploaded_bytes"` // blob and manifest bodies; -1 without -count
}

func push(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	model := fs.String("model", "", "model directory")
	runtime := fs.String("runtime", "", "runtime binary (default: the cached build of this checkout)")
	repo := fs.String("repo", "", "HOST:PORT/PATH to push to")
	tag := fs.String("tag", "1.0.0", "version tag")
	dir := fs.String("layout", "", "OCI layout to build into (default: a fresh temporary one)")
	count := fs.Bool("count", false, "count the bytes uploaded, through a loopback proxy")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *model == "" || *repo == "" {
		return errors.New("push: -model and -repo are required")
	}
	rt := *runtime
	if rt == "" {
		var err error
		if rt, err = image.Runtime(ctx, amd64, image.WithSourceDir(".")); err != nil {
			return err
		}
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "oci-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = filepath.Join(tmp, "oci")
	}
	target := *repo
	var counter *proxy
	if *count {
		host, _, _ := strings.Cut(*repo, "/")
		var err error
		if counter, err = newProxy(host, 0, 0); err != nil {
			return err
		}
		defer counter.Close()
		target = strings.Replace(*repo, host, counter.Addr(), 1)
	}

	start := time.Now()
	out, err := image.Run(ctx, image.Input{
		ModelDir: *model, Name: "bench", Version: *tag, Layout: *dir,
		Runtime: func(context.Context, v1.Platform) (string, error) { return rt, nil },
	})
	if err != nil {
		return err
	}
	built := time.Now()
	p, err := registry.Copy(ctx, out.Ref, target, registry.WithTags(*tag))
	if err != nil {
		return err
	}
	done := time.Now()
	if p.Digest != out.Digest {
		return fmt.Errorf("pushed %s, built %s", p.Digest, out.Digest)
	}
	size, err := imageBytes(*dir, out.Digest)
	if err != nil {
		return err
	}
	res := result{
		Digest:       out.Digest.String(),
		BuildSeconds: built.Sub(start).Seconds(),
		PushSeconds:  done.Sub(built).Seconds(),
		Seconds:      done.Sub(start).Seconds(),
		ImageBytes:   size,
		Uploaded:     -1,
	}
	if counter != nil {
		res.Uploaded = counter.stats().Sent
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// imageBytes is what a push to an empty registry moves: the manifest, the
// config and every layer.
func imageBytes(dir string, h v1.Hash) (int64, error) {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return 0, err
	}
	img, err := lp.Image(h)
	if err != nil {
		return 0, err
	}
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n, err := img.Size()
	if err != nil {
		return 0, err
	}
	n += m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
