package main

import (
	"github.com/spf13/cobra"

	"github.com/modelci/modelci/serve"
)

// newServeCmd is serve.Main, the image's own server (cmd/modelci-serve),
// under the CLI: its flags are parsed there, so the two cannot drift.
func newServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve [--model DIR] [--addr HOST:PORT] [--role predict|preprocess|all] [flags]",
		Short: "Serve a model over HTTP (the server of every image modelci builds)",
		Long: `Serve a model: POST /predict and /process_data, GET /healthz, /readyz
and /metrics; the Open Inference Protocol (KServe V2) under /v2, KServe V1
under /v1/models, MLflow's POST /invocations and GET /ping (docs/serving.md).
Logs are JSON lines on stderr; the first says "listening" with the bound
address. SIGTERM or SIGINT drains in-flight requests and exits 0.
The image's entrypoint, /usr/local/bin/modelci-serve, is the same server with
the same flags; --help lists them.`,
		DisableFlagParsing: true,
		ValidArgsFunction:  completeServe,
		RunE: func(cmd *cobra.Command, a []string) error {
			if code := serve.Main(cmd.Context(), "modelci serve", a, cmd.ErrOrStderr()); code != 0 {
				return exitCode(code, nil) // serve.Main said why
			}
			return nil
		},
	}
}
