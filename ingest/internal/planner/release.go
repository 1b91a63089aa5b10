package planner

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	eventv1 "herald/shared/event/v1"
	"herald/shared/pgdb"
	"herald/shared/telemetry"
)

var (
	//go:embed sql/release_lock.sql
	releaseLockSQL string
	//go:embed sql/releasable.sql
	releasableSQL string
	//go:embed sql/stalled_batches.sql
	stalledBatchesSQL string
	//go:embed sql/recipients_by_id.sql
	recipientsByIDSQL string
	//go:embed sql/mark_published.sql
	markPublishedSQL string
)

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

// releaseOnce publishes what the window has room for, one releaser at a
// time across replicas, and reports how many batches it published.
func (p *Planner) releaseOnce(ctx context.Context) (int, error) {
	released := 0
	err := pgdb.InTx(ctx, p.db, func(tx pgx.Tx) error {
		var mine bool
		if err := tx.QueryRow(ctx, releaseLockSQL).Scan(&mine); err != nil || !mine {
			return err // another replica is releasing
		}
		var err error
		released, err = p.publishRecorded(ctx, tx, releasableSQL, []any{p.cfg.Window, p.cfg.JobWindow}, nil)
		return err
	})
	return released, err
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

// redriveOnce publishes again up to 100 batches of stalled jobs.
func (p *Planner) redriveOnce(ctx context.Context) error {
	return pgdb.InTx(ctx, p.db, func(tx pgx.Tx) error {
		args := []any{p.cfg.Stall.Seconds(), 100, p.cfg.MaxPublishes}
		n, err := p.publishRecorded(ctx, tx, stalledBatchesSQL, args, func(b recorded) {
			p.log.WarnContext(ctx, "re-driving batch of stalled job", "tenant_id", b.tenant, "job_id", b.job,
				"batch_seq", b.seq, "publishes", b.publishes+1)
		})
		p.redrive.Add(float64(n))
		return err
	})
}

// recorded is a batch as planning recorded it in job_batches.
type recorded struct {
	tenant    string
	job       uuid.UUID
	seq       int64
	ids       []string
	publishes int
}

// publishRecorded is the one loop behind release and re-drive. It runs
// query in tx to select recorded batches (tenant_id, job_id, seq,
// customer_ids, publishes), builds each one's message from its job and its
// customers as they are now, calls each (if any) for every batch, and
// publishes them job by job, marking them published in tx. It reports how
// many batches Pub/Sub took, also when it fails part way.
func (p *Planner) publishRecorded(ctx context.Context, tx pgx.Tx, query string, args []any, each func(recorded)) (int, error) {
	rows, _ := tx.Query(ctx, query, args...)
	batches, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (recorded, error) {
		var b recorded
		return b, r.Scan(&b.tenant, &b.job, &b.seq, &b.ids, &b.publishes)
	})
	if err != nil {
		return 0, fmt.Errorf("find recorded batches: %w", err)
	}
	if len(batches) == 0 {
		return 0, nil
	}
	recipients, err := p.recipients(ctx, tx, batches)
	if err != nil {
		return 0, err
	}
	jobs := map[uuid.UUID]*jobPlan{}
	var order []uuid.UUID // jobs in the order query gave their first batch
	out := map[uuid.UUID][]*eventv1.RecommendBatch{}
	for i, b := range batches {
		j, ok := jobs[b.job]
		if !ok {
			if j, err = p.loadJob(ctx, task{tenant: b.tenant, job: b.job}); err != nil {
				return 0, err
			}
			jobs[b.job] = j
			order = append(order, b.job)
		}
		if each != nil {
			each(b)
		}
		out[b.job] = append(out[b.job], j.batch(b.seq, recipients[i]))
	}
	published := 0
	for _, id := range order {
		if err := p.publish(ctx, tx, jobs[id], out[id]); err != nil {
			return published, err
		}
		published += len(out[id])
	}
	return published, nil
}

// recipients reads the customers of every batch, in one round trip.
func (p *Planner) recipients(ctx context.Context, tx pgx.Tx, batches []recorded) ([][]*eventv1.Recipient, error) {
	q := &pgx.Batch{}
	out := make([][]*eventv1.Recipient, len(batches))
	for i, b := range batches {
		q.Queue(recipientsByIDSQL, b.tenant, b.ids).Query(func(rows pgx.Rows) error {
			rs, err := scanRecipients(rows, len(b.ids))
			out[i] = rs
			return err
		})
	}
	if err := tx.SendBatch(ctx, q).Close(); err != nil {
		return nil, fmt.Errorf("read batch recipients: %w", err)
	}
	return out, nil
}

func scanRecipients(rows pgx.Rows, capacity int) ([]*eventv1.Recipient, error) {
	recipients := make([]*eventv1.Recipient, 0, capacity)
	for rows.Next() {
		r := &eventv1.Recipient{}
		if err := rows.Scan(&r.CustomerId, &r.Email, &r.FirstName, &r.LastName, &r.Locale); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read recipients: %w", err)
		}
		recipients = append(recipients, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read recipients: %w", err)
	}
	return recipients, nil
}

// batch builds batch seq of j.
func (j *jobPlan) batch(seq int64, recipients []*eventv1.Recipient) *eventv1.RecommendBatch {
	header := proto.CloneOf(j.header)
	header.Seq = seq
	return &eventv1.RecommendBatch{Job: header, Recipients: recipients}
}

// publish sends j's batches and notes, in tx, when Pub/Sub has them all.
func (p *Planner) publish(ctx context.Context, tx pgx.Tx, j *jobPlan, batches []*eventv1.RecommendBatch) error {
	tenant := j.header.TenantId
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
	if _, err := tx.Exec(ctx, markPublishedSQL, tenant, j.header.JobId, seqs); err != nil {
		return fmt.Errorf("mark batches published: %w", err)
	}
	p.batches.Add(float64(len(batches)))
	return nil
}
