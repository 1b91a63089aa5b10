// Package service is the skeleton every Herald binary shares: the common
// flags, the dependencies built from them (logger, metrics registry,
// PostgreSQL pool, Pub/Sub client), the HTTP endpoints, and a run group with
// a soft-then-hard shutdown.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/sync/errgroup"

	"herald/shared/config"
	"herald/shared/httpserver"
	"herald/shared/messaging"
	"herald/shared/pgdb"
	"herald/shared/telemetry"
)

// Common is the configuration every service has.
type Common struct {
	HTTPAddr     string
	DatabaseURL  string
	DBMaxConns   int
	Pubsub       messaging.Config
	LogLevel     string
	Grace        time.Duration
	MigrateOnRun bool
	Trace        telemetry.TraceConfig
	Profiling    bool
}

// Define declares the common flags on s.
func (c *Common) Define(s *config.Set, defaultAddr string) {
	s.String(&c.HTTPAddr, "http-addr", "HERALD_HTTP_ADDR", defaultAddr, "address for the HTTP endpoints (health, metrics, API)")
	s.Secret(&c.DatabaseURL, "database-url", "HERALD_DATABASE_URL", "", "PostgreSQL URL")
	s.Int(&c.DBMaxConns, "db-max-conns", "HERALD_DB_MAX_CONNS", 16, "maximum PostgreSQL connections")
	s.String(&c.Pubsub.Project, "pubsub-project", "HERALD_PUBSUB_PROJECT", "herald-local", "Google Cloud project of the Pub/Sub topics")
	s.String(&c.Pubsub.EmulatorHost, "pubsub-emulator-host", "PUBSUB_EMULATOR_HOST", "", "host:port of a Pub/Sub emulator; empty for Google Cloud")
	s.String(&c.LogLevel, "log-level", "HERALD_LOG_LEVEL", "info", "debug, info, warn or error")
	s.Duration(&c.Grace, "shutdown-grace", "HERALD_SHUTDOWN_GRACE", 20*time.Second, "how long a shutdown waits for in-flight work before abandoning it")
	s.Bool(&c.MigrateOnRun, "migrate", "HERALD_MIGRATE", false, "apply schema migrations at start (otherwise run the migrate command once per release)")
	s.String(&c.Trace.Endpoint, "otlp-endpoint", "HERALD_OTLP_ENDPOINT", "", "OTLP/HTTP endpoint for traces, e.g. http://collector:4318; empty: trace context flows but spans are not exported")
	s.Float(&c.Trace.Sample, "trace-sample", "HERALD_TRACE_SAMPLE", 1, "share of new traces kept (0 to 1)")
	s.Bool(&c.Profiling, "pprof", "HERALD_PPROF", false, "serve Go's profiles under /debug/pprof/ on -http-addr (for a profiling session; never expose them)")
	s.Duration(&c.Trace.FlushEvery, "trace-flush", "HERALD_TRACE_FLUSH", 5*time.Second, "how often buffered spans are exported")
}

func (c *Common) validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("-database-url (HERALD_DATABASE_URL) is required"))
	}
	if c.Grace <= 0 {
		errs = append(errs, errors.New("-shutdown-grace must be positive"))
	}
	if c.DBMaxConns < 2 {
		errs = append(errs, errors.New("-db-max-conns must be at least 2"))
	}
	if c.Trace.Sample < 0 || c.Trace.Sample > 1 {
		errs = append(errs, errors.New("-trace-sample must be between 0 and 1"))
	}
	return errors.Join(errs...)
}

// Process holds a running service's dependencies.
type Process struct {
	Name     string
	Log      *slog.Logger
	Registry *prometheus.Registry
	DB       *pgxpool.Pool
	Pubsub   *pubsub.Client
	tracing  *sdktrace.TracerProvider
	common   Common
}

// Start builds the dependencies of the service name from c, logging the
// effective configuration once (secrets masked). Pub/Sub is connected only
// when withPubsub is set.
func Start(ctx context.Context, name string, c Common, set *config.Set, stdout io.Writer, withPubsub bool) (*Process, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	log, err := telemetry.NewLogger(stdout, name, c.LogLevel)
	if err != nil {
		return nil, err
	}
	log.InfoContext(ctx, "starting", "config", set.LogValue())
	p := &Process{Name: name, Log: log, Registry: telemetry.NewRegistry(), common: c}
	if p.tracing, err = telemetry.NewTracing(ctx, name, c.Trace); err != nil {
		return nil, err
	}
	p.DB, err = pgdb.Connect(ctx, c.DatabaseURL, c.DBMaxConns)
	if err != nil {
		return nil, err
	}
	if c.MigrateOnRun {
		if err := pgdb.Migrate(ctx, p.DB, log); err != nil {
			p.Close()
			return nil, err
		}
	}
	if withPubsub {
		p.Pubsub, err = messaging.Connect(ctx, c.Pubsub)
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// Close releases the dependencies and flushes telemetry, last.
func (p *Process) Close() {
	if p.Pubsub != nil {
		_ = p.Pubsub.Close()
	}
	if p.DB != nil {
		p.DB.Close()
	}
	if p.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.tracing.Shutdown(ctx); err != nil {
			p.Log.Warn("flush traces", "error", err)
		}
	}
}

// Loop is one long-running part of a service. It must return soon after ctx
// is done (stop taking new work) and finish work in flight on workCtx, which
// is cancelled only when the grace period runs out.
type Loop func(ctx, workCtx context.Context) error

// Run serves the HTTP endpoints (routes may be nil) and runs the loops until
// ctx is done or one of them fails. Shutdown is soft first: loops stop taking
// work and get the grace period to finish; then workCtx is cancelled.
func (p *Process) Run(ctx context.Context, routes http.Handler, loops ...Loop) error {
	srv, err := httpserver.Listen(httpserver.Config{
		Addr:      p.common.HTTPAddr,
		Registry:  p.Registry,
		Log:       p.Log,
		Routes:    routes,
		Profiling: p.common.Profiling,
		Ready: map[string]httpserver.Check{
			"postgres": func(ctx context.Context) error { return pgdb.SchemaCurrent(ctx, p.DB) },
		},
	})
	if err != nil {
		return err
	}
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	g, gctx := errgroup.WithContext(ctx)
	go func() {
		<-gctx.Done()
		p.Log.Info("shutting down", "grace", p.common.Grace)
		t := time.NewTimer(p.common.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			p.Log.Warn("grace period over, abandoning in-flight work")
			cancelWork()
		case <-workCtx.Done():
		}
	}()
	g.Go(func() error { return srv.Serve(gctx, p.common.Grace) })
	for _, loop := range loops {
		g.Go(func() error { return loop(gctx, workCtx) })
	}
	err = g.Wait()
	cancelWork()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	p.Log.Info("stopped")
	return nil
}

// Migrate is the `migrate` command every binary has: it applies the schema
// and exits.
func Migrate(ctx context.Context, name string, args []string, getenv func(string) string, stdout io.Writer) error {
	var c Common
	set := config.New(name+" migrate", getenv)
	c.Define(set, ":0")
	if err := set.Parse(args); err != nil {
		return err
	}
	if c.DatabaseURL == "" {
		return errors.New("-database-url (HERALD_DATABASE_URL) is required")
	}
	log, err := telemetry.NewLogger(stdout, name, c.LogLevel)
	if err != nil {
		return err
	}
	pool, err := pgdb.Connect(ctx, c.DatabaseURL, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pgdb.Migrate(ctx, pool, log); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	log.InfoContext(ctx, "schema up to date")
	return nil
}
