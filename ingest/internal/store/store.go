// Package store is ingest's access to PostgreSQL: bulk loads of partner data,
// templates, and jobs with their plan and outbox row.
package store

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/shared/pgdb"
)

// Errors the API maps to responses.
var (
	ErrNotFound            = errors.New("not found")
	ErrUnknownTemplate     = errors.New("unknown template")
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
)

// UnknownCustomersError lists (some of) the customer ids of an explicit
// audience that the tenant does not have.
type UnknownCustomersError struct{ IDs []string }

func (e *UnknownCustomersError) Error() string {
	return fmt.Sprintf("unknown customer ids: %v", e.IDs)
}

// Store wraps the pool.
type Store struct {
	db *pgxpool.Pool
	// partitions remembers the ledger days known to exist, so the DDL
	// function runs once per day per process rather than per job.
	partitions sync.Map
}

// New returns a Store on db.
func New(db *pgxpool.Pool) *Store { return &Store{db: db} }

// A Dataset is one kind of partner data that arrives as NDJSON and is merged
// through a staging table.
type Dataset struct {
	Name    string
	stage   string
	table   string
	columns []string
	merge   string
}

var (
	//go:embed sql/stage_customers.sql
	stageCustomersSQL string
	//go:embed sql/load_customers.sql
	loadCustomersSQL string
	//go:embed sql/stage_catalog_items.sql
	stageCatalogSQL string
	//go:embed sql/load_catalog_items.sql
	loadCatalogSQL string
	//go:embed sql/stage_recommendations.sql
	stageRecsSQL string
	//go:embed sql/load_recommendations.sql
	loadRecsSQL string
	//go:embed sql/stage_suppressions.sql
	stageSuppressionsSQL string
	//go:embed sql/load_suppressions.sql
	loadSuppressionsSQL string
)

// The datasets ingest accepts. Each row a source yields must match the
// dataset's columns, starting with the NDJSON line number.
var (
	Customers = Dataset{Name: "customers", stage: stageCustomersSQL, table: "staged_customers", merge: loadCustomersSQL,
		columns: []string{"line", "id", "email", "first_name", "last_name", "locale", "subscribed", "attributes"}}
	CatalogItems = Dataset{Name: "catalog items", stage: stageCatalogSQL, table: "staged_catalog_items", merge: loadCatalogSQL,
		columns: []string{"line", "id", "title", "brand", "url", "image_url", "price_cents", "compare_at_cents", "currency", "in_stock", "sales_30d", "rating", "reviews"}}
	Recommendations = Dataset{Name: "recommendations", stage: stageRecsSQL, table: "staged_recommendations", merge: loadRecsSQL,
		columns: []string{"line", "customer_id", "item_ids", "model_version"}}
	Suppressions = Dataset{Name: "suppressions", stage: stageSuppressionsSQL, table: "staged_suppressions", merge: loadSuppressionsSQL,
		columns: []string{"line", "email", "reason"}}
)

// Load streams rows into a staging table with COPY and merges them into the
// tenant's data in one transaction: an upload lands whole or not at all, and
// memory does not grow with its size. If src reports an error (a bad line),
// nothing is stored and that error is returned. It returns the rows merged.
func (s *Store) Load(ctx context.Context, tenant string, d Dataset, src pgx.CopyFromSource) (int64, error) {
	var merged int64
	err := pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, ensureTenantSQL, tenant); err != nil {
			return fmt.Errorf("ensure tenant: %w", err)
		}
		if _, err := tx.Exec(ctx, d.stage); err != nil {
			return fmt.Errorf("stage %s: %w", d.Name, err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{d.table}, d.columns, src); err != nil {
			if srcErr := src.Err(); srcErr != nil {
				return srcErr
			}
			return fmt.Errorf("copy %s: %w", d.Name, err)
		}
		if err := src.Err(); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, d.merge, tenant)
		if err != nil {
			return fmt.Errorf("merge %s: %w", d.Name, err)
		}
		merged = tag.RowsAffected()
		return nil
	})
	return merged, err
}

