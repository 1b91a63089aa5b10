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

	"herald/ingest/internal/planner"
	"herald/shared/event"
	"herald/shared/messaging"
	"herald/shared/testenv"
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
	p := planner.New(db, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), planner.Config{
		BatchSize: 500, ChunkBatches: 20, Workers: 1, Lease: 30 * time.Second, Poll: 50 * time.Millisecond,
		Stall: time.Minute, MaxPublishes: 3,
	})
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
	cancel()
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return peak.Load()
}

// TestPlanningMemoryIsFlat plans jobs of 100,000 and 1,000,000 recipients
// through the real Pub/Sub emulator and checks that the planner's live heap
// does not grow with the audience, and that the plan holds every recipient
// exactly once.
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
		var planned, batches, ids, distinct int64
		err := db.QueryRow(ctx, `SELECT j.planned, count(*), sum(cardinality(b.customer_ids)),
			(SELECT count(DISTINCT id) FROM job_batches, unnest(customer_ids) id WHERE job_id = $2)
			FROM jobs j JOIN job_batches b ON b.tenant_id = j.tenant_id AND b.job_id = j.id
			WHERE j.tenant_id = $1 AND j.id = $2 AND b.published_at IS NOT NULL GROUP BY j.planned`, tenant, job).
			Scan(&planned, &batches, &ids, &distinct)
		if err != nil {
			t.Fatal(err)
		}
		if planned != int64(n) || ids != int64(n) || distinct != int64(n) || batches != int64((n+499)/500) {
			t.Fatalf("%d recipients: planned %d, %d published batches holding %d ids (%d distinct)", n, planned, batches, ids, distinct)
		}
		t.Logf("planned %d recipients in %d batches; peak live heap %.1f MB", n, batches, float64(peaks[n])/(1<<20))
	}
	// Ten times the audience may cost a little more (buffers warm up), but
	// nothing in proportion to it.
	if small, large := peaks[100_000], peaks[1_000_000]; large > small+small/2+8<<20 {
		t.Fatalf("peak live heap grew with the audience: %.1f MB for 100k, %.1f MB for 1M",
			float64(small)/(1<<20), float64(large)/(1<<20))
	}
}
