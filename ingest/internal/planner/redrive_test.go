package planner_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/planner"
	"herald/shared/event"
	"herald/shared/messaging"
)

// TestStalledBatchesAreRedrivenUntilTheirJobEnds checks when the re-driver
// publishes a stalled job's unfinished batch again: at the stall interval
// for its first MaxPublishes publishes, then at doubling intervals, and
// once as soon as the job's deadline has passed — never giving up while
// the job is active, so a batch whose copies were all lost cannot leave
// its job waiting forever.
func TestStalledBatchesAreRedrivenUntilTheirJobEnds(t *testing.T) {
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
	cfg := testConfig // a stall of a minute, 3 publishes at that interval
	stall := cfg.Stall
	for i, tc := range []struct {
		name      string
		publishes int
		published time.Duration // how long ago it was last published
		deadline  time.Duration // from now; negative: passed that long ago
		redriven  bool
	}{
		{"within its publishes, stalled", 1, 2 * stall, time.Hour, true},
		{"within its publishes, not stalled yet", 2, stall / 2, time.Hour, false},
		{"publishes used up, first back-off not over", 3, 3 * stall / 2, time.Hour, false},
		{"publishes used up, first back-off over", 3, 5 * stall / 2, time.Hour, true},
		{"second back-off not over", 4, 3 * stall, time.Hour, false},
		{"second back-off over", 4, 5 * stall, time.Hour, true},
		{"deadline passed since the last publish", 9, 2 * stall, -stall / 2, true},
		{"published after the deadline, backing off", 9, 2 * stall, -3 * stall, false},
		{"deadline passed, not stalled yet", 9, stall / 2, -stall / 4, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := record(t, db, fmt.Sprintf("tenant%d", i), 1, time.Hour)
			if _, err := db.Exec(ctx, `UPDATE jobs SET submitted_at = now() - interval '1 day', deadline = now() + make_interval(secs => $2) WHERE id = $1`,
				job, tc.deadline.Seconds()); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, `UPDATE job_batches SET publishes = $2, published_at = now() - make_interval(secs => $3) WHERE job_id = $1`,
				job, tc.publishes, tc.published.Seconds()); err != nil {
				t.Fatal(err)
			}
			p := planner.New(db, pub, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), cfg)
			if err := p.RedriveOnce(ctx); err != nil {
				t.Fatal(err)
			}
			var publishes int
			if err := db.QueryRow(ctx, `SELECT publishes FROM job_batches WHERE job_id = $1`, job).Scan(&publishes); err != nil {
				t.Fatal(err)
			}
			want := tc.publishes
			if tc.redriven {
				want++
			}
			if diff := cmp.Diff(want, publishes); diff != "" {
				t.Fatalf("publishes after a re-drive round (-want +got):\n%s", diff)
			}
		})
	}
}
