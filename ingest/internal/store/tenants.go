package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"herald/shared/pgdb"
)

// Tenant states: only an active tenant's requests are served and its jobs
// sent.
const (
	TenantActive    = "active"
	TenantSuspended = "suspended"
)

// Errors of tenant resolution, which the API answers with 403.
var (
	ErrTenantUnknown   = errors.New("unknown tenant")
	ErrTenantSuspended = errors.New("tenant suspended")
)

var (
	//go:embed sql/put_tenant.sql
	putTenantSQL string
	//go:embed sql/get_tenant.sql
	getTenantSQL string
	//go:embed sql/list_tenants.sql
	listTenantsSQL string
	//go:embed sql/set_tenant_state.sql
	setTenantStateSQL string
	//go:embed sql/lock_tenant.sql
	lockTenantSQL string
	//go:embed sql/tenant_state.sql
	tenantStateSQL string
	//go:embed sql/active_jobs.sql
	activeJobsSQL string
)

// TenantSettings are what an operator sets for a tenant. A nil field is
// dispatch's default: no rate limit of the tenant's own, no daily cap,
// dispatch's provider order.
type TenantSettings struct {
	SendRate *float64
	DailyCap *int
	// Providers lists, per channel, the provider kinds in the tenant's
	// order of preference.
	Providers map[string][]string
}

// Tenant is a tenant as stored.
type Tenant struct {
	ID string
	TenantSettings
	State          string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	StateChangedAt *time.Time
}

func scanTenant(row pgx.Row, extra ...any) (Tenant, error) {
	var t Tenant
	var providers []byte
	dest := append([]any{&t.ID, &t.State, &t.SendRate, &t.DailyCap, &providers, &t.CreatedAt, &t.UpdatedAt, &t.StateChangedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Tenant{}, err
	}
	if providers != nil {
		if err := json.Unmarshal(providers, &t.Providers); err != nil {
			return Tenant{}, fmt.Errorf("decode providers of tenant %s: %w", t.ID, err)
		}
	}
	return t, nil
}

// TenantState returns the tenant's state, or ErrTenantUnknown for a tenant
// no operator has created.
func (s *Store) TenantState(ctx context.Context, id string) (string, error) {
	var state string
	err := s.db.QueryRow(ctx, tenantStateSQL, id).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrTenantUnknown
	}
	if err != nil {
		return "", fmt.Errorf("read tenant state: %w", err)
	}
	return state, nil
}

// PutTenant creates the tenant, active, or replaces the settings of an
// existing one whatever its state; created reports which.
func (s *Store) PutTenant(ctx context.Context, id string, set TenantSettings) (_ Tenant, created bool, _ error) {
	var providers []byte
	if set.Providers != nil {
		var err error
		if providers, err = json.Marshal(set.Providers); err != nil {
			return Tenant{}, false, fmt.Errorf("encode providers: %w", err)
		}
	}
	t, err := scanTenant(s.db.QueryRow(ctx, putTenantSQL, pgx.StrictNamedArgs{
		"id": id, "send_rate": set.SendRate, "daily_cap": set.DailyCap, "providers": providers,
	}), &created)
	if err != nil {
		return Tenant{}, false, fmt.Errorf("put tenant: %w", err)
	}
	return t, created, nil
}

// Tenant returns one tenant, or ErrNotFound.
func (s *Store) Tenant(ctx context.Context, id string) (Tenant, error) {
	t, err := scanTenant(s.db.QueryRow(ctx, getTenantSQL, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, ErrNotFound
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("get tenant: %w", err)
	}
	return t, nil
}

// Tenants returns up to limit tenants whose id sorts after after, in id
// order.
func (s *Store) Tenants(ctx context.Context, after string, limit int) ([]Tenant, error) {
	rows, err := s.db.Query(ctx, listTenantsSQL, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	defer rows.Close()
	var out []Tenant
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, fmt.Errorf("list tenants: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

// SuspendTenant suspends the tenant and, in the same transaction, pauses
// each of its active jobs as a partner's pause would (ChangeJob): nothing
// more of them is planned or claimed, and what is claimed finishes. It
// returns the tenant and the jobs it paused; a complete job is left as it
// is. ErrNotFound for an unknown tenant. Suspending twice pauses nothing
// the second time, since no job can have been resumed meanwhile.
func (s *Store) SuspendTenant(ctx context.Context, id string) (Tenant, []uuid.UUID, error) {
	var t Tenant
	var paused []uuid.UUID
	err := pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		paused = nil
		if t, err = s.setTenantState(ctx, tx, id, TenantSuspended); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, activeJobsSQL, id)
		jobs, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		if err != nil {
			return fmt.Errorf("list active jobs: %w", err)
		}
		for _, job := range jobs {
			var te *TransitionError
			switch err := changeJob(ctx, tx, id, job, Pause); {
			case errors.As(err, &te):
				// Complete: there is nothing left to pause.
			case err != nil:
				return fmt.Errorf("pause job %s: %w", job, err)
			default:
				paused = append(paused, job)
			}
		}
		return nil
	})
	if err != nil {
		return Tenant{}, nil, err
	}
	return t, paused, nil
}

// ResumeTenant makes the tenant active again. Its jobs stay as they are:
// the jobs its suspension paused are resumed by the partner, job by job,
// since Herald cannot tell them from jobs the partner had paused itself.
func (s *Store) ResumeTenant(ctx context.Context, id string) (Tenant, error) {
	var t Tenant
	err := pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		t, err = s.setTenantState(ctx, tx, id, TenantActive)
		return err
	})
	return t, err
}

func (s *Store) setTenantState(ctx context.Context, tx pgx.Tx, id, state string) (Tenant, error) {
	t, err := scanTenant(tx.QueryRow(ctx, setTenantStateSQL, id, state))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, ErrNotFound
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("set tenant state: %w", err)
	}
	return t, nil
}

// lockActiveTenant share-locks the tenant's row until tx ends and returns
// ErrTenantSuspended unless it is active: a job created or resumed under
// the lock cannot slip past a suspension in progress, which takes the row
// first and pauses only the jobs it sees.
func lockActiveTenant(ctx context.Context, tx pgx.Tx, id string) error {
	var state string
	err := tx.QueryRow(ctx, lockTenantSQL, id).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrTenantUnknown
	}
	if err != nil {
		return fmt.Errorf("lock tenant: %w", err)
	}
	if state != TenantActive {
		return ErrTenantSuspended
	}
	return nil
}
