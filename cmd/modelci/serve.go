package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/serve"
)

func newServeCmd() *cobra.Command {
	var (
		dir      string
		addr     string
		role     roleFlag = roleFlag(serve.RoleAll)
		maxBody  int64
		timeouts serve.Timeouts
		debug    bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a built-in model over HTTP (the runtime of every built-in image)",
		Long: `Serve a built-in model: POST /predict and /process_data, GET /healthz, /readyz
and /metrics. Logs are JSON lines on stderr; the first says "listening" with
the bound address. SIGTERM or SIGINT drains in-flight requests and exits 0.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if debug {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			m, err := serve.LoadModel(dir)
			if err != nil {
				return err
			}
			s, err := serve.New(m,
				serve.WithRole(serve.Role(role)),
				serve.WithMaxBodyBytes(maxBody),
				serve.WithLogger(log),
				serve.WithTimeouts(timeouts),
			)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
			defer stop()
			return s.ListenAndServe(ctx, addr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "model", "/model", "model directory (holds model.json)")
	f.StringVar(&addr, "addr", ":8080", "listen address; port 0 picks a free port")
	f.Var(&role, "role", "endpoints to serve: predict, preprocess or all")
	f.Int64Var(&maxBody, "max-body-bytes", serve.DefaultMaxBodyBytes, "request body limit; larger bodies get 413")
	f.DurationVar(&timeouts.Read, "read-timeout", 0, "limit on reading a whole request (0: 30s)")
	f.DurationVar(&timeouts.Write, "write-timeout", 0, "limit on writing a response (0: 30s)")
	f.DurationVar(&timeouts.Idle, "idle-timeout", 0, "keep-alive idle limit (0: 120s)")
	f.DurationVar(&timeouts.Shutdown, "shutdown-timeout", 0, "limit on draining in-flight requests at shutdown (0: 25s)")
	f.BoolVar(&debug, "debug", false, "log every failed request")
	return cmd
}

// roleFlag makes a bad --role a flag parse error, so the root reports it as usage.
type roleFlag serve.Role

func (r *roleFlag) String() string { return string(*r) }
func (r *roleFlag) Type() string   { return "role" }
func (r *roleFlag) Set(s string) error {
	v, err := serve.ParseRole(s)
	if err != nil {
		return err
	}
	*r = roleFlag(v)
	return nil
}
