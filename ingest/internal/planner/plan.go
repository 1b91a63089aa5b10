package planner

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventv1 "herald/shared/event/v1"
	"herald/shared/pgdb"
)

var (
	//go:embed sql/lease_task.sql
	leaseTaskSQL string
	//go:embed sql/release.sql
	releaseSQL string
	//go:embed sql/load_job.sql
	loadJobSQL string
	//go:embed sql/job_state.sql
	jobStateSQL string
	//go:embed sql/audience_all.sql
	audienceAllSQL string
	//go:embed sql/audience_ids.sql
	audienceIDsSQL string
	//go:embed sql/audience_segment.sql
	audienceSegmentSQL string
	//go:embed sql/insert_batches.sql
	insertBatchSQL string
	//go:embed sql/checkpoint.sql
	checkpointSQL string
	//go:embed sql/finish.sql
	finishSQL string
)

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

// jobPlan is what planning and publishing need to know about a job.
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

// planChunk reads up to ChunkBatches pages of the audience's ids after j's
// cursor and records them as batches together with the advanced cursor in
// one transaction; the releaser reads their customers when it publishes
// them. It reports whether the audience may have more.
func (p *Planner) planChunk(ctx context.Context, t task, j *jobPlan) (bool, error) {
	var batches [][]string
	cursor, planned := j.cursor, j.planned
	more := true
	for len(batches) < p.cfg.ChunkBatches {
		ids, err := p.page(ctx, t.tenant, j, cursor)
		if err != nil {
			return false, err
		}
		if len(ids) > 0 {
			batches = append(batches, ids)
			cursor = ids[len(ids)-1]
			planned += int64(len(ids))
		}
		if len(ids) < p.cfg.BatchSize {
			more = false
			break
		}
	}
	if len(batches) == 0 {
		return false, nil
	}
	seq := j.nextSeq + int64(len(batches))
	err := pgdb.InTx(ctx, p.db, func(tx pgx.Tx) error {
		q := &pgx.Batch{}
		for i, ids := range batches {
			q.Queue(insertBatchSQL, t.tenant, t.job, j.nextSeq+int64(i), ids)
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

// page reads the ids of the next page of j's audience after the cursor.
// Planning records ids only: the audience queries' first column is the
// customer id, and the rest of the row is skipped undecoded, because the
// releaser reads each batch's customers as they are when it publishes it.
func (p *Planner) page(ctx context.Context, tenant string, j *jobPlan, after string) ([]string, error) {
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
	defer rows.Close()
	ids := make([]string, 0, p.cfg.BatchSize)
	var id string
	for rows.Next() {
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read audience: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audience: %w", err)
	}
	return ids, nil
}
