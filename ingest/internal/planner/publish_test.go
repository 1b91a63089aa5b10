package planner_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/planner"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/messaging"
)

// capture passes batches on to a real publisher and keeps what each one
// carried.
type capture struct {
	planner.Publisher
	mu  sync.Mutex
	got []sent
}

// sent is what one published batch carried.
type sent struct {
	Tenant, Job, Channel string
	Seq                  int64
	Recipients           []string // id, email and first name of each
}

func (c *capture) Publish(ctx context.Context, b event.Batch, traceparent string) (*pubsub.PublishResult, error) {
	rb := b.(*eventv1.RecommendBatch)
	s := sent{Tenant: rb.Job.TenantId, Job: rb.Job.JobId, Channel: rb.Job.Channel, Seq: rb.Job.Seq}
	for _, r := range rb.Recipients {
		s.Recipients = append(s.Recipients, r.CustomerId+" "+r.Email+" "+r.FirstName)
	}
	c.mu.Lock()
	c.got = append(c.got, s)
	c.mu.Unlock()
	return c.Publisher.Publish(ctx, b, traceparent)
}

// take returns what was published since the last take, in a stable order.
func (c *capture) take() []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.got
	c.got = nil
	slices.SortFunc(got, func(a, b sent) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return int(a.Seq - b.Seq)
	})
	return got
}

// TestReleaseAndRedrivePublishWholeBatches checks the loop that release and
// re-drive share: each recorded batch of several jobs goes out once per
// round under its own job and sequence number, carrying every one of its
// customers as they are when it is published (planning recorded ids only),
// and re-driven batches are counted.
func TestReleaseAndRedrivePublishWholeBatches(t *testing.T) {
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
	pub := &capture{Publisher: emu}
	jobs := map[string]string{}
	for _, tenant := range []string{"a", "b"} {
		jobs[tenant] = record(t, db, tenant, 3, time.Hour).String()
	}
	// Changed after planning: the message carries the new address.
	if _, err := db.Exec(ctx, `UPDATE customers SET email = 'new@example.com' WHERE tenant_id = 'b' AND id = 'c000000002'`); err != nil {
		t.Fatal(err)
	}
	var want []sent
	for _, tenant := range []string{"a", "b"} {
		for seq := range int64(3) {
			email := fmt.Sprintf("c%d@example.com", seq+1)
			if tenant == "b" && seq == 1 {
				email = "new@example.com"
			}
			want = append(want, sent{Tenant: tenant, Job: jobs[tenant], Channel: "email", Seq: seq,
				Recipients: []string{fmt.Sprintf("c%09d %s Ada", seq+1, email)}})
		}
	}
	reg := prometheus.NewRegistry()
	p := planner.New(db, pub, slog.New(slog.DiscardHandler), reg, testConfig)

	n, err := p.ReleaseOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("released %d batches, want %d", n, len(want))
	}
	if diff := cmp.Diff(want, pub.take()); diff != "" {
		t.Fatalf("released batches (-want +got):\n%s", diff)
	}
	if n, err := p.ReleaseOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second release round published %d batches (%v); want none, all are in flight", n, err)
	}

	// Every batch stalled: the re-driver publishes them all again.
	if _, err := db.Exec(ctx, `UPDATE job_batches SET published_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if err := p.RedriveOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, pub.take()); diff != "" {
		t.Fatalf("re-driven batches (-want +got):\n%s", diff)
	}
	var publishes []int
	rows, _ := db.Query(ctx, `SELECT publishes FROM job_batches ORDER BY tenant_id, seq`)
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		publishes = append(publishes, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{2, 2, 2, 2, 2, 2}, publishes); diff != "" {
		t.Fatalf("publishes per batch after release and re-drive (-want +got):\n%s", diff)
	}
	if got := counter(t, reg, "herald_planner_batches_redriven_total"); got != float64(len(want)) {
		t.Fatalf("herald_planner_batches_redriven_total = %v, want %d", got, len(want))
	}
}

// counter reads a counter from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
