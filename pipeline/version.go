package pipeline

import "runtime/debug"

// version is modelci's version; releases set it with
// -ldflags "-X github.com/modelci/modelci/pipeline.version=v1.2.3".
var version = ""

// Version is modelci's version: the linker's, else the module's, else "(devel)".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
