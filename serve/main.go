package serve

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes of Main, as every modelci command has them.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Main is the model server's command line, shared by the image's own
// binary (cmd/modelci-serve, which links nothing but this package and the
// model) and `modelci serve`: it parses args (without the program name),
// loads the model and serves until SIGTERM or SIGINT, logging JSON lines to
// stderr. It returns the process's exit code: 0 after a graceful stop, 2
// for bad flags, 1 otherwise.
func Main(ctx context.Context, name string, args []string, stderr io.Writer) int {
	var (
		dir      string
		addr     string
		role     = RoleAll
		maxBody  int64
		timeouts Timeouts
		debug    bool
	)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: %s [--model DIR] [--addr HOST:PORT] [--role predict|preprocess|all] [flags]

Serves a model: POST /predict and /process_data, GET /healthz, /readyz and
/metrics; the Open Inference Protocol (KServe V2) under /v2, KServe V1 under
/v1/models, MLflow's POST /invocations and GET /ping (docs/serving.md).
Logs are JSON lines on stderr; the first says "listening" with the bound
address. SIGTERM or SIGINT drains in-flight requests and exits 0.

`, name)
		fs.PrintDefaults()
	}
	fs.StringVar(&dir, "model", "/model", "model directory (holds model.json, or model.onnx with modelci.json)")
	fs.StringVar(&addr, "addr", ":8080", "listen address; port 0 picks a free port")
	fs.Func("role", "endpoints to serve: predict, preprocess or all (default all)", func(s string) error {
		r, err := ParseRole(s)
		role = r
		return err
	})
	fs.Int64Var(&maxBody, "max-body-bytes", DefaultMaxBodyBytes, "request body limit; larger bodies get 413")
	fs.DurationVar(&timeouts.Read, "read-timeout", 0, "limit on reading a whole request (0: 30s)")
	fs.DurationVar(&timeouts.Write, "write-timeout", 0, "limit on writing a response (0: 30s)")
	fs.DurationVar(&timeouts.Idle, "idle-timeout", 0, "keep-alive idle limit (0: 120s)")
	fs.DurationVar(&timeouts.Shutdown, "shutdown-timeout", 0, "limit on draining in-flight requests at shutdown (0: 25s)")
	fs.BoolVar(&debug, "debug", false, "log every failed request")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		return exitUsage
	}

	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	fail := func(err error) int {
		log.Error(err.Error())
		return exitError
	}
	s, err := Open(dir, WithRole(role), WithMaxBodyBytes(maxBody), WithLogger(log), WithTimeouts(timeouts))
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := s.ListenAndServe(ctx, addr); err != nil {
		return fail(err)
	}
	return exitOK
}
