// Command receiver serves Segment webhooks and forwards the events to the configured targets.
// It must not link client-go: it has no business with the Kubernetes API (see main_test.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/segment-webhook-operator/segment-webhook-operator/internal/version"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver"
	"github.com/segment-webhook-operator/segment-webhook-operator/receiver/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: tests call it with their own context and arguments.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("receiver", flag.ContinueOnError)
	flags.SetOutput(stderr)
	configPath := flags.String("config", filepath.Join(config.DefaultConfigDirectory, config.FileName), "path of the receiver config file")
	drainDelay := flags.Duration("drain-delay", 5*time.Second, "how long to keep serving while unready after SIGTERM, so load balancers stop sending")
	shutdownTimeout := flags.Duration("shutdown-timeout", receiver.DefaultShutdownTimeout, "how long to wait for in-flight requests after draining")
	logLevel := flags.String("log-level", "info", "debug, info, warn or error")
	addr := flags.String("addr", "", "listen address for the webhook, overriding the config port (for local runs)")
	metricsAddr := flags.String("metrics-addr", "", "listen address for metrics, overriding the config metrics port")
	showVersion := flags.Bool("version", false, "print the version, git commit and Go version, and exit")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Line("receiver"))
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "invalid --log-level %q: %v\n", *logLevel, err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	server, err := receiver.NewServer(*configPath, receiver.Options{
		Logger:          logger,
		Addr:            *addr,
		MetricsAddr:     *metricsAddr,
		DrainDelay:      *drainDelay,
		ShutdownTimeout: *shutdownTimeout,
	})
	if err != nil {
		logger.Error("cannot start", "error", err)
		return 1
	}
	logger.Info("receiver listening", "addr", server.Addr(), "metricsAddr", server.MetricsAddr(), "config", *configPath)
	if err := server.Run(ctx); err != nil {
		logger.Error("shutdown", "error", err)
		return 1
	}
	return 0
}
