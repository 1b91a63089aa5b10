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
	//go:embed sql/lock_job_for_redrive.sql
	lockJobForRedriveSQL string
	//go:embed sql/redrive_failed.sql
	redriveFailedSQL string
)

// Redrive is the re-drive of a job's failed recipients.
const Redrive = "redrive"

// ErrDeadlinePassed means the job's deadline has passed: nothing of it can
// be sent any more.
var ErrDeadlinePassed = errors.New("the job's deadline has passed")

// Redriven says what a re-drive took back.
type Redriven struct {
	// Recipients is how many failed recipients will be tried again.
	Recipients int64
	// Batches is how many batches will be published again.
	Batches int64
}

// RedriveJob gives an active job's failed recipients another go, and
// publishes again the batches it never finished (those a stage sent to a
// dead-letter topic among them). A paused or cancelled job is a
// *TransitionError, a job past its deadline ErrDeadlinePassed. Repeating it
// with nothing failed changes nothing.
func (s *Store) RedriveJob(ctx context.Context, tenant string, id uuid.UUID, now time.Time) (Redriven, error) {
	var out Redriven
	err := pgdb.InTx(ctx, s.db, func(tx pgx.Tx) error {
		var state string
		var submitted, deadline time.Time
		err := tx.QueryRow(ctx, lockJobForRedriveSQL, tenant, id).Scan(&state, &submitted, &deadline)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return fmt.Errorf("lock job: %w", err)
		case state != StateActive:
			return &TransitionError{Action: Redrive, State: state}
		case !now.Before(deadline):
			return ErrDeadlinePassed
		}
		if err := tx.QueryRow(ctx, redriveFailedSQL, tenant, id, submitted).Scan(&out.Recipients, &out.Batches); err != nil {
			return fmt.Errorf("re-drive failed recipients: %w", err)
		}
		return nil
	})
	return out, err
}
