package main

import (
	"errors"
	"log/slog"
	"net"

	"github.com/spf13/cobra"

	"github.com/modelci/modelci/stages/registry"
)

func newRegistryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run an embedded OCI registry for local use",
		Args:  args(cobra.NoArgs),
	}
	cmd.AddCommand(newRegistryServeCmd())
	return cmd
}

func newRegistryServeCmd() *cobra.Command {
	var (
		addr, root  string
		logRequests bool
	)
	cmd := &cobra.Command{
		Use:   "serve --root DIR [--addr HOST:PORT]",
		Short: "Serve the OCI distribution API from a directory",
		Long: `Serve the OCI distribution API from DIR: blobs and manifests are kept on
disk, so they survive a restart. Logs are JSON lines on stderr; the first
says "listening" with the bound address (--addr 127.0.0.1:0 picks a free
port). SIGTERM or SIGINT stops it gracefully.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if root == "" {
				return usageError(errors.New("registry serve: --root is required"))
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			opts := []registry.ServeOption{registry.OnListen(func(a net.Addr) {
				log.Info("listening", "addr", a.String(), "root", root)
			})}
			if logRequests {
				opts = append(opts, registry.WithRequestLog(cmd.ErrOrStderr()))
			}
			if err := registry.Serve(cmd.Context(), addr, root, opts...); err != nil {
				return err
			}
			log.Info("stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:5000", "listen address; port 0 picks a free port")
	f.StringVar(&root, "root", "", "directory holding blobs and manifests (created if missing)")
	f.BoolVar(&logRequests, "log-requests", false, "log every request to stderr")
	return cmd
}
