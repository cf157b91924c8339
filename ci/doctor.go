package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/modelci/modelci/ci/internal/dagger"
)

// gpuSupportEnv turns on GPU support in the Dagger engine.
const gpuSupportEnv = "_EXPERIMENTAL_DAGGER_GPU_SUPPORT"

// Doctor checks GPU support end to end, as `modelci doctor` does on the
// host: the engine's GPU flag, the GPU devices in a container, and
// nvidia-smi in a container. It prints each check, and the fix for each
// problem found.
func (m *Modelci) Doctor(
	ctx context.Context,
	// An image with glibc in which to run nvidia-smi (default: the built-in Go image; nvidia-smi needs glibc, so pass a CUDA base image when it cannot start there).
	// +optional
	image string,
) (string, error) {
	var base *dagger.Container
	if image != "" {
		base = dag.Container().From(image)
	} else {
		b, err := m.goBuilder(ctx)
		if err != nil {
			return "", err
		}
		base = b
	}
	gpu := base.ExperimentalWithAllGPUs()
	var b strings.Builder
	problems := 0
	report := func(name, detail, fix string) {
		if fix == "" {
			fmt.Fprintf(&b, "ok       %s: %s\n", name, detail)
			return
		}
		problems++
		fmt.Fprintf(&b, "PROBLEM  %s: %s\n         fix: %s\n", name, detail, fix)
	}

	devs, err := gpu.WithExec([]string{"sh", "-c", "ls /dev/nvidia* 2>/dev/null || true"}).Stdout(ctx)
	switch {
	case err != nil && strings.Contains(err.Error(), gpuSupportEnv):
		report("engine", "GPU support is off",
			"start the engine with "+gpuSupportEnv+"=1 in its environment (export it before the dagger CLI starts one; tools/dagger/engine.sh sets it when nvidia-smi is present)")
		// Nothing below can run without it.
		return b.String(), nil
	case err != nil:
		report("engine", fmt.Sprintf("a container with GPUs failed: %v", firstLine(err.Error())),
			"install the NVIDIA container toolkit on the engine's host; the engine uses its hook to give containers GPUs")
		return b.String(), nil
	default:
		report("engine", gpuSupportEnv+" is set", "")
	}
	if strings.TrimSpace(devs) == "" {
		report("devices", "no /dev/nvidia* in a container with GPUs",
			"install the NVIDIA driver and container toolkit on the engine's host, and check `nvidia-smi` there (`modelci doctor`)")
	} else {
		report("devices", strings.Join(strings.Fields(devs), " "), "")
	}
	out, err := gpu.WithExec([]string{"nvidia-smi", "-L"}).Stdout(ctx)
	switch {
	case err != nil:
		report("nvidia-smi", fmt.Sprintf("could not run in the container: %v", firstLine(err.Error())),
			"pass --image with a CUDA base image (nvidia-smi needs glibc), and check the toolkit mounts the driver's utilities")
	case !strings.Contains(out, "GPU "):
		report("nvidia-smi", "lists no GPU", "check that the GPUs are visible to the engine's host")
	default:
		report("nvidia-smi", firstLine(out), "")
	}
	if problems == 0 {
		b.WriteString("GPU training in containers works: run `dagger call train --gpu`\n")
	}
	return b.String(), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
