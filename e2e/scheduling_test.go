package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"herald/deploy/stack"
)

// TestSmallJobIsNotStuckBehindABulkOne submits a one-recipient job while a
// 150,000-recipient job is sending: the small job is delivered while the
// bulk job has most of its work still ahead, because the pipeline holds a
// bounded window of batches and no job may fill all of it. The bulk job is
// several windows deep (one job may have 48 batches of 500 in flight), so
// a pipeline that queued it whole would hold the small job behind most of it.
func TestSmallJobIsNotStuckBehindABulkOne(t *testing.T) {
	st := startStack(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 150_000, Items: 300, Seed: 59}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	bulk, err := client.SubmitJob(ctx, "bulk", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	for {
		j, err := client.GetJob(ctx, bulk.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.Counts.Sent >= 10_000 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var one string
	for i := 7; ; i++ {
		if c := tn.Customer(i); c.Subscribed && !tn.Suppressed(i) {
			one = c.ID
			break
		}
	}
	triggered := blackFriday()
	triggered["audience"] = map[string]any{"customer_ids": []string{one}}
	triggered["campaign"] = "back-in-stock"
	submitted := time.Now()
	small, err := client.SubmitJob(ctx, "triggered", triggered)
	if err != nil {
		t.Fatal(err)
	}
	small, err = client.WaitJob(ctx, small.ID, 50*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(submitted)
	b, err := client.GetJob(ctx, bulk.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("one-recipient job delivered %s after submission, while the %d-recipient job had %d of %d done",
		took.Round(time.Millisecond), tn.Customers, b.Done(), b.Planned)
	if small.Counts.Sent != 1 {
		t.Fatalf("triggered job %+v: want its one recipient sent", small.Counts)
	}
	if b.State == "complete" || b.Done() > int64(tn.Customers)/2 {
		t.Fatalf("the bulk job had %d of %d done: the triggered job waited behind it", b.Done(), b.Planned)
	}
	// The bulk job has made its point; cancel it rather than wait.
	if _, err := client.Do(ctx, http.MethodPost, "/v1/jobs/"+bulk.ID+"/cancel", "", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
}
