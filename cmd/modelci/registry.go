package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelci/modelci/stages/registry"
)

// registryOpts holds the flags every command that talks to a registry
// shares: credentials and plain HTTP.
type registryOpts struct {
	username      string
	passwordStdin bool
	insecure      bool
}

// registryFlags adds --registry-username, --registry-password-stdin and
// --insecure-registry to fs.
func registryFlags(fs *pflag.FlagSet) *registryOpts {
	o := &registryOpts{}
	fs.StringVar(&o.username, "registry-username", "", "registry user name, with --registry-password-stdin (default: $"+registry.EnvUsername+" and $"+registry.EnvPassword+", else the Docker config)")
	fs.BoolVar(&o.passwordStdin, "registry-password-stdin", false, "read the registry password from stdin")
	fs.BoolVar(&o.insecure, "insecure-registry", false, "reach the registry over plain HTTP (loopback registries always are)")
	return o
}

// options returns the registry options the flags ask for, reading the
// password from stdin when asked; a half-given credential is a usage error.
func (o *registryOpts) options(stdin io.Reader) ([]registry.Option, error) {
	var opts []registry.Option
	if o.insecure {
		opts = append(opts, registry.WithInsecure())
	}
	user, pass, err := o.credentials(stdin)
	if err != nil || user == "" {
		return opts, err
	}
	return append(opts, registry.WithCredentials(user, pass)), nil
}

// credentials returns the user name and password the flags give (empty
// when none: the keychain or the environment then decide).
func (o *registryOpts) credentials(stdin io.Reader) (user, pass string, err error) {
	switch {
	case o.username == "" && !o.passwordStdin:
		return "", "", nil
	case o.username == "":
		return "", "", usageError(errors.New("--registry-password-stdin needs --registry-username"))
	case !o.passwordStdin:
		return "", "", usageError(errors.New("--registry-username needs --registry-password-stdin"))
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
	if err != nil {
		return "", "", fmt.Errorf("read registry password from stdin: %w", err)
	}
	pass = strings.TrimRight(string(b), "\r\n")
	if pass == "" {
		return "", "", usageError(errors.New("--registry-password-stdin: stdin is empty"))
	}
	return o.username, pass, nil
}

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
