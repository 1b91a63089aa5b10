// Package planner turns accepted jobs into recipient batches on the
// recommend topic. Planning works off the outbox rows that job acceptance
// commits: it streams each job's audience ids from PostgreSQL page by page
// (memory does not grow with the audience) and records a batch of ids per
// page, checkpointing with every chunk so that a restarted planner resumes
// instead of starting over (plan.go). The releaser publishes recorded
// batches within the in-flight window, reading their customers as it does,
// and the re-driver publishes again the batches of stalled jobs; both go
// through one loop (release.go). A crash between publish and marking a
// batch published publishes it again; dispatch's ledger makes those
// duplicates harmless.
package planner

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/shared/event"
)

// Publisher is where batches go (messaging.Publisher in production).
type Publisher interface {
	Publish(ctx context.Context, b event.Batch, traceparent string) (*pubsub.PublishResult, error)
}

// Config tunes planning.
type Config struct {
	// BatchSize is recipients per batch message.
	BatchSize int
	// ChunkBatches is how many batches are published between checkpoints.
	ChunkBatches int
	// Workers is how many jobs are planned at once, so a small job is not
	// queued behind a large one's planning.
	Workers int
	// Lease is how long a task stays with a planner without a checkpoint.
	Lease time.Duration
	// Poll is the fallback interval when no notification arrives.
	Poll time.Duration
	// Stall is how long a job may make no progress before its unfinished
	// batches are published again.
	Stall time.Duration
	// MaxPublishes is how often one batch is published at the Stall
	// interval; after that, re-drives back off, doubling, and one more
	// follows the job's deadline so that what is left of it expires.
	MaxPublishes int
	// Window is how many batches may be in flight (published, not done)
	// in the whole pipeline, and JobWindow how many of them one job may
	// have: short queues let a new job start within seconds, and the
	// per-job cap leaves room for it beside a large one.
	Window    int
	JobWindow int
	// ReleaseEvery is how often released batches are topped up when no
	// batch completion wakes the releaser first.
	ReleaseEvery time.Duration
}

// Planner plans jobs.
type Planner struct {
	db      *pgxpool.Pool
	pub     Publisher
	log     *slog.Logger
	cfg     Config
	owner   string
	wake    chan struct{}
	freed   chan struct{}
	batches prometheus.Counter
	planned prometheus.Counter
	jobs    prometheus.Counter
	redrive prometheus.Counter
}

// New returns a planner.
func New(db *pgxpool.Pool, pub Publisher, log *slog.Logger, reg prometheus.Registerer, cfg Config) *Planner {
	f := promauto.With(reg)
	return &Planner{
		db: db, pub: pub, log: log, cfg: cfg,
		owner: uuid.NewString(),
		wake:  make(chan struct{}, 1),
		freed: make(chan struct{}, 1),
		batches: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_planner_batches_published_total", Help: "Recipient batches published to the recommend topic.",
		}),
		planned: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_planner_recipients_published_total", Help: "Recipients published to the recommend topic.",
		}),
		jobs: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_planner_jobs_planned_total", Help: "Jobs whose whole audience has been published.",
		}),
		redrive: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_planner_batches_redriven_total", Help: "Batches of stalled jobs published again.",
		}),
	}
}

// Run plans jobs until ctx is done. It wakes on the outbox notification that
// job acceptance sends and polls as a fallback. A job being planned at
// shutdown stops after its current chunk and is handed back.
func (p *Planner) Run(ctx, workCtx context.Context) error {
	done := make(chan error, p.cfg.Workers+1)
	go func() { done <- p.listen(ctx) }()
	for range p.cfg.Workers {
		go func() { done <- p.work(ctx, workCtx) }()
	}
	var errs []error
	for range p.cfg.Workers + 1 {
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Planner) listen(ctx context.Context) error {
	for ctx.Err() == nil {
		err := p.listenOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		p.log.WarnContext(ctx, "outbox listener lost, reconnecting", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (p *Planner) listenOnce(ctx context.Context) error {
	pooled, err := p.db.Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection stays in LISTEN state, so it must not go back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN herald_outbox; LISTEN herald_batches"); err != nil {
		return err
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case "herald_batches":
			signal(p.freed)
		default:
			p.poke()
		}
	}
}

func (p *Planner) poke() { signal(p.wake) }

// signal wakes whoever waits on c, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (p *Planner) work(ctx, workCtx context.Context) error {
	for ctx.Err() == nil {
		planned, err := p.planNext(ctx, workCtx)
		switch {
		case errors.Is(err, errShutdown):
			p.log.InfoContext(workCtx, "planning handed back at shutdown")
			return nil
		case errors.Is(err, errStopped):
			err = nil
		case err != nil:
			p.log.ErrorContext(ctx, "planning failed, retrying", "error", err)
		}
		if planned && err == nil {
			p.poke() // there may be more; let another worker look too
			continue
		}
		select {
		case <-ctx.Done():
		case <-p.wake:
		case <-time.After(p.cfg.Poll):
		}
	}
	return nil
}
