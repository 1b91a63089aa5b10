package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"herald/deploy/stack"
	"herald/devtools/devpubsub"
)

// TestPubsubRestartLosesAndRepeatsNothing stops the Pub/Sub emulator in the
// middle of a job and starts an empty one on the same port, as a broker
// that lost its state comes back: every topic, subscription and message is
// gone. With nothing restarted by hand, the services must create their
// topology again, ingest must publish the lost batches again, and every
// recipient must get exactly one message.
func TestPubsubRestartLosesAndRepeatsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	opts := devpubsub.Options{RequireEmulator: os.Getenv("CI") == "true", Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	ps, err := devpubsub.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ps.Stop() })
	// Twenty small batches, at most twelve in the pipeline, sent at a
	// limited rate: when the broker goes, some of the job is in Pub/Sub,
	// some in dispatch and the rest waits in PostgreSQL to be published.
	st := startStack(t, stack.Options{PubsubHost: ps.Host(), Flags: map[string][]string{
		"ingest":   {"-batch-size=20", "-window=16", "-job-window=12", "-stall-after=5s"},
		"dispatch": {"-provider-rate=60", "-claim-chunk=10"},
	}})
	client := partnerClient(t, st, "acme")
	tn := stack.DemoTenant{ID: "acme", Customers: 400, Items: 50, Seed: 31}
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	want, suppressed := expected(tn)
	job, err := client.SubmitJob(ctx, "pubsub-restart", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	waitSent(ctx, t, client, job.ID, int64(len(want))/5)

	before, _ := client.GetJob(ctx, job.ID)
	_, port, _ := net.SplitHostPort(ps.Host())
	if err := ps.Stop(); err != nil {
		t.Fatal(err)
	}
	opts.Port, _ = strconv.Atoi(port)
	if ps, err = devpubsub.Start(ctx, opts); err != nil {
		t.Fatal(err)
	}
	t.Logf("pubsub restarted empty at %s with %d of %d sent", ps.Host(), before.Counts.Sent, len(want))
	restarted := time.Now()

	job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, func(stack.Job) {
		for _, svc := range stack.Services {
			if st.Proc(svc).Exited() {
				t.Fatalf("%s exited after the restart, and nothing starts it again", svc)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("job complete %s after the restart", time.Since(restarted).Round(time.Second))
	stats := st.Mail.Stats()
	report := fmt.Sprintf("messages %d, lost %d, duplicated %d, ambiguous %d, batches re-driven %d",
		stats.Messages, int64(len(want))-stats.DistinctRecipients, stats.DuplicateRecipients, job.Counts.Ambiguous, redriven(t, st, job.ID))
	t.Log(report)
	if stats.Messages != int64(len(want)) || stats.DistinctRecipients != int64(len(want)) || stats.DuplicateRecipients != 0 {
		t.Fatalf("want exactly %d messages to %d distinct recipients: %s", len(want), len(want), report)
	}
	if job.Counts.Sent != int64(len(want)) || job.Counts.Suppressed != int64(suppressed) || job.Counts.Ambiguous != 0 {
		t.Fatalf("job counts %+v; want sent %d, suppressed %d, none ambiguous", job.Counts, len(want), suppressed)
	}
	assertLedger(t, st, job.ID, map[string]int64{"sent": int64(len(want)), "suppressed": int64(suppressed)})
}