var (
	//go:embed sql/ensure_tenant.sql
	ensureTenantSQL string
	//go:embed sql/upsert_profile.sql
	upsertProfileSQL string
	//go:embed sql/default_deadline.sql
	defaultDeadlineSQL string
	//go:embed sql/lock_template.sql
	lockTemplateSQL string
	//go:embed sql/insert_template.sql
	insertTemplateSQL string
	//go:embed sql/resolve_template.sql
	resolveTemplateSQL string
)

// Profile is what a tenant tells Herald about itself: the brand its messages
// carry and its default delivery deadline.
type Profile struct {
	Name            string
	WebsiteURL      string
	LogoURL         string
	HeroURL         string
	PostalAddress   string
	DefaultDeadline time.Duration
}

// PutProfile creates or replaces the tenant's profile.
func (s *Store) PutProfile(ctx context.Context, tenant string, p Profile) error {
	_, err := s.db.Exec(ctx, upsertProfileSQL, tenant, p.Name, p.WebsiteURL, p.LogoURL, p.HeroURL, p.PostalAddress, p.DefaultDeadline.Seconds())
	if err != nil {
		return fmt.Errorf("put profile: %w", err)
	}
	return nil
}

// DefaultDeadline is how long after submission the tenant's jobs are due
// unless a job says otherwise.
func (s *Store) DefaultDeadline(ctx context.Context, tenant string) (time.Duration, error) {
	var secs float64
	if err := s.db.QueryRow(ctx, defaultDeadlineSQL, tenant).Scan(&secs); err != nil {
		return 0, fmt.Errorf("read default deadline: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// Template is one uploaded version of an email template.
type Template struct {
	ID        string
	Version   int
	FromName  string
	FromEmail string
	Subject   string
	Preheader string
	HTML      string
	Text      string
	CreatedAt time.Time
}

// AddTemplate stores t as the next version of its id and returns that version.
func (s *Store) AddTemplate(ctx context.Context, tenant string, t Template) (Template, error) {
	err := pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, ensureTenantSQL, tenant); err != nil {
			return fmt.Errorf("ensure tenant: %w", err)
		}
		if _, err := tx.Exec(ctx, lockTemplateSQL, tenant, t.ID); err != nil {
			return fmt.Errorf("lock template: %w", err)
		}
		return tx.QueryRow(ctx, insertTemplateSQL, tenant, t.ID, t.FromName, t.FromEmail, t.Subject, t.Preheader, t.HTML, t.Text).
			Scan(&t.Version, &t.CreatedAt)
	})
	if err != nil {
		return Template{}, fmt.Errorf("add template: %w", err)
	}
	return t, nil
}

var (
	//go:embed sql/insert_job.sql
	insertJobSQL string
	//go:embed sql/job_by_key.sql
	jobByKeySQL string
	//go:embed sql/insert_plan_outbox.sql
	insertPlanOutboxSQL string
	//go:embed sql/count_known_customers.sql
	unknownCustomersSQL string
	//go:embed sql/job_status.sql
	jobStatusSQL string
)

// Audience says who a job goes to.
type Audience struct {
	// AllSubscribed addresses every subscribed customer of the tenant.
	AllSubscribed bool `json:"all_subscribed,omitempty"`
	// CustomerIDs addresses these customers (sorted, distinct); those who
	// have unsubscribed are left out when the job is planned.
	CustomerIDs []string `json:"customer_ids,omitempty"`
}

// NewJob is an accepted job request.
type NewJob struct {
	IdempotencyKey     string
	RequestHash        []byte
	Channel            string
	TemplateID         string
	TemplateVersion    int // 0: the latest at submission
	Audience           Audience
	ProductsPerMessage int
	Campaign           string
	SubmittedAt        time.Time
	Deadline           time.Time
	Traceparent        string
}

