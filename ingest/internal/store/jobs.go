package store

import (
	"cmp"
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"herald/shared/pgdb"
)

var (
	//go:embed sql/insert_job.sql
	insertJobSQL string
	//go:embed sql/job_by_key.sql
	jobByKeySQL string
	//go:embed sql/lock_idempotency_key.sql
	lockIdempotencyKeySQL string
	//go:embed sql/insert_plan_outbox.sql
	insertPlanOutboxSQL string
	//go:embed sql/count_known_customers.sql
	unknownCustomersSQL string
	//go:embed sql/job_status.sql
	jobStatusSQL string
	//go:embed sql/list_jobs.sql
	listJobsSQL string
	//go:embed sql/lock_job.sql
	lockJobSQL string
	//go:embed sql/set_job_state.sql
	setJobStateSQL string
	//go:embed sql/cancel_planning.sql
	cancelPlanningSQL string
	//go:embed sql/resume_batches.sql
	resumeBatchesSQL string
	//go:embed sql/resume_planning.sql
	resumePlanningSQL string
)

// Audience says who a job goes to: exactly one of the three.
type Audience struct {
	// AllSubscribed addresses every subscribed customer of the tenant.
	AllSubscribed bool `json:"all_subscribed,omitempty"`
	// CustomerIDs addresses these customers (sorted, distinct); those who
	// have unsubscribed are left out when the job is planned.
	CustomerIDs []string `json:"customer_ids,omitempty"`
	// Segment is the partner's filter over customer attributes as given;
	// SegmentPath is it compiled to a SQL/JSON path predicate over
	// customers.attributes, which the planner applies to the subscribed
	// customers.
	Segment     json.RawMessage `json:"segment,omitempty"`
	SegmentPath string          `json:"segment_path,omitempty"`
}

// Job states as the partner sets them (jobs.state).
const (
	StateActive    = "active"
	StatePaused    = "paused"
	StateCancelled = "cancelled"
)

// Where a job comes from (jobs.origin). The database keeps each origin's
// idempotency keys apart: a partner's never contain a space (the API takes
// printable ASCII only), the jobs of catalog changes' always do.
const (
	OriginPartner       = "partner"
	OriginCatalogChange = "catalog_change"
)

// NewJob is an accepted job request.
type NewJob struct {
	ID uuid.UUID
	// Origin is who asked for the job; empty means OriginPartner.
	Origin             string
	IdempotencyKey     string
	RequestHash        []byte
	Channel            string
	TemplateID         string
	TemplateVersion    int // 0: the latest at submission
	Audience           Audience
	ProductsPerMessage int
	// Picking is the job's eventv1.Picking in protojson form; nil for the
	// default chain.
	Picking []byte
	// QuietHours is the job's eventv1.QuietHours in protojson form, or nil.
	QuietHours  []byte
	Campaign    string
	SubmittedAt time.Time
	SendAt      *time.Time
	Deadline    time.Time
	Traceparent string
}

// Start is when the job starts: its send_at, or its submission.
func (j NewJob) Start() time.Time {
	if j.SendAt != nil {
		return *j.SendAt
	}
	return j.SubmittedAt
}

// Status is the job as accepted, before any progress.
func (j NewJob) Status() JobStatus {
	return JobStatus{ID: j.ID, Channel: j.Channel, TemplateID: j.TemplateID, TemplateVersion: j.TemplateVersion,
		Audience: j.Audience, ProductsPerMessage: j.ProductsPerMessage, Campaign: j.Campaign,
		SubmittedAt: j.SubmittedAt, SendAt: j.SendAt, Deadline: j.Deadline, JobState: StateActive}
}

// Accepted is the outcome of CreateJob.
type Accepted struct {
	ID uuid.UUID
	// Response is the answer to give: the one built for this request, or
	// the one stored with the first request of the same key.
	Response []byte
	// Replayed is set when the key was used before with the same request.
	Replayed bool
}

