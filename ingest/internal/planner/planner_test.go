package planner_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/planner"
	"herald/shared/event"
	"herald/shared/messaging"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// seed loads n subscribed customers of tenant and one job for all of them,
// with its outbox row, as job acceptance would.
func seed(t testing.TB, db *pgxpool.Pool, tenant string, n int) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	i := 0
	_, err := db.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"tenant_id", "id", "email", "first_name"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			return []any{tenant, fmt.Sprintf("c%09d", i), fmt.Sprintf("c%d@example.com", i), "Ada"}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	job := uuid.New()
	now := time.Now()
	_, err = db.Exec(ctx, `INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel, template_id,
		template_version, audience, products_per_message, submitted_at, deadline)
		VALUES ($1, $2, $3, '', 'email', 't', 1, '{"all_subscribed":true}', 6, $4, $5)`, tenant, job, job.String(), now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO outbox (kind, tenant_id, job_id) VALUES ('plan_job', $1, $2)`, tenant, job); err != nil {
		t.Fatal(err)
	}
	return job
}

// planAll runs a planner until the job is planned and returns the peak of
// live heap objects seen meanwhile.
func planAll(t testing.TB, db *pgxpool.Pool, pub planner.Publisher, tenant string, job uuid.UUID) uint64 {
	t.Helper()
	p := planner.New(db, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), testConfig)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	go func() { done <- p.Run(ctx, context.Background()) }()
	released := make(chan error, 1)
	go func() { released <- p.Release(ctx, context.Background()) }()
	deadline := time.After(5 * time.Minute)
	for {
		var planned bool
		if err := db.QueryRow(context.Background(), `SELECT planned_at IS NOT NULL FROM jobs WHERE tenant_id = $1 AND id = $2`, tenant, job).Scan(&planned); err != nil {
			t.Fatal(err)
		}
		if planned {
			break
		}
		select {
		case <-deadline:
			t.Fatal("job not planned within 5 minutes")
		case <-time.After(20 * time.Millisecond):
		}
	}
	time.Sleep(500 * time.Millisecond) // let the releaser fill the window
	cancel()
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	return peak.Load()
}

// testConfig plans in batches of 500 with a window of 64 batches, 48 per job.
var testConfig = planner.Config{
	BatchSize: 500, ChunkBatches: 20, Workers: 1, Lease: 30 * time.Second, Poll: 50 * time.Millisecond,
	Stall: time.Minute, MaxPublishes: 3, Window: 64, JobWindow: 48, ReleaseEvery: 20 * time.Millisecond,
}

// TestPlanningMemoryIsFlat plans jobs of 100,000 and 1,000,000 recipients
// and releases their first batches to the real Pub/Sub emulator, and checks
// that the planner's live heap does not grow with the audience, that the
// plan holds every recipient exactly once, and that no more batches were
// released than the window allows (nothing completes them here).
func TestPlanningMemoryIsFlat(t *testing.T) {
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
	pub := messaging.NewPublisher(ps, messaging.Recommend, event.Identity, prometheus.NewRegistry())
	defer pub.Stop()
	peaks := map[int]uint64{}
	for _, n := range []int{100_000, 1_000_000} {
		tenant := fmt.Sprintf("t%d", n)
		job := seed(t, db, tenant, n)
		peaks[n] = planAll(t, db, pub, tenant, job)
		var planned, batches, published, ids, distinct int64
		err := db.QueryRow(ctx, `SELECT j.planned, count(*), count(b.published_at), sum(cardinality(b.customer_ids)),
			(SELECT count(DISTINCT id) FROM job_batches, unnest(customer_ids) id WHERE job_id = $2)
			FROM jobs j JOIN job_batches b ON b.tenant_id = j.tenant_id AND b.job_id = j.id
			WHERE j.tenant_id = $1 AND j.id = $2 GROUP BY j.planned`, tenant, job).
			Scan(&planned, &batches, &published, &ids, &distinct)
		if err != nil {
			t.Fatal(err)
		}
		if planned != int64(n) || ids != int64(n) || distinct != int64(n) || batches != int64((n+499)/500) {
			t.Fatalf("%d recipients: planned %d, %d batches holding %d ids (%d distinct)", n, planned, batches, ids, distinct)
		}
		if published == 0 || published > int64(testConfig.JobWindow) {
			t.Fatalf("%d batches released with nothing completing; want 1 to %d (the job window)", published, testConfig.JobWindow)
		}
		t.Logf("planned %d recipients in %d batches, released %d; peak live heap %.1f MB", n, batches, published, float64(peaks[n])/(1<<20))
	}
	// Ten times the audience may cost a little more (buffers warm up), but
	// nothing in proportion to it.
	if small, large := peaks[100_000], peaks[1_000_000]; large > small+small/2+8<<20 {
		t.Fatalf("peak live heap grew with the audience: %.1f MB for 100k, %.1f MB for 1M",
			float64(small)/(1<<20), float64(large)/(1<<20))
	}
}

// record stores a job of n batches of one recipient each, with its
// deadline, as planning would.
func record(t *testing.T, db *pgxpool.Pool, tenant string, batches int, deadline time.Duration) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	job := seed(t, db, tenant, batches)
	if _, err := db.Exec(ctx, `UPDATE jobs SET deadline = submitted_at + $3::interval, planned = $4, planned_at = now()
		WHERE tenant_id = $1 AND id = $2`, tenant, job, deadline.String(), batches); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM outbox WHERE job_id = $1`, job); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids)
		SELECT $1, $2, g - 1, ARRAY['c' || lpad(g::text, 9, '0')] FROM generate_series(1, $3) g`, tenant, job, batches); err != nil {
		t.Fatal(err)
	}
	return job
}

// TestReleaseIsEarliestDeadlineFirstWithinTheWindow checks the scheduler:
// at most Window batches in flight, at most JobWindow of one job, earliest
// deadline first, and room for a late job beside a large one.
func TestReleaseIsEarliestDeadlineFirstWithinTheWindow(t *testing.T) {
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
	pub := messaging.NewPublisher(ps, messaging.Recommend, event.Identity, prometheus.NewRegistry())
	defer pub.Stop()
	bulk := record(t, db, "bulk", 100, 4*time.Hour)
	urgent := record(t, db, "urgent", 5, time.Hour)
	late := record(t, db, "late", 1, 8*time.Hour)
	cfg := testConfig
	cfg.Window, cfg.JobWindow = 10, 6
	p := planner.New(db, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), cfg)
	released := func() map[uuid.UUID]int {
		t.Helper()
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Release(rctx, context.Background()) }()
		time.Sleep(300 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		rows, _ := db.Query(ctx, `SELECT job_id, count(*) FROM job_batches WHERE published_at IS NOT NULL GROUP BY job_id`)
		got := map[uuid.UUID]int{}
		var id uuid.UUID
		var n int
		if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { got[id] = n; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	// Earliest deadline first: urgent (5), then bulk up to the window (5).
	if got := released(); got[urgent] != 5 || got[bulk] != 5 || got[late] != 0 {
		t.Fatalf("first round released urgent %d, bulk %d, late %d; want 5, 5, 0", got[urgent], got[bulk], got[late])
	}
	// urgent completes: bulk may grow to its cap (6), and the late job
	// gets the room the cap leaves.
	if _, err := db.Exec(ctx, `UPDATE job_batches SET done_at = now() WHERE job_id = $1`, urgent); err != nil {
		t.Fatal(err)
	}
	if got := released(); got[bulk] != 6 || got[late] != 1 {
		t.Fatalf("second round: bulk %d, late %d released; want 6 (its cap) and 1", got[bulk], got[late])
	}
	// A parked batch (only retries left) frees its place.
	if _, err := db.Exec(ctx, `UPDATE job_batches SET parked_at = now() WHERE job_id = $1 AND seq = 0`, bulk); err != nil {
		t.Fatal(err)
	}
	if got := released(); got[bulk] != 7 {
		t.Fatalf("after parking one of bulk's batches, %d of its batches released; want 7", got[bulk])
	}
}
