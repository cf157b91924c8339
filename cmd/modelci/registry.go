package main

import (
	"errors"
	"fmt"
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
		addr, root, htpasswd, tlsCert, tlsKey    string
		logRequests, allowDelete, insecurePublic bool
	)
	cmd := &cobra.Command{
		Use:   "serve --root DIR [--addr HOST:PORT] [--htpasswd FILE] [--tls-cert F --tls-key F] [--allow-delete] [--insecure-public]",
		Short: "Serve the OCI distribution API from a directory",
		Long: `Serve the OCI distribution API from DIR: blobs and manifests are kept on
disk, so they survive a restart. It validates pushes as the distribution
registry does: blobs must hash to their digest, a manifest PUT by digest must
hash to it, and a manifest's blobs (and an index's manifests) must be in the
registry with the sizes it gives. A manifest is acknowledged once it is on
disk (fsynced). Deletes are refused unless --allow-delete.

--htpasswd requires HTTP basic authentication (bcrypt entries, htpasswd -B);
--tls-cert and --tls-key serve HTTPS. An address other machines can reach
(anything but loopback and localhost; ":5000" and 0.0.0.0 listen on every
interface) is refused without --htpasswd unless --insecure-public.

Logs are JSON lines on stderr: warnings, if any, then one saying "listening"
with the bound address (--addr 127.0.0.1:0 picks a free port). SIGTERM or
SIGINT stops it gracefully.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if root == "" {
				return usageError(errors.New("registry serve: --root is required"))
			}
			if (tlsCert == "") != (tlsKey == "") {
				return usageError(fmt.Errorf("registry serve: --tls-cert and --tls-key go together: %w", registry.ErrTLSConfig))
			}
			if registry.PublicAddress(addr) && htpasswd == "" && !insecurePublic {
				return usageError(fmt.Errorf("registry serve --addr %s: %w: pass --htpasswd FILE, or --insecure-public to let anyone who reaches it push",
					addr, registry.ErrPublicAddress))
			}
			log := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			switch {
			case registry.PublicAddress(addr) && htpasswd == "":
				log.Warn("serving without authentication on a non-loopback address (--insecure-public): anyone who reaches it can push", "addr", addr)
			case registry.PublicAddress(addr) && tlsCert == "":
				log.Warn("serving basic authentication over plain HTTP on a non-loopback address: passwords cross the network in clear; add --tls-cert and --tls-key", "addr", addr)
			}
			opts := []registry.ServeOption{
				registry.OnListen(func(a net.Addr) {
					log.Info("listening", "addr", a.String(), "root", root, "tls", tlsCert != "", "auth", htpasswd != "", "delete", allowDelete)
				}),
				registry.WithDelete(allowDelete),
				registry.WithInsecurePublic(insecurePublic),
			}
			if htpasswd != "" {
				opts = append(opts, registry.WithHtpasswd(htpasswd))
			}
			if tlsCert != "" {
				opts = append(opts, registry.WithTLS(tlsCert, tlsKey))
			}
			if logRequests {
				opts = append(opts, registry.WithRequestLog(cmd.ErrOrStderr()))
			}
			if err := registry.Serve(cmd.Context(), addr, root, opts...); err != nil {
				if errors.Is(err, registry.ErrHtpasswd) || errors.Is(err, registry.ErrPublicAddress) || errors.Is(err, registry.ErrTLSConfig) {
					return usageError(err)
				}
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
	f.StringVar(&htpasswd, "htpasswd", "", "require basic authentication against this htpasswd file (bcrypt entries only)")
	f.StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate (needs --tls-key)")
	f.StringVar(&tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	f.BoolVar(&allowDelete, "allow-delete", false, "allow DELETE of manifests and blobs")
	f.BoolVar(&insecurePublic, "insecure-public", false, "allow a non-loopback --addr without --htpasswd")
	return cmd
}
