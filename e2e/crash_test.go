package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"herald/deploy/stack"
)

// TestCrashMidJobLosesAndRepeatsNothing kills one service with SIGKILL in
// the middle of a job, starts it again, and checks that every recipient
// got exactly one message: none lost, none twice.
func TestCrashMidJobLosesAndRepeatsNothing(t *testing.T) {
	for _, victim := range []string{"dispatch", "render", "recommend"} {
		t.Run(victim, func(t *testing.T) {
			// Each waits out a stall before its re-drive: side by side, the
			// waits overlap.
			t.Parallel()
			// Small batches and chunks give the kill many batches in every
			// stage to land among.
			st := startStack(t, stack.Options{Flags: map[string][]string{
				"ingest":   {"-batch-size=100", "-plan-chunk=5", "-stall-after=5s"},
				"dispatch": {"-claim-chunk=20"},
			}})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			client := partnerClient(t, st, "acme")
			tn := stack.DemoTenant{ID: "acme", Customers: 12_000, Items: 200, Seed: 11}
			if err := tn.Load(ctx, client); err != nil {
				t.Fatal(err)
			}
			want, suppressed := expected(tn)
			job, err := client.SubmitJob(ctx, "crash-"+victim, blackFriday())
			if err != nil {
				t.Fatal(err)
			}
			// Kill once mail flows, while the victim still has work: recommend
			// finishes its share early, so it is killed at the first sends.
			threshold := int64(len(want)) / 5
			if victim == "recommend" {
				threshold = 1
			}
			for {
				j, err := client.GetJob(ctx, job.ID)
				if err != nil {
					t.Fatal(err)
				}
				if j.Counts.Sent >= threshold {
					break
				}
				if j.State == "complete" {
					t.Fatalf("job completed before the kill; make it larger")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := st.Kill(victim); err != nil {
				t.Fatal(err)
			}
			killedAt, _ := client.GetJob(ctx, job.ID)
			time.Sleep(500 * time.Millisecond)
			if err := st.Launch(victim); err != nil {
				t.Fatal(err)
			}
			job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil)
			if err != nil {
				t.Fatal(err)
			}
			stats := st.Mail.Stats()
			t.Logf("killed %s at %d of %d sent; after restart: %d messages at the SMTP server, %d duplicate recipients, %d ambiguous, %d batches re-driven",
				victim, killedAt.Counts.Sent, len(want), stats.Messages, stats.DuplicateRecipients, job.Counts.Ambiguous, redriven(t, st, job.ID))
			report := fmt.Sprintf("messages %d, lost %d, duplicated %d, ambiguous %d",
				stats.Messages, int64(len(want))-stats.DistinctRecipients, stats.DuplicateRecipients, job.Counts.Ambiguous)
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
		})
	}
}

// TestSameIdempotencyKeyMakesOneJob posts one job twice with one key.
func TestSameIdempotencyKeyMakesOneJob(t *testing.T) {
	st := startStack(t, stack.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := partnerClient(t, st, "acme")
	tn := stack.DemoTenant{ID: "acme", Customers: 300, Items: 50, Seed: 3}
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	first, err := client.SubmitJob(ctx, "same-key", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	second, err := client.SubmitJob(ctx, "same-key", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID {
		t.Fatalf("same key made two jobs: %s and %s", first.ID, second.ID)
	}
	job, err := client.WaitJob(ctx, first.ID, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A third post after completion still answers with the same job.
	third, err := client.SubmitJob(ctx, "same-key", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	if third.ID != first.ID {
		t.Fatalf("same key after completion made job %s, want %s", third.ID, first.ID)
	}
	want, _ := expected(tn)
	time.Sleep(time.Second) // anything a second job would send has time to arrive
	if stats := st.Mail.Stats(); stats.Messages != int64(len(want)) || stats.DuplicateRecipients != 0 {
		t.Fatalf("SMTP server got %d messages (%d duplicate recipients), want %d", stats.Messages, stats.DuplicateRecipients, len(want))
	}
	if job.Counts.Sent != int64(len(want)) {
		t.Fatalf("job sent %d, want %d", job.Counts.Sent, len(want))
	}
}
