// Package planner turns accepted jobs into recipient batches on the
// recommend topic. It works off the outbox rows that job acceptance commits,
// streams each job's audience from PostgreSQL page by page (memory does not
// grow with the audience), publishes a batch per page, and checkpoints after
// every confirmed chunk so that a restarted planner resumes instead of
// starting over. A crash between publish and checkpoint republishes at most
// one chunk; dispatch's ledger makes those duplicates harmless.
package planner

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

var (
	//go:embed sql/lease_task.sql
	leaseTaskSQL string
	//go:embed sql/load_job.sql
	loadJobSQL string
	//go:embed sql/audience_all.sql
	audienceAllSQL string
	//go:embed sql/audience_ids.sql
	audienceIDsSQL string
	//go:embed sql/checkpoint.sql
	checkpointSQL string
	//go:embed sql/finish.sql
	finishSQL string
	//go:embed sql/release.sql
	releaseSQL string
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
}

// Planner plans jobs.
type Planner struct {
	db      *pgxpool.Pool
	pub     Publisher
	log     *slog.Logger
	cfg     Config
	owner   string
	wake    chan struct{}
	batches prometheus.Counter
	planned prometheus.Counter
	jobs    prometheus.Counter
}

// New returns a planner.
func New(db *pgxpool.Pool, pub Publisher, log *slog.Logger, reg prometheus.Registerer, cfg Config) *Planner {
	f := promauto.With(reg)
	return &Planner{
		db: db, pub: pub, log: log, cfg: cfg,
		owner: uuid.NewString(),
		wake:  make(chan struct{}, 1),
		batches: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_planner_batches_published_total", Help: "Recipient batches published to the recommend topic.",
		}),
		planned: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_planner_recipients_published_total", Help: "Recipients published to the recommend topic.",
		}),
		jobs: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_planner_jobs_planned_total", Help: "Jobs whose whole audience has been published.",
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
	if _, err := conn.Exec(ctx, "LISTEN herald_outbox"); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		p.poke()
	}
}

