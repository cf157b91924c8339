//go:build tools

// Package tools records the commands build.sh builds, so that go.mod and
// go.sum hold everything they need.
package tools

import (
	_ "github.com/dagger/dagger/cmd/codegen"
	_ "github.com/dagger/dagger/cmd/dagger"
	_ "github.com/dagger/dagger/cmd/dnsname"
	_ "github.com/dagger/dagger/cmd/engine"
	_ "github.com/dagger/dagger/cmd/init"
)
