package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the modelci version; releases set it with -ldflags -X.
var version = ""

func modelciVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// versionSchema names `modelci version -o json`'s document.
const versionSchema = "modelci.dev/version/v1"

// versionInfo is `modelci version -o json`: a flat object.
type versionInfo struct {
	Schema  string `json:"schema"`
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from (vcs.revision,
	// "+dirty" when the tree had changes); empty when the build was not
	// stamped (go run, go test, -buildvcs=false, a module download).
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func buildInfo() versionInfo {
	v := versionInfo{Schema: versionSchema, Version: modelciVersion(), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && v.Commit != "" {
		v.Commit += "+dirty"
	}
	return v
}

// writeVersion is the text of modelci version and modelci --version.
func writeVersion(w io.Writer, v versionInfo) error {
	commit := v.Commit
	if commit == "" {
		commit = "unknown (not stamped)"
	}
	_, err := fmt.Fprintf(w, "modelci %s\ncommit:   %s\ngo:       %s\nplatform: %s\n", v.Version, commit, v.GoVersion, v.Platform)
	return err
}

func newVersionCmd() *cobra.Command {
	var out outputOptions
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print modelci's version, commit, Go version and platform",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			if out.json() {
				return out.print(cmd, buildInfo())
			}
			return writeVersion(cmd.OutOrStdout(), buildInfo())
		},
	}
	out.AddFlags(cmd, "text or json ({schema, version, commit, go_version, platform})")
	return cmd
}
