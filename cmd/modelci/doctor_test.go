package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestGPUChecks(t *testing.T) {
	const smiL = "GPU 0: NVIDIA H200 (UUID: GPU-1)\nGPU 1: NVIDIA H200 (UUID: GPU-2)\n"
	tests := []struct {
		name     string
		onPath   []string
		smi      string
		smiErr   error
		env      string
		problems int
		want     []string // substrings of the report
	}{
		{"all good", []string{"nvidia-smi", "nvidia-ctk"}, smiL, nil, "1", 0,
			[]string{"ok       nvidia-smi: 2 GPU(s)", "ok       container toolkit", "dagger call train --gpu"}},
		{"nothing installed", nil, "", nil, "", 3,
			[]string{"PROBLEM  nvidia-smi: not on PATH", "install the NVIDIA driver", "install the NVIDIA container toolkit", "export _EXPERIMENTAL_DAGGER_GPU_SUPPORT=1"}},
		{"driver not loaded", []string{"nvidia-smi", "nvidia-container-runtime-hook"}, "NVIDIA-SMI has failed", errors.New("exit status 9"), "1", 1,
			[]string{"nvidia-smi -L failed: exit status 9: NVIDIA-SMI has failed", "lsmod | grep nvidia"}},
		{"no GPU", []string{"nvidia-smi", "nvidia-ctk"}, "No devices found.\n", nil, "1", 1,
			[]string{"no GPU listed"}},
		{"flag missing", []string{"nvidia-smi", "nvidia-ctk"}, smiL, nil, "", 1,
			[]string{"PROBLEM  _EXPERIMENTAL_DAGGER_GPU_SUPPORT: not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookPath := func(name string) (string, error) {
				for _, p := range tt.onPath {
					if p == name {
						return "/usr/bin/" + name, nil
					}
				}
				return "", exec.ErrNotFound
			}
			run := func(_ context.Context, name string, args ...string) (string, error) {
				if name != "nvidia-smi" || strings.Join(args, " ") != "-L" {
					t.Fatalf("ran %s %v, want nvidia-smi -L", name, args)
				}
				return tt.smi, tt.smiErr
			}
			getenv := func(k string) string {
				if k == gpuSupportEnv {
					return tt.env
				}
				return ""
			}
			var out bytes.Buffer
			got := writeChecks(&out, gpuChecks(context.Background(), lookPath, run, getenv))
			if got != tt.problems {
				t.Errorf("problems = %d, want %d; report:\n%s", got, tt.problems, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
