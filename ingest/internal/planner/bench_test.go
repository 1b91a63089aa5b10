package planner_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/planner"
	"herald/shared/event"
	"herald/shared/messaging"
)

// benchAudience is the audience of every benchmarked job: 20 batches of
// testConfig's 500, one chunk.
const benchAudience = 10_000

// BenchmarkPlan measures planning one job of benchAudience customers:
// reading its audience page by page and recording its batches. It reports
// recipients per second.
func BenchmarkPlan(b *testing.B) {
	db := testenv.DB(b)
	ctx := context.Background()
	seed(b, db, "acme", benchAudience)
	p := planner.New(db, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), testConfig)
	if planned, err := p.PlanNext(ctx); err != nil || !planned {
		b.Fatalf("warm-up plan: planned %v, %v", planned, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		addJob(b, db, "acme", event.ChannelEmail, map[string]any{"all_subscribed": true})
		b.StartTimer()
		if planned, err := p.PlanNext(ctx); err != nil || !planned {
			b.Fatalf("planned %v, %v", planned, err)
		}
	}
	b.ReportMetric(float64(b.N*benchAudience)/b.Elapsed().Seconds(), "recipients/s")
}

// BenchmarkRelease measures one round of the releaser publishing a planned
// job's benchAudience recipients (20 batches) to the real Pub/Sub emulator:
// reading the recorded batches, their customers and their job, publishing
// and marking them published. It reports recipients per second.
func BenchmarkRelease(b *testing.B) {
	db := testenv.DB(b)
	ctx := context.Background()
	ps, err := messaging.Connect(ctx, testenv.Pubsub(b))
	if err != nil {
		b.Fatal(err)
	}
	defer ps.Close()
	if err := messaging.EnsureTopology(ctx, ps, messaging.Recommend); err != nil {
		b.Fatal(err)
	}
	pub := messaging.NewPublisher(ps, messaging.Recommend, event.Identity, prometheus.NewRegistry())
	defer pub.Stop()
	seed(b, db, "acme", benchAudience)
	p := planner.New(db, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), testConfig)
	// plan records a job's batches, and finishes every batch released
	// before, so that the window has room for all of them.
	plan := func() {
		b.Helper()
		if _, err := db.Exec(ctx, `UPDATE job_batches SET done_at = now() WHERE done_at IS NULL`); err != nil {
			b.Fatal(err)
		}
		if planned, err := p.PlanNext(ctx); err != nil || !planned {
			b.Fatalf("planned %v, %v", planned, err)
		}
	}
	want := benchAudience / testConfig.BatchSize
	plan()
	if n, err := p.ReleaseOnce(ctx); err != nil || n != want {
		b.Fatalf("warm-up release: %d batches, %v; want %d", n, err, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		addJob(b, db, "acme", event.ChannelEmail, map[string]any{"all_subscribed": true})
		plan()
		b.StartTimer()
		if n, err := p.ReleaseOnce(ctx); err != nil || n != want {
			b.Fatalf("released %d batches, %v; want %d", n, err, want)
		}
	}
	b.ReportMetric(float64(b.N*benchAudience)/b.Elapsed().Seconds(), "recipients/s")
}
