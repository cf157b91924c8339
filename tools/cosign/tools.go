//go:build tools

// Package tools pins the cosign CLI (built by build.sh) in this module's
// go.sum.
package tools

import _ "github.com/sigstore/cosign/v2/cmd/cosign"
