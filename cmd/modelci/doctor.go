package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// gpuSupportEnv is the variable that turns on GPU support in a Dagger
// engine (it must be in the engine's environment; the dagger CLI passes it
// on to an engine it starts itself).
const gpuSupportEnv = "_EXPERIMENTAL_DAGGER_GPU_SUPPORT"

// errDoctorProblems is returned when a check found a problem; the report
// on stdout says what and how to fix it.
var errDoctorProblems = errors.New("doctor found problems")

// check is one doctor finding: a problem when Fix is set.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// doctorSchema names `modelci doctor -o json`'s document.
const doctorSchema = "modelci.dev/doctor/v1"

// doctorOutput is `modelci doctor -o json`: every check, each problem with its fix.
type doctorOutput struct {
	Schema string  `json:"schema"`
	OK     bool    `json:"ok"`
	Checks []check `json:"checks"`
}

// lookPathFunc and runFunc are the doctor's only contact with the host.
type lookPathFunc func(string) (string, error)
type runFunc func(ctx context.Context, name string, args ...string) (string, error)

func newDoctorCmd() *cobra.Command {
	var out outputOptions
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check GPU support for training in containers (the same check as `dagger call doctor`)",
		Long: `Check that this host can give GPUs to training containers:
nvidia-smi runs and lists GPUs, the NVIDIA container toolkit's runtime hook
is installed, and ` + gpuSupportEnv + ` is set for the Dagger engine.
Each problem is printed with its fix (-o json: modelci.dev/doctor/v1); the
exit status is 1 when there is one.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			checks := gpuChecks(cmd.Context(), exec.LookPath, runCommand, os.Getenv)
			problems := 0
			for i := range checks {
				checks[i].OK = checks[i].Fix == ""
				if !checks[i].OK {
					problems++
				}
			}
			if out.json() {
				if err := out.print(cmd, doctorOutput{Schema: doctorSchema, OK: problems == 0, Checks: checks}); err != nil {
					return err
				}
			} else {
				writeChecks(cmd.OutOrStdout(), checks)
			}
			if problems > 0 {
				return exitCode(exitFailed, errDoctorProblems)
			}
			return nil
		},
	}
	out.AddFlags(cmd, "text or json")
	return cmd
}

func runCommand(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// gpuChecks runs the host checks in order; later checks assume nothing
// about earlier ones, so every problem is reported in one go.
func gpuChecks(ctx context.Context, lookPath lookPathFunc, run runFunc, getenv func(string) string) []check {
	var cs []check
	if _, err := lookPath("nvidia-smi"); err != nil {
		cs = append(cs, check{Name: "nvidia-smi", Detail: "not on PATH",
			Fix: "install the NVIDIA driver (it ships nvidia-smi) on the host that runs the Dagger engine"})
	} else if out, err := run(ctx, "nvidia-smi", "-L"); err != nil {
		cs = append(cs, check{Name: "nvidia-smi", Detail: fmt.Sprintf("nvidia-smi -L failed: %v: %s", err, firstLine(out)),
			Fix: "check that the NVIDIA driver is loaded (lsmod | grep nvidia) and matches the installed nvidia-smi"})
	} else if gpus := countGPUs(out); gpus == 0 {
		cs = append(cs, check{Name: "nvidia-smi", Detail: "no GPU listed",
			Fix: "check that the GPUs are visible to this host (or to this VM or container)"})
	} else {
		cs = append(cs, check{Name: "nvidia-smi", Detail: fmt.Sprintf("%d GPU(s): %s", gpus, firstLine(out))})
	}
	hook := ""
	for _, name := range []string{"nvidia-container-runtime-hook", "nvidia-ctk"} {
		if p, err := lookPath(name); err == nil {
			hook = p
			break
		}
	}
	if hook == "" {
		cs = append(cs, check{Name: "container toolkit", Detail: "neither nvidia-container-runtime-hook nor nvidia-ctk is on PATH",
			Fix: "install the NVIDIA container toolkit on the engine's host; the engine uses its hook to give containers GPUs"})
	} else {
		cs = append(cs, check{Name: "container toolkit", Detail: hook})
	}
	if v := getenv(gpuSupportEnv); v == "" {
		cs = append(cs, check{Name: gpuSupportEnv, Detail: "not set",
			Fix: "export " + gpuSupportEnv + "=1 before the dagger CLI starts its engine (or start your own engine with it in its environment)"})
	} else {
		cs = append(cs, check{Name: gpuSupportEnv, Detail: "set to " + v})
	}
	return cs
}

func countGPUs(out string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "GPU ") {
			n++
		}
	}
	return n
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// writeChecks prints one line per check, each problem followed by its fix,
// and returns the number of problems.
func writeChecks(w io.Writer, cs []check) int {
	problems := 0
	for _, c := range cs {
		if c.Fix == "" {
			fmt.Fprintf(w, "ok       %s: %s\n", c.Name, c.Detail)
			continue
		}
		problems++
		fmt.Fprintf(w, "PROBLEM  %s: %s\n         fix: %s\n", c.Name, c.Detail, c.Fix)
	}
	if problems == 0 {
		fmt.Fprintln(w, "GPU training in containers should work: run `dagger call train --gpu`")
	}
	return problems
}
