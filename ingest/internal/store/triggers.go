package store

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"herald/shared/pgdb"
)

var (
	//go:embed sql/upsert_catalog_trigger.sql
	upsertCatalogTriggerSQL string
	//go:embed sql/catalog_triggers.sql
	catalogTriggersSQL string
	//go:embed sql/next_catalog_change.sql
	nextCatalogChangeSQL string
	//go:embed sql/catalog_change_audience.sql
	catalogChangeAudienceSQL string
	//go:embed sql/handle_catalog_change.sql
	handleCatalogChangeSQL string
	//go:embed sql/set_back_catalog_change.sql
	setBackCatalogChangeSQL string
)

// CatalogTrigger is a tenant's standing order for one kind of catalog
// change ("back_in_stock", "price_drop"): message the customers who viewed
// or carted the item within Lookback before the change, and have not bought
// it since, on Channel with the template.
type CatalogTrigger struct {
	Kind            string
	Channel         string
	TemplateID      string
	TemplateVersion int // 0: the latest when the change happens
	Lookback        time.Duration
	MinDropPercent  int
	// Deadline is how long after the change its job is due; 0: the
	// tenant's default deadline.
	Deadline time.Duration
}

// PutCatalogTrigger creates or replaces the tenant's trigger of t.Kind; the
// template must exist (ErrUnknownTemplate).
func (s *Store) PutCatalogTrigger(ctx context.Context, tenant string, t CatalogTrigger) error {
	var deadline *float64
	if t.Deadline > 0 {
		d := t.Deadline.Seconds()
		deadline = &d
	}
	return pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		var version int
		if err := tx.QueryRow(ctx, resolveTemplateSQL, tenant, t.TemplateID, t.TemplateVersion).Scan(&version); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrUnknownTemplate
			}
			return fmt.Errorf("resolve template: %w", err)
		}
		if _, err := tx.Exec(ctx, upsertCatalogTriggerSQL, pgx.StrictNamedArgs{
			"tenant": tenant, "kind": t.Kind, "channel": t.Channel, "template_id": t.TemplateID,
			"template_version": t.TemplateVersion, "lookback_seconds": t.Lookback.Seconds(),
			"min_drop_percent": t.MinDropPercent, "deadline_seconds": deadline,
		}); err != nil {
			return fmt.Errorf("put catalog trigger: %w", err)
		}
		return nil
	})
}

// CatalogTriggers returns the tenant's triggers, by kind.
func (s *Store) CatalogTriggers(ctx context.Context, tenant string) ([]CatalogTrigger, error) {
	rows, _ := s.db.Query(ctx, catalogTriggersSQL, tenant)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CatalogTrigger, error) {
		var t CatalogTrigger
		var lookback float64
		var deadline *float64
		err := r.Scan(&t.Kind, &t.Channel, &t.TemplateID, &t.TemplateVersion, &lookback, &t.MinDropPercent, &deadline)
		t.Lookback = seconds(lookback)
		if deadline != nil {
			t.Deadline = seconds(*deadline)
		}
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read catalog triggers: %w", err)
	}
	return out, nil
}

// DeleteCatalogTrigger removes the tenant's trigger of kind, or reports
// ErrNotFound.
func (s *Store) DeleteCatalogTrigger(ctx context.Context, tenant, kind string) error {
	tag, err := s.db.Exec(ctx, `DELETE FROM catalog_triggers WHERE tenant_id = $1 AND kind = $2`, tenant, kind)
	if err != nil {
		return fmt.Errorf("delete catalog trigger: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// CatalogChange is a change to a tenant's catalog that customers may want
// to hear about, with the tenant's trigger of its kind (nil if none).
type CatalogChange struct {
	ID        int64
	Tenant    string
	ItemID    string
	Kind      string
	ChangedAt time.Time
	Trigger   *CatalogTrigger
	// Attempts counts the times acting on the change has failed so far.
	Attempts int
}

// A Setback says what becomes of a catalog change that could not be acted
// on: it is taken again from RetryAt or, with Park, parked: kept with the
// error as its reason, and taken no more.
type Setback struct {
	Park    bool
	RetryAt time.Time
}

// HandleCatalogChange takes the oldest due catalog change of the first
// tenant, in id order, that sorts after `after` and has one ("" starts from
// the first tenant), and calls act with it and the customers interested in
// it; the change is marked handled, with the job act returns, in the same
// transaction. The change stays locked meanwhile, so each is taken by one
// caller at a time; act must be idempotent per change, since a crash before
// the commit makes it run again.
//
// When acting on the change fails (ctx ending aside), setback says, from
// the change and the error, whether it is retried later or parked; that is
// recorded with the error as the reason, and HandleCatalogChange returns
// without an error: the change no longer stands in the way of the others.
// It reports false when no change is due.
func (s *Store) HandleCatalogChange(ctx context.Context, after string,
	act func(context.Context, CatalogChange, []string) (*uuid.UUID, error),
	setback func(context.Context, CatalogChange, error) Setback,
) (CatalogChange, bool, error) {
	var c CatalogChange
	found := false
	err := pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		var channel, template *string
		var version, minDrop *int
		var lookback, deadline *float64
		err := tx.QueryRow(ctx, nextCatalogChangeSQL, pgx.StrictNamedArgs{"after": after}).Scan(&c.ID, &c.Tenant, &c.ItemID, &c.Kind,
			&c.ChangedAt, &c.Attempts, &channel, &template, &version, &lookback, &minDrop, &deadline)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("next catalog change: %w", err)
		}
		found = true
		if channel != nil {
			c.Trigger = &CatalogTrigger{Kind: c.Kind, Channel: *channel, TemplateID: *template, TemplateVersion: *version,
				Lookback: seconds(*lookback), MinDropPercent: *minDrop}
			if deadline != nil {
				c.Trigger.Deadline = seconds(*deadline)
			}
		}
		job, actErr := actOn(ctx, tx, c, act)
		if actErr != nil {
			if ctx.Err() != nil {
				return actErr
			}
			sb := setback(ctx, c, actErr)
			var retryAt *time.Time
			if !sb.Park {
				retryAt = &sb.RetryAt
			}
			if _, err := tx.Exec(ctx, setBackCatalogChangeSQL, pgx.StrictNamedArgs{
				"id": c.ID, "reason": actErr.Error(), "retry_at": retryAt, "park": sb.Park,
			}); err != nil {
				return fmt.Errorf("set back catalog change %d: %w", c.ID, err)
			}
			return nil
		}
		if _, err := tx.Exec(ctx, handleCatalogChangeSQL, c.ID, job); err != nil {
			return fmt.Errorf("mark catalog change %d handled: %w", c.ID, err)
		}
		return nil
	})
	return c, found, err
}

// actOn reads the customers interested in c and calls act. The read runs
// in a savepoint, so that when it fails the transaction can still record
// the failure.
func actOn(ctx context.Context, tx pgx.Tx, c CatalogChange,
	act func(context.Context, CatalogChange, []string) (*uuid.UUID, error),
) (*uuid.UUID, error) {
	var audience []string
	if c.Trigger != nil {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("savepoint: %w", err)
		}
		rows, _ := sp.Query(ctx, catalogChangeAudienceSQL, c.ID, c.Trigger.Lookback.Seconds(), c.Trigger.MinDropPercent)
		if audience, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			_ = sp.Rollback(ctx)
			return nil, fmt.Errorf("audience of catalog change %d: %w", c.ID, err)
		}
		if err := sp.Commit(ctx); err != nil {
			return nil, fmt.Errorf("release savepoint: %w", err)
		}
	}
	return act(ctx, c, audience)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
