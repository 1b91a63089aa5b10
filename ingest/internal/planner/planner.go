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
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/pgdb"
	"herald/shared/telemetry"
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
	//go:embed sql/insert_batches.sql
	insertBatchSQL string
	//go:embed sql/mark_published.sql
	markPublishedSQL string
	//go:embed sql/releasable.sql
	releasableSQL string
	//go:embed sql/release_lock.sql
	releaseLockSQL string
	//go:embed sql/recipients_by_id.sql
	recipientsByIDSQL string
	//go:embed sql/stalled_batches.sql
	stalledBatchesSQL string
	//go:embed sql/job_state.sql
	jobStateSQL string
	//go:embed sql/audience_segment.sql
	audienceSegmentSQL string
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
		// SegmentPath is a segment audience's SQL/JSON path predicate.
		SegmentPath string `json:"segment_path"`
	}
	traceparent string
	cursor      string
	nextSeq     int64
	planned     int64
}

var errShutdown = errors.New("planning interrupted by shutdown")

// errStopped means the partner paused or cancelled the job while it was
// being planned.
var errStopped = errors.New("planning stopped: job paused or cancelled")

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
		// A paused job's task is handed back (and not leased again until
		// the job is resumed); a cancelled job's task is already gone.
		var state string
		if err := p.db.QueryRow(workCtx, jobStateSQL, t.tenant, t.job).Scan(&state); err != nil {
			return fmt.Errorf("read job state: %w", err)
		}
		if state != "active" {
			log.InfoContext(workCtx, "planning stopped", "state", state, "planned", j.planned)
			return errStopped
		}
		more, err := p.planChunk(workCtx, t, j)
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
	var picking, quiet []byte
	var tv, products int32
	err := p.db.QueryRow(ctx, loadJobSQL, t.tenant, t.job).Scan(&j.header.Channel, &j.header.TemplateId, &tv,
		&audience, &products, &j.header.Campaign, &submitted, &deadline, &j.traceparent, &j.cursor, &j.nextSeq, &j.planned, &picking, &quiet)
	if err != nil {
		return nil, fmt.Errorf("load job: %w", err)
	}
	if picking != nil {
		j.header.Picking = &eventv1.Picking{}
		if err := protojson.Unmarshal(picking, j.header.Picking); err != nil {
			return nil, fmt.Errorf("decode picking: %w", err)
		}
	}
	if quiet != nil {
		j.header.QuietHours = &eventv1.QuietHours{}
		if err := protojson.Unmarshal(quiet, j.header.QuietHours); err != nil {
			return nil, fmt.Errorf("decode quiet hours: %w", err)
		}
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

// planChunk reads up to ChunkBatches pages of the audience after j's
// cursor and records them as batches together with the advanced cursor in
// one transaction; the releaser publishes them. It reports whether the
// audience may have more.
func (p *Planner) planChunk(ctx context.Context, t task, j *jobPlan) (bool, error) {
	var batches []*eventv1.RecommendBatch
	cursor, seq, planned := j.cursor, j.nextSeq, j.planned
	more := true
	for len(batches) < p.cfg.ChunkBatches {
		recipients, err := p.page(ctx, t.tenant, j, cursor)
		if err != nil {
			return false, err
		}
		if len(recipients) > 0 {
			batches = append(batches, j.batch(seq, recipients))
			cursor = recipients[len(recipients)-1].CustomerId
			seq++
			planned += int64(len(recipients))
		}
		if len(recipients) < p.cfg.BatchSize {
			more = false
			break
		}
	}
	if len(batches) == 0 {
		return false, nil
	}
	err := pgdb.InTx(ctx, p.db, func(tx pgx.Tx) error {
		q := &pgx.Batch{}
		for _, b := range batches {
			q.Queue(insertBatchSQL, t.tenant, t.job, b.Job.Seq, customerIDs(b.Recipients))
		}
		checkpoint := q.Queue(checkpointSQL, pgx.StrictNamedArgs{
			"task": t.id, "owner": p.owner, "lease_seconds": p.cfg.Lease.Seconds(),
			"cursor": cursor, "next_seq": seq, "planned": planned,
		})
		var lost bool
		checkpoint.Exec(func(tag pgconn.CommandTag) error {
			lost = tag.RowsAffected() == 0
			return nil
		})
		if err := tx.SendBatch(ctx, q).Close(); err != nil {
			return fmt.Errorf("record planned batches: %w", err)
		}
		if lost {
			return errors.New("planning lease lost")
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	signal(p.freed)
	p.planned.Add(float64(planned - j.planned))
	j.cursor, j.nextSeq, j.planned = cursor, seq, planned
	return more, nil
}

// execer runs a statement on a pool or in a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// publish sends recorded batches and notes, through db, when Pub/Sub has
// them all.
func (p *Planner) publish(ctx context.Context, db execer, tenant string, j *jobPlan, batches []*eventv1.RecommendBatch) error {
	results := make([]*pubsub.PublishResult, 0, len(batches))
	seqs := make([]int64, 0, len(batches))
	spans := make([]trace.Span, 0, len(batches))
	defer func() {
		for _, s := range spans {
			s.End()
		}
	}()
	for _, b := range batches {
		// Each batch's journey starts here, in its job's trace.
		bctx, span := telemetry.Tracer().Start(telemetry.WithTraceparent(ctx, j.traceparent), "release batch",
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(append(telemetry.JobAttributes(tenant, b.Job.JobId, b.Job.Deadline.AsTime()),
				attribute.Int64("herald.batch_seq", b.Job.Seq), attribute.Int("herald.recipients", len(b.Recipients)))...))
		spans = append(spans, span)
		res, err := p.pub.Publish(bctx, b, j.traceparent)
		if err != nil {
			return err
		}
		results = append(results, res)
		seqs = append(seqs, b.Job.Seq)
	}
	for _, res := range results {
		if _, err := res.Get(ctx); err != nil {
			return fmt.Errorf("publish batch: %w", err)
		}
	}
	if _, err := db.Exec(ctx, markPublishedSQL, tenant, j.header.JobId, seqs); err != nil {
		return fmt.Errorf("mark batches published: %w", err)
	}
	p.batches.Add(float64(len(batches)))
	return nil
}

// Release publishes recorded batches within the window (see Config),
// earliest deadline first, whenever a batch completes, planning records
// more, or ReleaseEvery passes.
func (p *Planner) Release(ctx, workCtx context.Context) error {
	t := time.NewTicker(p.cfg.ReleaseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.freed:
		}
		n, err := p.releaseOnce(workCtx)
		if err != nil {
			p.log.ErrorContext(ctx, "release batches", "error", err)
			continue
		}
		if n > 0 {
			signal(p.freed) // there may be room for more
		}
	}
}

func (p *Planner) releaseOnce(ctx context.Context) (int, error) {
	released := 0
	err := pgdb.InTx(ctx, p.db, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, releaseLockSQL).Scan(&mine); err != nil || !mine {
			return err // another replica is releasing
		}
		rows, _ := tx.Query(ctx, releasableSQL, p.cfg.Window, p.cfg.JobWindow)
		type recorded struct {
			tenant string
			job    uuid.UUID
			seq    int64
			ids    []string
		}
		batches, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (recorded, error) {
			var b recorded
			return b, r.Scan(&b.tenant, &b.job, &b.seq, &b.ids)
		})
		if err != nil {
			return fmt.Errorf("find batches to release: %w", err)
		}
		jobs := map[uuid.UUID]*jobPlan{}
		out := map[uuid.UUID][]*eventv1.RecommendBatch{}
		for _, b := range batches {
			j, ok := jobs[b.job]
			if !ok {
				if j, err = p.loadJob(ctx, task{tenant: b.tenant, job: b.job}); err != nil {
					return err
				}
				jobs[b.job] = j
			}
			recipients, err := p.recipients(ctx, b.tenant, b.ids)
			if err != nil {
				return err
			}
			out[b.job] = append(out[b.job], j.batch(b.seq, recipients))
		}
		for id, bs := range out {
			if err := p.publish(ctx, tx, jobs[id].header.TenantId, jobs[id], bs); err != nil {
				return err
			}
			released += len(bs)
		}
		return nil
	})
	return released, err
}

