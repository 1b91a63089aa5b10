package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"herald/deploy/stack"
)

// TestQuietHoursHoldThenSend runs a job inside its recipients' quiet hours
// (they are in UTC here) in both modes: skip sends nothing; hold sends
// nothing until the window ends, then everything, once.
func TestQuietHoursHoldThenSend(t *testing.T) {
	t.Parallel() // mostly waiting: on rates, retries or the clock
	st := startStack(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 300, Items: 50, Seed: 71}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	want, _ := expected(tn)
	now := time.Now().UTC()
	clock := func(t time.Time) string { return fmt.Sprintf("%02d:%02d", t.Hour(), t.Minute()) }
	// The window started a minute ago and ends at the start of the minute
	// after next.
	start, end := now.Add(-time.Minute), now.Add(2*time.Minute)

	skip := blackFriday()
	skip["quiet_hours"] = map[string]string{"start": clock(start), "end": clock(end), "mode": "skip"}
	job, err := client.SubmitJob(ctx, "quiet-skip", skip)
	if err != nil {
		t.Fatal(err)
	}
	if job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	if job.Counts.Skipped != int64(len(want)) || st.Mail.Stats().Messages != 0 {
		t.Fatalf("skip mode: %+v, %d messages; want all %d skipped, none sent", job.Counts, st.Mail.Stats().Messages, len(want))
	}

	hold := blackFriday()
	hold["quiet_hours"] = map[string]string{"start": clock(start), "end": clock(end), "mode": "hold"}
	job, err = client.SubmitJob(ctx, "quiet-hold", hold)
	if err != nil {
		t.Fatal(err)
	}
	opens := time.Date(end.Year(), end.Month(), end.Day(), end.Hour(), end.Minute(), 0, 0, time.UTC)
	if job, err = client.WaitJob(ctx, job.ID, 200*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	first := time.Now()
	for _, m := range st.Mail.Messages() {
		if m.Received.Before(first) {
			first = m.Received
		}
	}
	t.Logf("hold mode: window ended %s, first message at %s; job %+v", opens.Format(time.TimeOnly), first.UTC().Format(time.TimeOnly), job.Counts)
	if first.Before(opens) {
		t.Fatalf("a message went out at %s, inside the quiet hours (they ended %s)", first, opens)
	}
	if stats := st.Mail.Stats(); job.Counts.Sent != int64(len(want)) || stats.Messages != int64(len(want)) || stats.DuplicateRecipients != 0 {
		t.Fatalf("hold mode: %+v, %d messages (%d duplicate); want every recipient once", job.Counts, stats.Messages, stats.DuplicateRecipients)
	}
}
