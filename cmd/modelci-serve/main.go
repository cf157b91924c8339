// Command modelci-serve is the model server baked into modelci's images: a
// small static binary that links the server and the model formats only
// (no cosign, client-go, go-containerregistry or cobra), started as
//
//	/usr/local/bin/modelci-serve --model /model --addr :8080 [--role predict|preprocess|all]
//
// `modelci serve` runs the same server with the same flags.
package main

import (
	"context"
	"os"

	"github.com/modelci/modelci/serve"
)

func main() {
	os.Exit(serve.Main(context.Background(), "modelci-serve", os.Args[1:], os.Stderr))
}
