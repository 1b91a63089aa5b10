package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

func (f *fixture) jobState(id uuid.UUID) string {
	f.t.Helper()
	var s string
	if err := f.db.QueryRow(context.Background(), `SELECT state FROM jobs WHERE id = $1`, id).Scan(&s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// A suspended tenant's jobs neither start nor resume, and resuming the
// tenant leaves them paused.
func TestSuspendedTenantStartsAndResumesNoJob(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rate := 20.0
	if _, created, err := f.s.PutTenant(ctx, "acme", TenantSettings{SendRate: &rate}); err != nil || !created {
		t.Fatalf("put tenant: created %v, %v", created, err)
	}
	f.template("acme", "bf")
	running := f.create("acme", newJob("k1", "")).ID
	held := f.create("acme", newJob("k2", "")).ID
	if err := f.s.ChangeJob(ctx, "acme", held, Pause); err != nil {
		t.Fatal(err)
	}

	tn, paused, err := f.s.SuspendTenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uuid.UUID{running}, paused); tn.State != TenantSuspended || *tn.SendRate != 20 || diff != "" {
		t.Fatalf("suspend: %+v, paused (-want +got):\n%s", tn, diff)
	}
	before := f.jobsAndOutbox()
	if _, err := f.s.CreateJob(ctx, "acme", newJob("k3", ""), respond); !errors.Is(err, ErrTenantSuspended) {
		t.Fatalf("create a job while suspended: %v", err)
	}
	if after := f.jobsAndOutbox(); after != before {
		t.Fatalf("a refused job changed jobs and outbox from %v to %v", before, after)
	}
	if err := f.s.ChangeJob(ctx, "acme", running, Resume); !errors.Is(err, ErrTenantSuspended) || f.jobState(running) != StatePaused {
		t.Fatalf("resume a job while suspended: %v, job %s", err, f.jobState(running))
	}

	if tn, err := f.s.ResumeTenant(ctx, "acme"); err != nil || tn.State != TenantActive || tn.StateChangedAt == nil {
		t.Fatalf("resume tenant: %+v, %v", tn, err)
	}
	if a, b := f.jobState(running), f.jobState(held); a != StatePaused || b != StatePaused {
		t.Fatalf("after the tenant's resume the jobs are %s and %s", a, b)
	}
	if err := f.s.ChangeJob(ctx, "acme", running, Resume); err != nil || f.jobState(running) != StateActive {
		t.Fatalf("resume the job: %v", err)
	}
	if _, _, err := f.s.SuspendTenant(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("suspend an unknown tenant: %v", err)
	}
}

// A job submitted while a suspension is in progress waits for it and is
// then refused: it cannot be stored active beside jobs the suspension
// paused.
func TestJobWaitsForASuspensionInProgress(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := f.s.PutTenant(ctx, "acme", TenantSettings{}); err != nil {
		t.Fatal(err)
	}
	f.template("acme", "bf")
	// The suspension's first step, held open: the tenant's row, updated.
	tx, err := f.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, setTenantStateSQL, "acme", TenantSuspended); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.s.CreateJob(ctx, "acme", newJob("k1", ""), respond)
		done <- err
	}()
	// Wait until the job's transaction waits for the tenant's row.
	for {
		var waiting bool
		err := f.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the job did not wait for the suspension: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrTenantSuspended) {
		t.Fatalf("a job submitted during the suspension: %v", err)
	}
	if n := f.count(`SELECT count(*) FROM jobs`); n != 0 {
		t.Fatalf("%d jobs stored", n)
	}
}
