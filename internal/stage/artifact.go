package stage

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/modelci/modelci/stages/artifact"
	"github.com/modelci/modelci/stages/registry"
)

// fetchCmd is `stage fetch --ref HOST/REPO@sha256:… --dir DIR`: a training
// Job's init container pulls the Job's inputs (artifact.Pull) into DIR,
// which must not exist or be empty (a directory inside the shared volume,
// not its mount point). It prints the reference.
//
// Credentials come from the Docker config the pod mounts ($DOCKER_CONFIG/
// config.json, the default keychain); there is no flag for them, so that
// none shows in the pod's spec.
func fetchCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	ref := fs.String("ref", "", "the artifact, HOST/REPO@sha256:…")
	dir := fs.String("dir", "", "destination directory (absent or empty)")
	insecure := fs.Bool("insecure", false, "plain HTTP (a registry inside the cluster without TLS)")
	typ := fs.String("artifact-type", "", "refuse an artifact of another artifactType (default: any)")
	var writable []string
	fs.Func("writable", "also make this directory, writable by every user (the step's MODELCI_OUT and TMPDIR: its image may run as any user); repeatable", func(s string) error {
		writable = append(writable, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", err, ErrUsage)
	}
	if *ref == "" || *dir == "" || fs.NArg() > 0 {
		return fmt.Errorf("want --ref HOST/REPO@sha256:… --dir DIR and no arguments: %w", ErrUsage)
	}
	if err := makeWritable(writable); err != nil {
		return err
	}
	opts := []artifact.Option{artifact.WithRegistryOptions(stepRegistryOptions(*insecure)...)}
	if *typ != "" {
		opts = append(opts, artifact.WithArtifactType(*typ))
	}
	p, err := artifact.Pull(ctx, *ref, *dir, opts...)
	if err != nil {
		return err
	}
	for _, d := range p.Parts {
		fmt.Fprintf(os.Stderr, "fetch: %s: %s (%s, %d bytes)\n", d.Path, d.Digest, d.MediaType, d.Size)
	}
	fmt.Println(p.Ref)
	return nil
}

// putCmd is `stage put --dir DIR --to HOST/REPO`: once the trainer has
// finished, the pod pushes DIR (its MODELCI_OUT) as one artifact by digest
// (artifact.Push, one part at --path, "out" by default) and prints the
// reference; with --termination-log (Kubernetes' /dev/termination-log) it
// writes the reference there too, so that whoever watches the Job reads it
// from the pod's status. Credentials as for fetch.
func putCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("put", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to push")
	to := fs.String("to", "", "repository, HOST/REPO (no tag: the artifact goes by digest)")
	insecure := fs.Bool("insecure", false, "plain HTTP (a registry inside the cluster without TLS)")
	typ := fs.String("artifact-type", artifact.ArtifactTypeTrainingOutput, "the artifact's artifactType")
	path := fs.String("path", artifact.OutPath, "where the directory sits in the artifact")
	mediaType := fs.String("media-type", artifact.MediaTypeTrainingOutput, "the layer's media type (.tar, or .tar+gzip to compress)")
	termLog := fs.String("termination-log", "", "also write the reference to this file (/dev/termination-log)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", err, ErrUsage)
	}
	if *dir == "" || *to == "" || fs.NArg() > 0 {
		return fmt.Errorf("want --dir DIR --to HOST/REPO and no arguments: %w", ErrUsage)
	}
	p, err := artifact.Push(ctx, *to, *typ, []artifact.Part{{Path: *path, Dir: *dir, MediaType: *mediaType}},
		artifact.WithRegistryOptions(stepRegistryOptions(*insecure)...))
	if err != nil {
		return err
	}
	if *termLog != "" {
		// Exactly the reference: the pod status carries the file as is.
		if err := os.WriteFile(*termLog, []byte(p.Ref), 0o644); err != nil {
			return fmt.Errorf("termination log %s: %w", *termLog, err)
		}
	}
	fmt.Println(p.Ref)
	return nil
}

func stepRegistryOptions(insecure bool) []registry.Option {
	if insecure {
		return []registry.Option{registry.WithInsecure()}
	}
	return nil
}

// makeWritable makes each directory, mode 0777 whatever the umask: the
// pod's next container may run as another user.
func makeWritable(dirs []string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o777); err != nil {
			return fmt.Errorf("make %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o777); err != nil {
			return fmt.Errorf("make %s writable: %w", d, err)
		}
	}
	return nil
}