func (p *Planner) poke() {
	select {
	case p.wake <- struct{}{}:
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

// task is a leased outbox row.
type task struct {
	id     int64
	tenant string
	job    uuid.UUID
}

// planNext leases one task and plans it; it reports whether there was one.
func (p *Planner) planNext(ctx, workCtx context.Context) (bool, error) {
	var t task
	err := p.db.QueryRow(ctx, leaseTaskSQL, p.owner, p.cfg.Lease.Seconds()).Scan(&t.id, &t.tenant, &t.job)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease planning task: %w", err)
	}
	err = p.plan(ctx, workCtx, t)
	if err != nil {
		// Hand the task back so it is retried without waiting out the lease.
		if _, rerr := p.db.Exec(workCtx, releaseSQL, t.id, p.owner); rerr != nil {
			p.log.WarnContext(workCtx, "release planning task", "job_id", t.job, "error", rerr)
		}
	}
	return true, err
}

// jobPlan is what planning needs to know about a job.
type jobPlan struct {
	header   *eventv1.Job
	audience struct {
		CustomerIDs []string `json:"customer_ids"`
	}
	traceparent string
	cursor      string
	nextSeq     int64
	planned     int64
}

var errShutdown = errors.New("planning interrupted by shutdown")

func (p *Planner) plan(ctx, workCtx context.Context, t task) error {
	j, err := p.loadJob(workCtx, t)
	if err != nil {
		return err
	}
	log := p.log.With("tenant_id", t.tenant, "job_id", t.job)
	if j.nextSeq == 0 {
		log.InfoContext(workCtx, "planning job")
	} else {
		log.InfoContext(workCtx, "resuming planning", "batch_seq", j.nextSeq, "planned", j.planned)
	}
	for {
		if ctx.Err() != nil {
			return errShutdown
		}
		more, err := p.publishChunk(workCtx, t, j)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	tag, err := p.db.Exec(workCtx, finishSQL, t.id, p.owner)
	if err != nil {
		return fmt.Errorf("finish planning: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errors.New("planning lease lost before finishing")
	}
	p.jobs.Inc()
	log.InfoContext(workCtx, "job planned", "recipients", j.planned, "batches", j.nextSeq)
	return nil
}

func (p *Planner) loadJob(ctx context.Context, t task) (*jobPlan, error) {
	j := &jobPlan{header: &eventv1.Job{TenantId: t.tenant, JobId: t.job.String()}}
	var audience []byte
	var submitted, deadline time.Time
	var tv, products int32
	err := p.db.QueryRow(ctx, loadJobSQL, t.tenant, t.job).Scan(&j.header.Channel, &j.header.TemplateId, &tv,
		&audience, &products, &j.header.Campaign, &submitted, &deadline, &j.traceparent, &j.cursor, &j.nextSeq, &j.planned)
	if err != nil {
		return nil, fmt.Errorf("load job: %w", err)
	}
	if err := json.Unmarshal(audience, &j.audience); err != nil {
		return nil, fmt.Errorf("decode audience: %w", err)
	}
	j.header.TemplateVersion = tv
	j.header.ProductsPerMessage = products
	j.header.SubmittedAt = timestamppb.New(submitted)
	j.header.Deadline = timestamppb.New(deadline)
	return j, nil
}

// publishChunk publishes up to ChunkBatches batches after j's cursor, waits
// until Pub/Sub has them all, then checkpoints. It reports whether the
// audience may have more.
func (p *Planner) publishChunk(ctx context.Context, t task, j *jobPlan) (bool, error) {
	var results []*pubsub.PublishResult
	cursor, seq, planned := j.cursor, j.nextSeq, j.planned
	more := true
	for len(results) < p.cfg.ChunkBatches {
		recipients, err := p.page(ctx, t.tenant, j, cursor)
		if err != nil {
			return false, err
		}
		if len(recipients) > 0 {
			header := proto.CloneOf(j.header)
			header.Seq = seq
			res, err := p.pub.Publish(ctx, &eventv1.RecommendBatch{Job: header, Recipients: recipients}, j.traceparent)
			if err != nil {
				return false, err
			}
			results = append(results, res)
			cursor = recipients[len(recipients)-1].CustomerId
			seq++
			planned += int64(len(recipients))
		}
		if len(recipients) < p.cfg.BatchSize {
			more = false
			break
		}
	}
	for _, res := range results {
		if _, err := res.Get(ctx); err != nil {
			return false, fmt.Errorf("publish batch: %w", err)
		}
	}
	if len(results) > 0 {
		tag, err := p.db.Exec(ctx, checkpointSQL, t.id, p.owner, p.cfg.Lease.Seconds(), cursor, seq, planned)
		if err != nil {
			return false, fmt.Errorf("checkpoint planning: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return false, errors.New("planning lease lost")
		}
		p.batches.Add(float64(len(results)))
		p.planned.Add(float64(planned - j.planned))
	}
	j.cursor, j.nextSeq, j.planned = cursor, seq, planned
	return more, nil
}

func (p *Planner) page(ctx context.Context, tenant string, j *jobPlan, after string) ([]*eventv1.Recipient, error) {
	var rows pgx.Rows
	if len(j.audience.CustomerIDs) > 0 {
		rows, _ = p.db.Query(ctx, audienceIDsSQL, tenant, after, p.cfg.BatchSize, j.audience.CustomerIDs)
	} else {
		rows, _ = p.db.Query(ctx, audienceAllSQL, tenant, after, p.cfg.BatchSize)
	}
	recipients := make([]*eventv1.Recipient, 0, p.cfg.BatchSize)
	for rows.Next() {
		r := &eventv1.Recipient{}
		if err := rows.Scan(&r.CustomerId, &r.Email, &r.FirstName, &r.LastName, &r.Locale); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read audience: %w", err)
		}
		recipients = append(recipients, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audience: %w", err)
	}
	return recipients, nil
}
