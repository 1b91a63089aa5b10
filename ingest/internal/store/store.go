// Package store is ingest's access to PostgreSQL: bulk loads of partner data,
// templates, and jobs with their plan and outbox row.
package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/shared/pgdb"
)

// Errors the API maps to responses.
var (
	ErrNotFound            = errors.New("not found")
	ErrUnknownTemplate     = errors.New("unknown template")
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	ErrIdempotencyInFlight = errors.New("idempotency key in use by a request in flight")
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
	// monthly datasets go to a table partitioned by month: the partitions
	// of the months present are made before the merge.
	monthly bool
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
	//go:embed sql/stage_events.sql
	stageEventsSQL string
	//go:embed sql/load_events.sql
	loadEventsSQL string
	//go:embed sql/event_months.sql
	eventMonthsSQL string
	//go:embed sql/ensure_events_partition.sql
	ensureEventsPartitionSQL string
)

// The datasets ingest accepts. Each staged row must match the dataset's
// columns, starting with the NDJSON line number.
var (
	Customers = Dataset{Name: "customers", stage: stageCustomersSQL, table: "staged_customers", merge: loadCustomersSQL,
		columns: []string{"line", "id", "email", "first_name", "last_name", "locale", "timezone", "subscribed", "consent", "attributes"}}
	CatalogItems = Dataset{Name: "catalog items", stage: stageCatalogSQL, table: "staged_catalog_items", merge: loadCatalogSQL,
		columns: []string{"line", "id", "title", "brand", "url", "image_url", "price_cents", "compare_at_cents", "currency", "in_stock", "sales_30d", "rating", "reviews", "categories"}}
	Recommendations = Dataset{Name: "recommendations", stage: stageRecsSQL, table: "staged_recommendations", merge: loadRecsSQL,
		columns: []string{"line", "customer_id", "item_ids", "scores", "model_version"}}
	Suppressions = Dataset{Name: "suppressions", stage: stageSuppressionsSQL, table: "staged_suppressions", merge: loadSuppressionsSQL,
		columns: []string{"line", "email", "reason"}}
	Events = Dataset{Name: "events", stage: stageEventsSQL, table: "staged_events", merge: loadEventsSQL, monthly: true,
		columns: []string{"line", "customer_id", "kind", "item_id", "quantity", "occurred_at"}}
)

// Load stores the staged rows: in one transaction it copies them into a
// staging table and merges them into the tenant's data, so an upload lands
// whole or not at all. The rows are checked and staged before, so the
// transaction holds its connection only while PostgreSQL reads them. It
// returns the rows merged.
func (s *Store) Load(ctx context.Context, tenant string, staged *Staging) (int64, error) {
	d := staged.d
	rows, err := staged.rowsReader()
	if err != nil {
		return 0, err
	}
	var merged int64
	err = pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, ensureTenantSQL, tenant); err != nil {
			return fmt.Errorf("ensure tenant: %w", err)
		}
		if _, err := tx.Exec(ctx, d.stage); err != nil {
			return fmt.Errorf("stage %s: %w", d.Name, err)
		}
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, rows, d.copyStatement()); err != nil {
			return fmt.Errorf("copy %s: %w", d.Name, err)
		}
		if d.monthly {
			if err := s.ensureMonths(ctx, tx); err != nil {
				return err
			}
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

// ensureMonths makes the partitions for the months of the staged events.
// Each is made in a transaction of its own on another connection, so the
// upload does not hold the partition lock until it commits.
func (s *Store) ensureMonths(ctx context.Context, tx pgx.Tx) error {
	rows, _ := tx.Query(ctx, eventMonthsSQL)
	months, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return fmt.Errorf("read event months: %w", err)
	}
	for _, m := range months {
		key := "events/" + m.UTC().Format("2006-01")
		if _, ok := s.partitions.Load(key); ok {
			continue
		}
		if _, err := s.db.Exec(ctx, ensureEventsPartitionSQL, m); err != nil {
			return fmt.Errorf("ensure events partition %s: %w", key, err)
		}
		s.partitions.Store(key, true)
	}
	return nil
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
	_, err := s.db.Exec(ctx, upsertProfileSQL, pgx.StrictNamedArgs{
		"tenant": tenant, "name": p.Name, "website_url": p.WebsiteURL, "logo_url": p.LogoURL, "hero_url": p.HeroURL,
		"postal_address": p.PostalAddress, "default_deadline_seconds": p.DefaultDeadline.Seconds(),
	})
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
		return tx.QueryRow(ctx, insertTemplateSQL, pgx.StrictNamedArgs{
			"tenant": tenant, "id": t.ID, "from_name": t.FromName, "from_email": t.FromEmail,
			"subject": t.Subject, "preheader": t.Preheader, "html": t.HTML, "text_body": t.Text,
		}).
			Scan(&t.Version, &t.CreatedAt)
	})
	if err != nil {
		return Template{}, fmt.Errorf("add template: %w", err)
	}
	return t, nil
}
