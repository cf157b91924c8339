package stage

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/modelci/modelci/stages/artifact"
)

// wrapCmd is `stage wrap --ref IN --dir DIR --out OUT --to REPO -- CMD…`:
// fetch, the step's command and put in one container, for a Kubeflow
// Trainer TrainJob, whose runtime owns the pod's containers (modelci's CLI
// comes in as an image volume). Node 0 alone pushes OUT; the command's
// exit status is the step's. The command's environment is the
// container's without the registry's docker config.
func wrapCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wrap", flag.ContinueOnError)
	ref := fs.String("ref", "", "the input artifact, HOST/REPO@sha256:…")
	dir := fs.String("dir", "", "where the input goes (absent or empty)")
	out := fs.String("out", "", "the step's output directory (MODELCI_OUT), pushed after it")
	tmp := fs.String("tmp", "", "the step's HOME and TMPDIR, made writable")
	to := fs.String("to", "", "repository of the output, HOST/REPO")
	workdir := fs.String("workdir", "", "the command's working directory")
	termLog := fs.String("termination-log", "", "write the output's reference here too")
	insecure := fs.Bool("insecure", false, "plain HTTP")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", err, ErrUsage)
	}
	argv := fs.Args()
	if *ref == "" || *dir == "" || *out == "" || *to == "" || len(argv) == 0 {
		return fmt.Errorf("want --ref REF --dir DIR --out DIR --to HOST/REPO -- COMMAND…: %w", ErrUsage)
	}
	opts := artifact.WithRegistryOptions(stepRegistryOptions(*insecure)...)
	if _, err := artifact.Pull(ctx, *ref, *dir, opts, artifact.WithArtifactType(artifact.ArtifactTypeTrainingInput)); err != nil {
		return err
	}
	writable := []string{*out}
	if *tmp != "" {
		writable = append(writable, *tmp)
	}
	if err := makeWritable(writable); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = *workdir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_CONFIG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	// The kubelet stops the container with SIGTERM: the command gets it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	signal.Stop(sig)
	close(sig)
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit
	}
	if err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	if !nodeZero() {
		fmt.Fprintln(os.Stderr, "wrap: not node 0: node 0 pushes the output")
		return nil
	}
	p, err := artifact.Push(ctx, *to, artifact.ArtifactTypeTrainingOutput, []artifact.Part{{Path: artifact.OutPath, Dir: *out, MediaType: artifact.MediaTypeTrainingOutput}}, opts)
	if err != nil {
		return err
	}
	if *termLog != "" {
		if err := os.WriteFile(*termLog, []byte(p.Ref), 0o644); err != nil {
			return fmt.Errorf("termination log %s: %w", *termLog, err)
		}
	}
	fmt.Println(p.Ref)
	return nil
}

// nodeZero says whether this pod is the first node of a multi-node
// training: an indexed Job's completion index, or torchrun's node rank.
func nodeZero() bool {
	for _, k := range []string{"JOB_COMPLETION_INDEX", "PET_NODE_RANK"} {
		if v, ok := os.LookupEnv(k); ok && v != "0" {
			return false
		}
	}
	return true
}