// CreateJob accepts j for tenant: in one transaction it resolves the
// template version, stores the job together with the answer respond builds
// for it, and the outbox row that gets it planned. Idempotency-Key follows
// Stripe: a key seen before with the same request hash returns the stored
// answer (Replayed); with another hash, ErrIdempotencyMismatch; a key whose
// first request is still being handled, ErrIdempotencyInFlight.
func (s *Store) CreateJob(ctx context.Context, tenant string, j NewJob, respond func(JobStatus) ([]byte, error)) (Accepted, error) {
	if err := s.ensurePartition(ctx, j.SubmittedAt); err != nil {
		return Accepted{}, err
	}
	if j.SendAt != nil {
		if err := s.ensurePartition(ctx, *j.SendAt); err != nil {
			return Accepted{}, err
		}
	}
	audience, err := json.Marshal(j.Audience)
	if err != nil {
		return Accepted{}, fmt.Errorf("encode audience: %w", err)
	}
	if j.ID, err = uuid.NewV7(); err != nil {
		return Accepted{}, fmt.Errorf("new job id: %w", err)
	}
	origin := cmp.Or(j.Origin, OriginPartner)
	var out Accepted
	err = pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, ensureTenantSQL, tenant); err != nil {
			return fmt.Errorf("ensure tenant: %w", err)
		}
		if err := lockActiveTenant(ctx, tx, tenant); err != nil {
			return err
		}
		// The key is held until this transaction ends: a second request
		// with it meanwhile is told so rather than queued behind it.
		var held bool
		if err := tx.QueryRow(ctx, lockIdempotencyKeySQL, tenant, j.IdempotencyKey).Scan(&held); err != nil {
			return fmt.Errorf("lock idempotency key: %w", err)
		}
		if !held {
			return ErrIdempotencyInFlight
		}
		// A repeated request is answered before anything else is checked,
		// so a retry gets the first answer even if a template was added since.
		var hash, response []byte
		switch err := tx.QueryRow(ctx, jobByKeySQL, tenant, j.IdempotencyKey).Scan(&out.ID, &hash, &response); {
		case err == nil:
			if subtle.ConstantTimeCompare(hash, j.RequestHash) != 1 {
				return ErrIdempotencyMismatch
			}
			out.Response, out.Replayed = response, true
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("look up idempotency key: %w", err)
		}
		if err := tx.QueryRow(ctx, resolveTemplateSQL, tenant, j.TemplateID, j.TemplateVersion).Scan(&j.TemplateVersion); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrUnknownTemplate
			}
			return fmt.Errorf("resolve template: %w", err)
		}
		if len(j.Audience.CustomerIDs) > 0 {
			rows, _ := tx.Query(ctx, unknownCustomersSQL, tenant, j.Audience.CustomerIDs)
			unknown, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("check audience: %w", err)
			}
			if len(unknown) > 0 {
				return &UnknownCustomersError{IDs: unknown}
			}
		}
		response, err := respond(j.Status())
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, insertJobSQL, pgx.StrictNamedArgs{
			"tenant_id": tenant, "id": j.ID, "idempotency_key": j.IdempotencyKey, "request_sha256": j.RequestHash,
			"channel": j.Channel, "template_id": j.TemplateID, "template_version": j.TemplateVersion,
			"audience": audience, "products_per_message": j.ProductsPerMessage, "campaign": j.Campaign,
			"submitted_at": j.SubmittedAt, "deadline": j.Deadline, "traceparent": j.Traceparent, "send_at": j.SendAt,
			"accepted_response": response, "picking": j.Picking, "quiet_hours": j.QuietHours, "origin": origin,
		})
		if err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		if tag.RowsAffected() == 0 {
			// Cannot happen while the key is held; guard anyway.
			return ErrIdempotencyInFlight
		}
		if _, err := tx.Exec(ctx, insertPlanOutboxSQL, tenant, j.ID, j.SendAt); err != nil {
			return fmt.Errorf("insert outbox: %w", err)
		}
		out.ID, out.Response = j.ID, response
		return nil
	})
	if err != nil {
		return Accepted{}, err
	}
	return out, nil
}