// CreateJob accepts j for tenant: in one transaction it resolves the
// template version, stores the job and the outbox row that gets it planned.
// A repeated idempotency key with the same request hash returns the first
// job's id and created=false; with another hash, ErrIdempotencyMismatch.
func (s *Store) CreateJob(ctx context.Context, tenant string, j NewJob) (id uuid.UUID, created bool, err error) {
	if err := s.ensurePartition(ctx, j.SubmittedAt); err != nil {
		return uuid.Nil, false, err
	}
	audience, err := json.Marshal(j.Audience)
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("encode audience: %w", err)
	}
	id, err = uuid.NewV7()
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("new job id: %w", err)
	}
	err = pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		// A repeated request is answered before anything else is checked,
		// so a retry gets the first answer even if a template was added since.
		var existing uuid.UUID
		var hash []byte
		switch err := tx.QueryRow(ctx, jobByKeySQL, tenant, j.IdempotencyKey).Scan(&existing, &hash); {
		case err == nil:
			if subtle.ConstantTimeCompare(hash, j.RequestHash) != 1 {
				return ErrIdempotencyMismatch
			}
			id = existing
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
		if _, err := tx.Exec(ctx, ensureTenantSQL, tenant); err != nil {
			return fmt.Errorf("ensure tenant: %w", err)
		}
		tag, err := tx.Exec(ctx, insertJobSQL, tenant, id, j.IdempotencyKey, j.RequestHash, j.Channel, j.TemplateID,
			j.TemplateVersion, audience, j.ProductsPerMessage, j.Campaign, j.SubmittedAt, j.Deadline, j.Traceparent)
		if err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		if tag.RowsAffected() == 0 {
			// A concurrent request with the same key committed first; the
			// client retries and gets that job's answer.
			return errConcurrentKey
		}
		if _, err := tx.Exec(ctx, insertPlanOutboxSQL, tenant, id); err != nil {
			return fmt.Errorf("insert outbox: %w", err)
		}
		created = true
		return nil
	})
	if errors.Is(err, errConcurrentKey) {
		return s.CreateJob(ctx, tenant, j)
	}
	if err != nil {
		return uuid.Nil, false, err
	}
	return id, created, nil
}

var errConcurrentKey = errors.New("idempotency key taken concurrently")

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
	Deadline           time.Time
	// Planned counts the recipients published so far; final once PlannedAt is set.
	Planned    int64
	PlannedAt  *time.Time
	Sent       int64
	Failed     int64
	Suppressed int64
	Expired    int64
	Ambiguous  int64
	// FirstSentAt and LastDoneAt bound the job's deliveries in time.
	FirstSentAt *time.Time
	LastDoneAt  *time.Time
}

// Done counts recipients with a final outcome.
func (j JobStatus) Done() int64 { return j.Sent + j.Failed + j.Suppressed + j.Expired + j.Ambiguous }

// State is "planning" until the audience is published, then "running"
// until every planned recipient has an outcome, then "complete".
func (j JobStatus) State() string {
	switch {
	case j.PlannedAt == nil:
		return "planning"
	case j.Done() < j.Planned:
		return "running"
	default:
		return "complete"
	}
}

// Job returns a job of tenant with its progress, or ErrNotFound.
func (s *Store) Job(ctx context.Context, tenant string, id uuid.UUID) (JobStatus, error) {
	var j JobStatus
	var audience []byte
	err := s.db.QueryRow(ctx, jobStatusSQL, tenant, id).Scan(&j.ID, &j.Channel, &j.TemplateID, &j.TemplateVersion,
		&audience, &j.ProductsPerMessage, &j.Campaign, &j.SubmittedAt, &j.Deadline, &j.Planned, &j.PlannedAt,
		&j.Sent, &j.Failed, &j.Suppressed, &j.Expired, &j.Ambiguous, &j.FirstSentAt, &j.LastDoneAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return JobStatus{}, ErrNotFound
	}
	if err != nil {
		return JobStatus{}, fmt.Errorf("read job: %w", err)
	}
	if err := json.Unmarshal(audience, &j.Audience); err != nil {
		return JobStatus{}, fmt.Errorf("decode audience: %w", err)
	}
	return j, nil
}
