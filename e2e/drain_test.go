package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"herald/deploy/stack"
)

// drainTimeout is how long a service may take to exit after SIGTERM: the
// stack runs services with a 10s shutdown grace (HERALD_SHUTDOWN_GRACE), and
// Kubernetes gives a pod terminationGracePeriodSeconds beyond that before it
// sends SIGKILL. A service that needs longer is killed mid-drain in a cluster.
const drainTimeout = 15 * time.Second

// TestDrainOnSigtermLosesAndRepeatsNothing does to a running job what a
// rolling update does to it in Kubernetes: it sends SIGTERM to dispatch, then
// to render, each while the job is in full flow, and starts each again as a
// new pod would. Each service must stop pulling, finish or nack its in-flight
// batches and exit cleanly within its grace period, and every recipient must
// get exactly one message: none lost, none twice.
func TestDrainOnSigtermLosesAndRepeatsNothing(t *testing.T) {
	t.Parallel() // most of it is waiting for drained batches to come round again
	// Small batches and claim chunks put many batches in flight in every
	// stage when the signal lands.
	st := startStack(t, stack.Options{Flags: map[string][]string{
		"ingest":   {"-batch-size=100", "-plan-chunk=5", "-stall-after=5s"},
		"dispatch": {"-claim-chunk=20"},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	client := partnerClient(t, st, "acme")
	tn := stack.DemoTenant{ID: "acme", Customers: 10_000, Items: 200, Seed: 23}
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	want, suppressed := expected(tn)
	job, err := client.SubmitJob(ctx, "drain", blackFriday())
	if err != nil {
		t.Fatal(err)
	}

	// Roll dispatch at a fifth of the mail and render at two fifths, so each
	// stops with batches in flight and the other stages still busy.
	for i, victim := range []string{"dispatch", "render"} {
		at := int64(len(want)) * int64(i+1) / 5
		waitSent(ctx, t, client, job.ID, at)
		before, _ := client.GetJob(ctx, job.ID)
		start := time.Now()
		if err := st.Terminate(victim, drainTimeout); err != nil {
			t.Fatalf("SIGTERM %s at %d sent: %v", victim, before.Counts.Sent, err)
		}
		t.Logf("%s drained and exited %v after SIGTERM, at %d of %d sent",
			victim, time.Since(start).Round(time.Millisecond), before.Counts.Sent, len(want))
		if err := st.Launch(victim); err != nil {
			t.Fatal(err)
		}
		if err := st.WaitReady(ctx, victim); err != nil {
			t.Fatal(err)
		}
	}

	job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	stats := st.Mail.Stats()
	report := fmt.Sprintf("messages %d, lost %d, duplicated %d, ambiguous %d",
		stats.Messages, int64(len(want))-stats.DistinctRecipients, stats.DuplicateRecipients, job.Counts.Ambiguous)
	t.Log(report)
	if stats.Messages != int64(len(want)) || stats.DistinctRecipients != int64(len(want)) || stats.DuplicateRecipients != 0 {
		t.Fatalf("want exactly %d messages to %d distinct recipients: %s", len(want), len(want), report)
	}
	if job.Counts.Sent != int64(len(want)) || job.Counts.Suppressed != int64(suppressed) || job.Counts.Ambiguous != 0 {
		t.Fatalf("job counts %+v; want sent %d, suppressed %d, none ambiguous", job.Counts, len(want), suppressed)
	}
	for _, m := range st.Mail.Messages() {
		if _, ok := want[m.To[0]]; !ok {
			t.Fatalf("message to %s, who must not get one", m.To[0])
		}
	}
	assertLedger(t, st, job.ID, map[string]int64{"sent": int64(len(want)), "suppressed": int64(suppressed)})
}

// waitSent returns once the job has sent at least n messages; it fails the
// test if the job completes first, since then the signal would land on an
// idle service and prove nothing.
func waitSent(ctx context.Context, t *testing.T, client *stack.Client, jobID string, n int64) {
	t.Helper()
	var last stack.Job
	for {
		j, err := client.GetJob(ctx, jobID)
		if err != nil {
			t.Fatalf("waiting for %d sent, last seen %d sent (%+v): %v", n, last.Counts.Sent, last.Counts, err)
		}
		last = j
		if j.Counts.Sent >= n {
			return
		}
		if j.State == "complete" {
			t.Fatalf("job completed at %d sent, before the signal; make it larger", j.Counts.Sent)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