// EnsurePartitions creates the ledger partitions for today and tomorrow;
// ingest calls it at start and then hourly so jobs rarely pay for DDL.
func (s *Store) EnsurePartitions(ctx context.Context, now time.Time) error {
	for _, t := range []time.Time{now, now.Add(24 * time.Hour)} {
		if err := s.ensurePartition(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) ensurePartition(ctx context.Context, t time.Time) error {
	day := t.UTC().Format(time.DateOnly)
	if _, ok := s.partitions.Load(day); ok {
		return nil
	}
	if _, err := s.db.Exec(ctx, `SELECT herald_ensure_deliveries_partition($1)`, t); err != nil {
		return fmt.Errorf("ensure ledger partition %s: %w", day, err)
	}
	s.partitions.Store(day, true)
	return nil
}

// JobStatus is a job with its progress.
type JobStatus struct {
	ID                 uuid.UUID
	Channel            string
	TemplateID         string
	TemplateVersion    int
	Audience           Audience
	ProductsPerMessage int
	Campaign           string
	SubmittedAt        time.Time
	SendAt             *time.Time
	Deadline           time.Time
	// JobState is the partner's say: active, paused or cancelled.
	JobState       string
	StateChangedAt *time.Time
	// Planned counts the recipients published so far; final once PlannedAt is set.
	Planned    int64
	PlannedAt  *time.Time
	Sent       int64
	Failed     int64
	Suppressed int64
	Expired    int64
	Ambiguous  int64
	// Capped recipients had reached the tenant's daily cap.
	Capped int64
	// Skipped recipients were left out by the job's picking rules.
	Skipped int64
	// FirstSentAt and LastDoneAt bound the job's deliveries in time.
	FirstSentAt *time.Time
	LastDoneAt  *time.Time
}

// Done counts recipients with a final outcome.
func (j JobStatus) Done() int64 {
	return j.Sent + j.Failed + j.Suppressed + j.Expired + j.Ambiguous + j.Capped + j.Skipped
}

// Complete reports whether every recipient of the job has an outcome.
func (j JobStatus) Complete() bool { return j.PlannedAt != nil && j.Done() >= j.Planned }

// State is the job's state as partners see it: "cancelled" or "paused" as
// the partner set it; otherwise "scheduled" until its send_at, "planning"
// until the audience is published, "running" until every planned
// recipient has an outcome, then "complete".
func (j JobStatus) State(now time.Time) string {
	switch {
	case j.JobState == StateCancelled:
		return "cancelled"
	case j.Complete():
		return "complete"
	case j.JobState == StatePaused:
		return "paused"
	case j.PlannedAt == nil && j.Planned == 0 && j.SendAt != nil && now.Before(*j.SendAt):
		return "scheduled"
	case j.PlannedAt == nil:
		return "planning"
	default:
		return "running"
	}
}

func scanJob(row pgx.CollectableRow) (JobStatus, error) {
	var j JobStatus
	var audience []byte
	err := row.Scan(&j.ID, &j.Channel, &j.TemplateID, &j.TemplateVersion,
		&audience, &j.ProductsPerMessage, &j.Campaign, &j.SubmittedAt, &j.Deadline, &j.Planned, &j.PlannedAt,
		&j.JobState, &j.StateChangedAt, &j.SendAt,
		&j.Sent, &j.Failed, &j.Suppressed, &j.Expired, &j.Ambiguous, &j.Capped, &j.Skipped, &j.FirstSentAt, &j.LastDoneAt)
	if err != nil {
		return JobStatus{}, err
	}
	if err := json.Unmarshal(audience, &j.Audience); err != nil {
		return JobStatus{}, fmt.Errorf("decode audience: %w", err)
	}
	return j, nil
}

// Job returns a job of tenant with its progress, or ErrNotFound.
func (s *Store) Job(ctx context.Context, tenant string, id uuid.UUID) (JobStatus, error) {
	rows, _ := s.db.Query(ctx, jobStatusSQL, tenant, id)
	j, err := pgx.CollectExactlyOneRow(rows, scanJob)
	if errors.Is(err, pgx.ErrNoRows) {
		return JobStatus{}, ErrNotFound
	}
	if err != nil {
		return JobStatus{}, fmt.Errorf("read job: %w", err)
	}
	return j, nil
}

// Jobs returns up to limit of tenant's jobs submitted before the job
// before (uuid.Max for the newest), newest first.
func (s *Store) Jobs(ctx context.Context, tenant string, before uuid.UUID, limit int) ([]JobStatus, error) {
	rows, _ := s.db.Query(ctx, listJobsSQL, tenant, before, limit)
	jobs, err := pgx.CollectRows(rows, scanJob)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return jobs, nil
}

// Job actions a partner can take.
const (
	Pause  = "pause"
	Resume = "resume"
	Cancel = "cancel"
)

// TransitionError is a job action that the job's state does not allow.
type TransitionError struct {
	Action, State string
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("a %s job cannot be %s", e.State, map[string]string{Pause: "paused", Resume: "resumed", Cancel: "cancelled", Redrive: "re-driven"}[e.Action])
}

// ChangeJob applies a partner's action to a job:
//   - pause: an active job stops being planned, and dispatch claims no more
//     of its recipients; what is claimed already finishes;
//   - resume: a paused job goes on: planning resumes from its cursor, and
//     its unfinished batches are published again, so every recipient who
//     has no outcome yet gets one (the ledger skips those who have);
//   - cancel: an active or paused job stops for good.
//
// Repeating an action is a no-op. An action the state does not allow (resume
// a cancelled job; pause or cancel a complete one) is a *TransitionError.
// A suspended tenant's job is not resumed (ErrTenantSuspended).
func (s *Store) ChangeJob(ctx context.Context, tenant string, id uuid.UUID, action string) error {
	return pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		if action == Resume {
			if err := lockActiveTenant(ctx, tx, tenant); err != nil {
				return err
			}
		}
		return changeJob(ctx, tx, tenant, id, action)
	})
}

