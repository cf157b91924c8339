//go:build tools

// Package tools pins the ko and crane CLIs (built by build.sh) in this
// module's go.sum.
package tools

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
	_ "github.com/google/ko"
)
