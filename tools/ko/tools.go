//go:build tools

// Package tools pins the ko CLI (built by build.sh) in this module's
// go.sum.
package tools

import _ "github.com/google/ko"