// batch builds batch seq of j.
func (j *jobPlan) batch(seq int64, recipients []*eventv1.Recipient) *eventv1.RecommendBatch {
	header := proto.CloneOf(j.header)
	header.Seq = seq
	return &eventv1.RecommendBatch{Job: header, Recipients: recipients}
}

func customerIDs(rs []*eventv1.Recipient) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.CustomerId
	}
	return ids
}

func (p *Planner) recipients(ctx context.Context, tenant string, ids []string) ([]*eventv1.Recipient, error) {
	rows, _ := p.db.Query(ctx, recipientsByIDSQL, tenant, ids)
	return scanRecipients(rows, len(ids))
}

func (p *Planner) page(ctx context.Context, tenant string, j *jobPlan, after string) ([]*eventv1.Recipient, error) {
	var rows pgx.Rows
	args := pgx.StrictNamedArgs{"tenant": tenant, "channel": j.header.Channel, "after": after, "page_size": p.cfg.BatchSize}
	switch {
	case len(j.audience.CustomerIDs) > 0:
		args["customer_ids"] = j.audience.CustomerIDs
		rows, _ = p.db.Query(ctx, audienceIDsSQL, args)
	case j.audience.SegmentPath != "":
		args["segment_path"] = j.audience.SegmentPath
		rows, _ = p.db.Query(ctx, audienceSegmentSQL, args)
	default:
		rows, _ = p.db.Query(ctx, audienceAllSQL, args)
	}
	return scanRecipients(rows, p.cfg.BatchSize)
}