// changeJob applies action to the job within tx (see ChangeJob).
func changeJob(ctx context.Context, tx pgx.Tx, tenant string, id uuid.UUID, action string) error {
	var state string
	var complete bool
	err := tx.QueryRow(ctx, lockJobSQL, tenant, id).Scan(&state, &complete)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("lock job: %w", err)
	}
	target := map[string]string{Pause: StatePaused, Resume: StateActive, Cancel: StateCancelled}[action]
	switch {
	case target == "":
		return fmt.Errorf("unknown job action %q", action)
	case state == target:
		return nil
	case state == StateCancelled, complete && action != Resume:
		shown := state
		if state != StateCancelled {
			shown = "complete"
		}
		return &TransitionError{Action: action, State: shown}
	case action == Resume && state != StatePaused:
		return &TransitionError{Action: action, State: state}
	}
	if _, err := tx.Exec(ctx, setJobStateSQL, tenant, id, target); err != nil {
		return fmt.Errorf("set job state: %w", err)
	}
	switch action {
	case Cancel:
		if _, err := tx.Exec(ctx, cancelPlanningSQL, tenant, id); err != nil {
			return fmt.Errorf("cancel planning: %w", err)
		}
	case Resume:
		if _, err := tx.Exec(ctx, resumeBatchesSQL, tenant, id); err != nil {
			return fmt.Errorf("resume batches: %w", err)
		}
		if _, err := tx.Exec(ctx, resumePlanningSQL, tenant, id); err != nil {
			return fmt.Errorf("resume planning: %w", err)
		}
	}
	return nil
}
