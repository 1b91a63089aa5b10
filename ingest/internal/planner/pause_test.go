package planner_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/planner"
	"herald/shared/event"
	"herald/shared/messaging"
)

// TestPausedAndCancelledJobsStopPlanning pauses one job and cancels
// another in the very transaction that records their first chunk (a
// trigger plays the API): planning stops after that chunk; the paused job, once resumed, is planned from its
// cursor to the end with every recipient exactly once; the cancelled job
// is never planned further.
func TestPausedAndCancelledJobsStopPlanning(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	ps, err := messaging.Connect(ctx, testenv.Pubsub(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	if err := messaging.EnsureTopology(ctx, ps, messaging.Recommend); err != nil {
		t.Fatal(err)
	}
	emu := messaging.NewPublisher(ps, messaging.Recommend, event.Identity, prometheus.NewRegistry())
	defer emu.Stop()
	const n, batch, chunk = 3000, 100, 2
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	planned := func(tenant string) (planned int64, done bool, ids, distinct int64) {
		t.Helper()
		err := db.QueryRow(ctx, `SELECT j.planned, j.planned_at IS NOT NULL,
			(SELECT coalesce(sum(cardinality(customer_ids)), 0) FROM job_batches WHERE tenant_id = $1),
			(SELECT count(DISTINCT id) FROM job_batches, unnest(customer_ids) id WHERE tenant_id = $1)
			FROM jobs j WHERE j.tenant_id = $1`, tenant).Scan(&planned, &done, &ids, &distinct)
		if err != nil {
			t.Fatal(err)
		}
		return planned, done, ids, distinct
	}
	// The trigger sets a job's state as its first batch is recorded, to
	// what the test put in test_state_on_first_batch for its tenant.
	exec(`CREATE TABLE test_state_on_first_batch (tenant_id text PRIMARY KEY, state text NOT NULL)`)
	exec(`CREATE FUNCTION test_set_state() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			UPDATE jobs j SET state = t.state FROM test_state_on_first_batch t
			WHERE j.tenant_id = NEW.tenant_id AND j.id = NEW.job_id AND t.tenant_id = NEW.tenant_id AND j.state = 'active';
			DELETE FROM test_state_on_first_batch WHERE tenant_id = NEW.tenant_id;
			RETURN NEW;
		END $$`)
	exec(`CREATE TRIGGER test_set_state AFTER INSERT ON job_batches FOR EACH ROW EXECUTE FUNCTION test_set_state()`)
	run := func(pub planner.Publisher) (stop func()) {
		p := planner.New(db, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), planner.Config{
			BatchSize: batch, ChunkBatches: chunk, Workers: 2, Lease: 30 * time.Second, Poll: 50 * time.Millisecond,
			Stall: time.Minute, MaxPublishes: 3, Window: 64, JobWindow: 48, ReleaseEvery: 20 * time.Millisecond,
		})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx, context.Background()) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	}

	exec(`INSERT INTO test_state_on_first_batch VALUES ('paused', 'paused'), ('cancelled', 'cancelled')`)
	paused := seed(t, db, "paused", n)
	stop := run(emu)
	time.Sleep(time.Second)
	if got, done, _, _ := planned("paused"); got != batch*chunk || done {
		stop()
		t.Fatalf("paused during its first chunk: planned %d (done %v), want %d", got, done, batch*chunk)
	}
	// Resume as the API does: active again, planning task handed back.
	exec(`UPDATE jobs SET state = 'active' WHERE id = $1`, paused)
	exec(`UPDATE outbox SET lease_owner = '', lease_until = '-infinity' WHERE job_id = $1`, paused)
	deadline := time.Now().Add(time.Minute)
	for {
		got, done, ids, distinct := planned("paused")
		if done {
			if got != n || ids != n || distinct != n {
				t.Fatalf("after resume: planned %d, %d ids in batches (%d distinct); want %d", got, ids, distinct, n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("resumed job not planned: %d of %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()

	cancelled := seed(t, db, "cancelled", n)
	stop = run(emu)
	time.Sleep(time.Second)
	stop()
	exec(`DELETE FROM outbox WHERE job_id = $1`, cancelled) // as the API's cancel does
	if got, done, _, _ := planned("cancelled"); got != batch*chunk || done {
		t.Fatalf("cancelled during its first chunk: planned %d (done %v), want %d", got, done, batch*chunk)
	}
}
