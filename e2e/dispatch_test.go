package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
	"herald/devtools/mailcatch"
)

// sql runs one statement on the stack's database.
func sql(t *testing.T, st *stack.Stack, query string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, query, args...); err != nil {
		t.Fatal(err)
	}
}

// faultReport is what every fault test reports.
func faultReport(t *testing.T, name string, want int, stats mailcatch.Stats, faults int64, job stack.Job) {
	t.Helper()
	t.Logf("%s: messages %d, faults %d, lost %d, duplicated %d, ambiguous %d",
		name, stats.Messages, faults, int64(want)-stats.DistinctRecipients, stats.DuplicateRecipients, job.Counts.Ambiguous)
	if stats.DistinctRecipients != int64(want) || stats.DuplicateRecipients != 0 || stats.Messages != int64(want) {
		t.Fatalf("%s: want exactly %d messages to %d distinct recipients", name, want, want)
	}
}

func loadAndRun(t *testing.T, st *stack.Stack, tn stack.DemoTenant, key string) stack.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	return submitAndWait(t, st, tn, key)
}

func submitAndWait(t *testing.T, st *stack.Stack, tn stack.DemoTenant, key string) stack.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	client := partnerClient(t, st, tn.ID)
	job, err := client.SubmitJob(ctx, key, blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// TestTransientRefusalsAreRetried has the SMTP server refuse 30% of
// messages with a temporary error: every recipient still gets exactly one.
func TestTransientRefusalsAreRetried(t *testing.T) {
	t.Parallel() // mostly waiting: on rates, retries or the clock
	st := startStack(t, stack.Options{Flags: map[string][]string{"ingest": {"-stall-after=10s"}}})
	var faults atomic.Int64
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	st.Mail.SetFault(func(from string, to []string) *smtp.SMTPError {
		mu.Lock()
		defer mu.Unlock()
		if rng.IntN(100) < 30 {
			faults.Add(1)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
		return nil
	})
	tn := stack.DemoTenant{ID: "acme", Customers: 3000, Items: 100, Seed: 21}
	job := loadAndRun(t, st, tn, "transient")
	want, _ := expected(tn)
	faultReport(t, "30% transient refusals", len(want), st.Mail.Stats(), faults.Load(), job)
	if faults.Load() < 300 || job.Counts.Sent != int64(len(want)) {
		t.Fatalf("%d faults injected, %d sent: the test did not exercise retries", faults.Load(), job.Counts.Sent)
	}
}

// TestHardBounceSuppressesLaterJobs has the server reject three addresses
// as unknown users: the job records them failed, and the next job reports
// them suppressed and sends them nothing.
func TestHardBounceSuppressesLaterJobs(t *testing.T) {
	st := startStack(t, stack.Options{})
	tn := stack.DemoTenant{ID: "acme", Customers: 400, Items: 50, Seed: 5}
	want, suppressed := expected(tn)
	var bouncing []string
	for email := range want {
		bouncing = append(bouncing, email)
	}
	slices.Sort(bouncing)
	bouncing = bouncing[:3]
	st.Mail.SetFault(func(from string, to []string) *smtp.SMTPError {
		if slices.Contains(bouncing, to[0]) {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	first := loadAndRun(t, st, tn, "first")
	if first.Counts.Failed != 3 || first.Counts.Sent != int64(len(want)-3) {
		t.Fatalf("first job %+v; want 3 failed, %d sent", first.Counts, len(want)-3)
	}
	second := submitAndWait(t, st, tn, "second")
	if second.Counts.Suppressed != int64(suppressed+3) || second.Counts.Sent != int64(len(want)-3) || second.Counts.Failed != 0 {
		t.Fatalf("second job %+v; want %d suppressed (3 hard bounces), %d sent, none failed", second.Counts, suppressed+3, len(want)-3)
	}
	for _, m := range st.Mail.Messages() {
		if slices.Contains(bouncing, m.To[0]) {
			t.Fatalf("a message reached %s, which bounced", m.To[0])
		}
	}
}

// TestReceiverDeferralsSlowOnlyThatReceiver has gmail refuse everything
// with 421 4.7.28 (rate limited) until every other recipient is delivered:
// gmail's recipients wait, nobody else does, and once gmail accepts again
// the job completes with nothing lost or sent twice.
func TestReceiverDeferralsSlowOnlyThatReceiver(t *testing.T) {
	t.Parallel() // mostly waiting: on rates, retries or the clock
	st := startStack(t, stack.Options{Flags: map[string][]string{
		"dispatch": {"-mailbox-domains=gmail=gmail.example", "-mailbox-rates=gmail=5000,other=5000,outlook=5000", "-rate-cooldown=2s", "-rate-wait=500ms"},
		"ingest":   {"-stall-after=10s"},
	}})
	var gmailRefusing atomic.Bool
	gmailRefusing.Store(true)
	var faults atomic.Int64
	st.Mail.SetFault(func(from string, to []string) *smtp.SMTPError {
		if gmailRefusing.Load() && strings.HasSuffix(to[0], "@gmail.example") {
			faults.Add(1)
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 28}, Message: "rate limited, slow down"}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 5000, Items: 100, Seed: 9}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	want, _ := expected(tn)
	var others int64
	for email := range want {
		if !strings.HasSuffix(email, "@gmail.example") {
			others++
		}
	}
	job, err := client.SubmitJob(ctx, "gmail", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	// Everyone but gmail's recipients is delivered while gmail refuses.
	for st.Mail.Stats().DistinctRecipients < others {
		select {
		case <-ctx.Done():
			t.Fatalf("only %d of %d non-gmail recipients delivered while gmail refused", st.Mail.Stats().DistinctRecipients, others)
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, m := range st.Mail.Messages() {
		if strings.HasSuffix(m.To[0], "@gmail.example") {
			t.Fatalf("gmail accepted nothing, yet %s got a message", m.To[0])
		}
	}
	var rate, ceiling float64
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT rate, max_rate FROM rate_buckets WHERE name LIKE 'mailbox:%:gmail'`).Scan(&rate, &ceiling); err != nil {
		t.Fatal(err)
	}
	var otherRate float64
	if err := conn.QueryRow(ctx, `SELECT rate FROM rate_buckets WHERE name LIKE 'mailbox:%:other'`).Scan(&otherRate); err != nil {
		t.Fatal(err)
	}
	t.Logf("while gmail refused (%d refusals): gmail's rate cut to %.0f/s of %.0f/s; other receivers' rate %.0f/s", faults.Load(), rate, ceiling, otherRate)
	// One multiplicative decrease halves the rate; a halved rate is cut.
	if rate > ceiling/2 || otherRate != 5000 {
		t.Fatalf("gmail's rate %.0f (ceiling %.0f) should be cut; other's %.0f should be untouched", rate, ceiling, otherRate)
	}
	gmailRefusing.Store(false)
	job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	faultReport(t, "gmail 421 4.7.28", len(want), st.Mail.Stats(), faults.Load(), job)
}

// TestRateHoldsAcrossThreeDispatchReplicas sets a tenant's rate to 1,000
// sends/s and runs three dispatch processes: over any 10-second window the
// SMTP server sees at most 1,000/s (+5%).
func TestRateHoldsAcrossThreeDispatchReplicas(t *testing.T) {
	t.Parallel() // mostly waiting: on rates, retries or the clock
	st := startStack(t, stack.Options{Replicas: map[string]int{"dispatch": 3},
		Flags: map[string][]string{"ingest": {"-batch-size=100"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 16_000, Items: 100, Seed: 13}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	sql(t, st, `UPDATE tenants SET send_rate = 1000 WHERE id = 'acme'`)
	job := submitAndWait(t, st, tn, "rate")
	want, _ := expected(tn)
	var times []time.Time
	for _, m := range st.Mail.Messages() {
		times = append(times, m.Received)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	// The largest number of messages in any 10-second window.
	peak, j := 0, 0
	for i := range times {
		for times[i].Sub(times[j]) >= 10*time.Second {
			j++
		}
		peak = max(peak, i-j+1)
	}
	span := times[len(times)-1].Sub(times[0])
	t.Logf("3 replicas, limit 1000/s: %d messages in %s (%.0f/s); busiest 10 s window %d (%.0f/s)",
		len(times), span.Round(time.Millisecond), float64(len(times))/span.Seconds(), peak, float64(peak)/10)
	if peak > 10_500 {
		t.Fatalf("a 10-second window saw %d messages, more than 1000/s + 5%%", peak)
	}
	if span < 10*time.Second {
		t.Fatalf("%d messages went out in %s: the rate was not applied", len(times), span)
	}
	faultReport(t, "three replicas", len(want), st.Mail.Stats(), 0, job)
}

// TestRepeatedKillsOfDispatch SIGKILLs dispatch five times at random
// moments of a 40,000-recipient job: about 80 batches of 500, so each kill
// lands among batches in flight.
func TestRepeatedKillsOfDispatch(t *testing.T) {
	t.Parallel() // most of it is waiting for a killed process's batches to be re-driven
	st := startStack(t, stack.Options{Flags: map[string][]string{"ingest": {"-stall-after=5s"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tn := stack.DemoTenant{ID: "acme", Customers: 40_000, Items: 300, Seed: 17}
	client := partnerClient(t, st, tn.ID)
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	want, _ := expected(tn)
	job, err := client.SubmitJob(ctx, "kills", blackFriday())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var at []string
	for k := range 5 {
		// Spread the kills over the job: the k-th after a random share of
		// the k-th fifth of the recipients went out.
		threshold := int64(len(want)) * int64(k*20+rng.IntN(15)+2) / 100
		for {
			j, err := client.GetJob(ctx, job.ID)
			if err != nil {
				t.Fatal(err)
			}
			if j.Counts.Sent >= threshold {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := st.Kill("dispatch"); err != nil {
			t.Fatal(err)
		}
		at = append(at, fmt.Sprint(threshold))
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		if err := st.Launch("dispatch"); err != nil {
			t.Fatal(err)
		}
	}
	job, err = client.WaitJob(ctx, job.ID, 200*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed dispatch after %s sends", strings.Join(at, ", "))
	faultReport(t, "5 SIGKILLs of dispatch", len(want), st.Mail.Stats(), 5, job)
	if job.Counts.Ambiguous != 0 {
		t.Fatalf("%d ambiguous: with a provider that can be asked, every doubt is settled", job.Counts.Ambiguous)
	}
}
