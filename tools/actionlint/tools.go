//go:build tools

// Package tools pins the actionlint CLI (built by build.sh) in this
// module's go.sum.
package tools

import _ "github.com/rhysd/actionlint/cmd/actionlint"