func scanRecipients(rows pgx.Rows, capacity int) ([]*eventv1.Recipient, error) {
	recipients := make([]*eventv1.Recipient, 0, capacity)
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

// Redrive publishes again, every few seconds, the unfinished batches of jobs
// that have stalled: Pub/Sub delivers at least once while a message is in
// its subscription, but a message can still go missing for a job — dead-
// lettered after repeated failures, or lost by a faulty broker. After
// MaxPublishes publishes a batch is re-driven at doubling intervals, and
// once more when its job's deadline has passed, so that a job never waits
// forever on recipients that were deferred: by then they expire.
func (p *Planner) Redrive(ctx, workCtx context.Context) error {
	t := time.NewTicker(max(p.cfg.Stall/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := p.redriveOnce(workCtx); err != nil {
				p.log.ErrorContext(ctx, "re-drive stalled batches", "error", err)
			}
		}
	}
}

func (p *Planner) redriveOnce(ctx context.Context) error {
	return pgdb.InTx(ctx, p.db, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, stalledBatchesSQL, p.cfg.Stall.Seconds(), 100, p.cfg.MaxPublishes)
		type stalled struct {
			tenant    string
			job       uuid.UUID
			seq       int64
			ids       []string
			publishes int
		}
		batches, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stalled, error) {
			var b stalled
			return b, r.Scan(&b.tenant, &b.job, &b.seq, &b.ids, &b.publishes)
		})
		if err != nil {
			return fmt.Errorf("find stalled batches: %w", err)
		}
		jobs := map[uuid.UUID]*jobPlan{}
		for _, b := range batches {
			j, ok := jobs[b.job]
			if !ok {
				if j, err = p.loadJob(ctx, task{tenant: b.tenant, job: b.job}); err != nil {
					return err
				}
				jobs[b.job] = j
			}
			recipients, err := p.recipients(ctx, b.tenant, b.ids)
			if err != nil {
				return err
			}
			p.log.WarnContext(ctx, "re-driving batch of stalled job", "tenant_id", b.tenant, "job_id", b.job,
				"batch_seq", b.seq, "publishes", b.publishes+1)
			if err := p.publish(ctx, tx, b.tenant, j, []*eventv1.RecommendBatch{j.batch(b.seq, recipients)}); err != nil {
				return err
			}
			p.redrive.Inc()
		}
		return nil
	})
}
