package deliver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"herald/devtools/mailcatch"
	"herald/devtools/testenv"
	"herald/dispatch/internal/deliver"
	"herald/dispatch/internal/ledger"
	"herald/dispatch/internal/mailbox"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/ratelimit"
	"herald/dispatch/internal/route"
	"herald/dispatch/internal/smtpout"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// batch is a dispatcher on a real ledger and the batch it is handed.
type batch struct {
	db *pgxpool.Pool
	d  *deliver.Dispatcher
	b  ledger.Batch
	in *eventv1.DispatchBatch
}

// rig is a dispatcher on a real ledger, sending through the SMTP client to
// the mail catcher, which it can ask which Message-IDs it holds.
type rig struct {
	batch
	mail *mailcatch.Server
	smtp *smtpout.Pool
}

func newRig(t *testing.T, recipients int) *rig {
	t.Helper()
	ctx := context.Background()
	db := testenv.DB(t)
	b, in := seed(t, db, "email", recipients)
	mail, err := mailcatch.Start(ctx, mailcatch.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mail.Close() })
	api := httptest.NewServer(mail.Handler())
	t.Cleanup(api.Close)
	pool := smtpout.NewPool(smtpout.Config{Addr: mail.SMTPAddr(), TLSMode: smtpout.NoTLS, Conns: 2, Timeout: 10 * time.Second})
	t.Cleanup(pool.Close)

	reg := prometheus.NewRegistry()
	router := route.New(reg)
	router.Add("email", "smtp", pool, smtpout.NewLookup(api.URL+"/api/lookup"), route.BreakerConfig{Failures: 5, Cooloff: time.Minute}, reg)
	d := deliver.New(ledger.New(db), router, ratelimit.New(db, time.Minute, reg), mailbox.New(mailbox.Default),
		slog.New(slog.DiscardHandler), reg, deliver.Config{Chunk: 100, MaxWait: time.Second, TenantTTL: time.Minute})
	return &rig{batch: batch{db: db, d: d, b: b, in: in}, mail: mail, smtp: pool}
}

// seed stores an active job on channel with one batch of recipients, as
// ingest plans it, and returns the batch and its message as render
// publishes it: customers c000, c001, … at c000@example.com, ….
func seed(t *testing.T, db *pgxpool.Pool, channel string, recipients int) (ledger.Batch, *eventv1.DispatchBatch) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	b := ledger.Batch{Tenant: "acme", Job: event.NewJobID(), Channel: event.Channel(channel), SubmittedAt: now, Deadline: now.Add(time.Hour), Seq: 7}
	if _, err := db.Exec(ctx, `SELECT herald_ensure_deliveries_partition($1)`, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel,
		template_id, template_version, audience, products_per_message, submitted_at, deadline)
		VALUES ($1, $2, $3, '', $4, 't', 1, '{}', 6, $5, $6)`, b.Tenant, b.Job, b.Job.String(), channel, b.SubmittedAt, b.Deadline); err != nil {
		t.Fatal(err)
	}
	in := &eventv1.DispatchBatch{From: "shop@acme.example", Job: &eventv1.Job{TenantId: b.Tenant, JobId: b.Job.String(),
		Seq: b.Seq, Channel: string(b.Channel), SubmittedAt: timestamppb.New(b.SubmittedAt), Deadline: timestamppb.New(b.Deadline)}}
	var ids []string
	for i := range recipients {
		id := fmt.Sprintf("c%03d", i)
		msgID := fmt.Sprintf("%s-%s@acme.example", b.Job, id)
		mime := fmt.Sprintf("From: shop@acme.example\r\nTo: %s@example.com\r\nMessage-ID: <%s>\r\nSubject: Hello\r\n\r\nHello.\r\n", id, msgID)
		in.Messages = append(in.Messages, &eventv1.Rendered{CustomerId: id, Email: id + "@example.com", MessageId: msgID, Mime: []byte(mime)})
		ids = append(ids, id)
	}
	if _, err := db.Exec(ctx, `INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids, published_at, publishes)
		VALUES ($1, $2, $3, $4, now(), 1)`, b.Tenant, b.Job, b.Seq, ids); err != nil {
		t.Fatal(err)
	}
	return b, in
}

// interrupt leaves the batch as a dispatch killed mid-send does: every
// recipient claimed (in sending, for the SMTP relay), the first handed of
// them accepted by the relay, and no outcome recorded. The lock goes
// with the dead process's connection.
func (r *rig) interrupt(t *testing.T, handed int) {
	t.Helper()
	ctx := context.Background()
	h, err := ledger.New(r.db).Lock(ctx, r.b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	items := make([]ledger.Item, len(r.in.Messages))
	for i, m := range r.in.Messages {
		items[i] = ledger.Item{CustomerID: m.CustomerId, Email: m.Email, MessageID: m.MessageId}
	}
	if _, err := h.Claim(ctx, items, r.smtp.Name()); err != nil {
		t.Fatal(err)
	}
	var msgs []*provider.Message
	for _, m := range r.in.Messages[:handed] {
		msgs = append(msgs, &provider.Message{MessageID: m.MessageId, From: r.in.From, To: m.Email, Body: m.Mime})
	}
	for i, res := range r.smtp.Send(ctx, msgs) {
		if res.Outcome != provider.Sent {
			t.Fatalf("hand message %d to the relay: %v %s", i, res.Outcome, res.Reason)
		}
	}
}

// deliver hands the batch's message to the dispatcher, as Pub/Sub does.
func (r *batch) deliver(t *testing.T) error {
	t.Helper()
	data, attrs, err := event.Encode(r.in, event.Identity, "")
	if err != nil {
		t.Fatal(err)
	}
	return r.d.Handle(context.Background(), &pubsub.Message{ID: "m", Data: data, Attributes: attrs})
}

func (r *batch) states(t *testing.T) map[string]int {
	t.Helper()
	rows, _ := r.db.Query(context.Background(), `SELECT state, count(*) FROM deliveries WHERE job_id = $1 GROUP BY state`, r.b.Job)
	got := map[string]int{}
	var state string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error { got[state] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// done reports whether the batch is done in the job's plan.
func (r *batch) done(t *testing.T) bool {
	t.Helper()
	var done bool
	if err := r.db.QueryRow(context.Background(), `SELECT done_at IS NOT NULL FROM job_batches WHERE job_id = $1`, r.b.Job).Scan(&done); err != nil {
		t.Fatal(err)
	}
	return done
}

// TestInterruptedSendsTheProviderLacksGoOutAtOnce: after a dispatch dies
// mid-send, the next delivery of the batch settles its rows with the relay
// and sends the ones the relay does not have in that same delivery, so the
// batch finishes without waiting for another copy of its message (on the
// emulator, the redelivery of a nacked message can be lost, and the
// re-drives that replace it are few). Each recipient gets the message once,
// however many copies follow.
func TestInterruptedSendsTheProviderLacksGoOutAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handed int // of 5 recipients, how many the relay got before the crash
	}{
		{"relay has none of them", 0},
		{"relay has some of them", 2},
		{"relay has all of them", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 5)
			r.interrupt(t, tc.handed)
			for copyNo := 1; copyNo <= 2; copyNo++ {
				if err := r.deliver(t); err != nil {
					t.Fatalf("delivery %d after the crash: %v; want every recipient final and the message acked", copyNo, err)
				}
				if diff := cmp.Diff(map[string]int{ledger.Sent: 5}, r.states(t)); diff != "" {
					t.Fatalf("ledger after delivery %d (-want +got):\n%s", copyNo, diff)
				}
				stats := r.mail.Stats()
				if stats.Messages != 5 || stats.DistinctMessageIDs != 5 {
					t.Fatalf("after delivery %d the relay holds %d messages, %d distinct; want each of 5 once", copyNo, stats.Messages, stats.DistinctMessageIDs)
				}
			}
			if !r.done(t) {
				t.Fatal("batch not done in the plan")
			}
		})
	}
}

// TestRecipientsDeferredByAnInterruptedAttemptAreSentByTheNextCopy: rows an
// earlier attempt left deferred because the relay lacked them (as dispatch
// once recorded them) are taken back and sent by the next copy of the
// batch, once.
func TestRecipientsDeferredByAnInterruptedAttemptAreSentByTheNextCopy(t *testing.T) {
	r := newRig(t, 3)
	r.interrupt(t, 0)
	ctx := context.Background()
	h, err := ledger.New(r.db).Lock(ctx, r.b)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []ledger.Outcome
	for _, m := range r.in.Messages {
		outcomes = append(outcomes, ledger.Outcome{CustomerID: m.CustomerId, State: ledger.Deferred,
			Reason: "an earlier attempt was interrupted and " + r.smtp.Name() + " does not have the message"})
	}
	err = h.Record(ctx, outcomes)
	h.Release(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.deliver(t); err != nil {
		t.Fatalf("next delivery: %v; want every recipient sent", err)
	}
	if diff := cmp.Diff(map[string]int{ledger.Sent: 3}, r.states(t)); diff != "" {
		t.Fatalf("ledger (-want +got):\n%s", diff)
	}
	if n := r.mail.Stats().Messages; n != 3 {
		t.Fatalf("relay holds %d messages, want 3", n)
	}
	if err := r.deliver(t); err != nil {
		t.Fatalf("delivery after all were sent: %v", err)
	}
	if n := r.mail.Stats().Messages; n != 3 {
		t.Fatalf("relay holds %d messages after another copy, want 3", n)
	}
}

// TestInterruptedSendsExpireOnceTheDeadlinePassed: a copy of the batch
// that comes only after the job's deadline (the re-drive that follows it)
// sends nothing late: what the relay lacks is recorded expired, so the
// batch, and with it the job, ends.
func TestInterruptedSendsExpireOnceTheDeadlinePassed(t *testing.T) {
	r := newRig(t, 3)
	r.interrupt(t, 1)
	r.in.Job.Deadline = timestamppb.New(time.Now().Add(-time.Second))
	if err := r.deliver(t); err != nil {
		t.Fatalf("delivery after the deadline: %v; want every recipient final", err)
	}
	if diff := cmp.Diff(map[string]int{ledger.Sent: 1, ledger.Expired: 2}, r.states(t)); diff != "" {
		t.Fatalf("ledger (-want +got):\n%s", diff)
	}
	if n := r.mail.Stats().Messages; n != 1 {
		t.Fatalf("relay holds %d messages, want only the one it had before the crash", n)
	}
	if !r.done(t) {
		t.Fatal("batch not done in the plan")
	}
}

// TestJobIDInAnotherSpellingIsMalformed: a batch whose job id is not in its
// canonical form goes to dead letters unsent, since every delivery key (and
// with it a provider's deduplication) is built from that spelling.
func TestJobIDInAnotherSpellingIsMalformed(t *testing.T) {
	r := newRig(t, 2)
	canonical := r.in.Job.JobId
	for _, id := range []string{strings.ToUpper(canonical), "{" + canonical + "}", "urn:uuid:" + canonical} {
		r.in.Job.JobId = id
		if err := r.deliver(t); !errors.Is(err, event.ErrMalformed) {
			t.Errorf("batch with job id %q: %v, want %v", id, err, event.ErrMalformed)
		}
	}
	if diff := cmp.Diff(map[string]int{}, r.states(t)); diff != "" {
		t.Errorf("ledger (-want +got):\n%s", diff)
	}
	if n := r.mail.Stats().Messages; n != 0 {
		t.Errorf("relay holds %d messages, want none", n)
	}
}

// fakeRig is a dispatcher on a real ledger whose providers and rate
// limiter are fakes.
type fakeRig struct {
	batch
	limits *fakeLimits
}

// newFakeRig seeds a batch of recipients on channel and a dispatcher that
// routes through the providers route adds.
func newFakeRig(t *testing.T, channel string, recipients int, routes func(*route.Router, prometheus.Registerer)) *fakeRig {
	t.Helper()
	db := testenv.DB(t)
	b, in := seed(t, db, channel, recipients)
	reg := prometheus.NewRegistry()
	router := route.New(reg)
	routes(router, reg)
	limits := newLimits()
	d := deliver.New(ledger.New(db), router, limits, mailbox.New(mailbox.Default), slog.New(slog.DiscardHandler), reg,
		deliver.Config{Chunk: 100, MaxWait: time.Second, TenantTTL: time.Minute})
	return &fakeRig{batch: batch{db: db, d: d, b: b, in: in}, limits: limits}
}

var breaker = route.BreakerConfig{Failures: 5, Cooloff: time.Minute}

// via routes channel through s, of kind, with rec as its reconciler (nil:
// none).
func via(channel, kind string, s provider.Sender, rec provider.Reconciler) func(*route.Router, prometheus.Registerer) {
	return func(r *route.Router, reg prometheus.Registerer) {
		r.Add(event.Channel(channel), kind, s, rec, breaker, reg)
	}
}

// row is a recipient's ledger row.
type row struct{ State, Reason, Provider string }

func (r *batch) rows(t *testing.T) map[string]row {
	t.Helper()
	rows, _ := r.db.Query(context.Background(), `SELECT customer_id, state, reason, provider FROM deliveries WHERE job_id = $1`, r.b.Job)
	got := map[string]row{}
	var id string
	var x row
	if _, err := pgx.ForEachRow(rows, []any{&id, &x.State, &x.Reason, &x.Provider}, func() error { got[id] = x; return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

func (r *batch) suppressed(t *testing.T) []string {
	t.Helper()
	rows, _ := r.db.Query(context.Background(), `SELECT email FROM suppressions WHERE tenant_id = $1 ORDER BY email`, r.b.Tenant)
	emails, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return emails
}

// TestProviderAnswersAreRecorded: each recipient's row records what the
// provider answered for it; a hard bounce suppresses the address; what the
// provider refused for now is retried by the next copy of the batch, and
// only that.
func TestProviderAnswersAreRecorded(t *testing.T) {
	s := newSender("fake", false)
	s.answer("c001@example.com", provider.Result{Outcome: provider.Failed, Code: 550, Reason: "550 5.1.1 no such user", HardBounce: true})
	s.answer("c002@example.com", provider.Result{Outcome: provider.Deferred, Code: 451, Reason: "451 try again later"})
	s.answer("c003@example.com", provider.Result{Outcome: provider.Failed, Code: 554, Reason: "554 message refused"})
	r := newFakeRig(t, "email", 4, via("email", "smtp", s, nil))

	if err := r.deliver(t); !errors.Is(err, deliver.ErrPending) {
		t.Fatalf("first delivery: %v, want %v for the recipient refused for now", err, deliver.ErrPending)
	}
	want := map[string]row{
		"c000": {ledger.Sent, "250 accepted", "fake"},
		"c001": {ledger.Failed, "550 5.1.1 no such user", "fake"},
		"c002": {ledger.Deferred, "451 try again later", "fake"},
		"c003": {ledger.Failed, "554 message refused", "fake"},
	}
	if diff := cmp.Diff(want, r.rows(t)); diff != "" {
		t.Fatalf("ledger after the first delivery (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"c001@example.com"}, r.suppressed(t)); diff != "" {
		t.Errorf("suppressions (-want +got):\n%s", diff)
	}
	if r.done(t) {
		t.Error("batch done in the plan with a recipient deferred")
	}

	if err := r.deliver(t); err != nil {
		t.Fatalf("second delivery: %v, want every recipient final", err)
	}
	if diff := cmp.Diff(map[string]int{ledger.Sent: 2, ledger.Failed: 2}, r.states(t)); diff != "" {
		t.Errorf("ledger after the second delivery (-want +got):\n%s", diff)
	}
	wantHanded := map[string]int{"c000@example.com": 1, "c001@example.com": 1, "c002@example.com": 2, "c003@example.com": 1}
	if diff := cmp.Diff(wantHanded, s.handed()); diff != "" {
		t.Errorf("messages handed to the provider (-want +got):\n%s", diff)
	}
	if !r.done(t) {
		t.Error("batch not done in the plan")
	}
}

// TestThrottlingSlowsTheBucketItNames: a throttled recipient is deferred,
// and the limiter is told to slow down the receiver's bucket for an SMTP
// 421, the whole provider account for an HTTP 429.
func TestThrottlingSlowsTheBucketItNames(t *testing.T) {
	for _, tc := range []struct {
		code int
		want string
	}{
		{421, "mailbox:fake:gmail"},
		{429, "account:fake"},
	} {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			s := newSender("fake", false)
			r := newFakeRig(t, "email", 2, via("email", "smtp", s, nil))
			r.in.Messages[1].Email = "c001@gmail.com"
			s.answer("c001@gmail.com", provider.Result{Outcome: provider.Throttled, Code: tc.code, Reason: "slow down"})
			if err := r.deliver(t); !errors.Is(err, deliver.ErrPending) {
				t.Fatalf("delivery: %v, want %v", err, deliver.ErrPending)
			}
			if diff := cmp.Diff(map[string]int{ledger.Sent: 1, ledger.Deferred: 1}, r.states(t)); diff != "" {
				t.Errorf("ledger (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{tc.want}, r.limits.throttled); diff != "" {
				t.Errorf("buckets slowed down (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSendsInDoubt: when a provider gives no answer after a message went
// out, the recipient gets it at most once: an idempotent provider is simply
// asked again, a reconciling one is asked whether it has it, and any other
// leaves the send ambiguous rather than risk a second copy.
func TestSendsInDoubt(t *testing.T) {
	for _, tc := range []struct {
		name       string
		idempotent bool
		// reconciler is what the provider's reconciler says of the message
		// at first: "has", "lacks" or "unreachable"; "" for no reconciler.
		reconciler string
		// first and then are the ledger after the first copy of the batch
		// and after the next; handed is how often the provider got the
		// message in all.
		first, then map[string]int
		firstErr    error
		handed      int
	}{
		{name: "idempotent provider: asked again", idempotent: true,
			first: map[string]int{ledger.Deferred: 1}, firstErr: deliver.ErrPending, then: map[string]int{ledger.Sent: 1}, handed: 2},
		{name: "the provider has it: sent", reconciler: "has",
			first: map[string]int{ledger.Sent: 1}, then: map[string]int{ledger.Sent: 1}, handed: 1},
		{name: "the provider lacks it: sent again", reconciler: "lacks",
			first: map[string]int{ledger.Deferred: 1}, firstErr: deliver.ErrPending, then: map[string]int{ledger.Sent: 1}, handed: 2},
		{name: "the provider cannot be asked now: left in sending for the next copy, which finds it there", reconciler: "unreachable",
			first: map[string]int{ledger.Sending: 1}, firstErr: deliver.ErrPending, then: map[string]int{ledger.Sent: 1}, handed: 1},
		{name: "the provider cannot be asked at all: ambiguous, never sent again",
			first: map[string]int{ledger.Ambiguous: 1}, then: map[string]int{ledger.Ambiguous: 1}, handed: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSender("fake", tc.idempotent)
			s.answer("c000@example.com", provider.Result{Outcome: provider.Unknown, Reason: "read: connection reset"})
			rec := &fakeReconciler{has: map[string]bool{}}
			var reconciler provider.Reconciler
			if tc.reconciler != "" {
				reconciler = rec
			}
			r := newFakeRig(t, "email", 1, via("email", "smtp", s, reconciler))
			msgID := r.in.Messages[0].MessageId
			switch tc.reconciler {
			case "has":
				rec.has[msgID] = true
			case "unreachable":
				rec.err = errors.New("lookup: connection refused")
			}
			if err := r.deliver(t); !errors.Is(err, tc.firstErr) {
				t.Fatalf("first copy: %v, want %v", err, tc.firstErr)
			}
			if diff := cmp.Diff(tc.first, r.states(t)); diff != "" {
				t.Fatalf("ledger after the first copy (-want +got):\n%s", diff)
			}
			if tc.reconciler == "unreachable" {
				// Reachable again, and holding the message it got.
				rec.mu.Lock()
				rec.err, rec.has[msgID] = nil, true
				rec.mu.Unlock()
			}
			if err := r.deliver(t); err != nil {
				t.Fatalf("next copy: %v, want the recipient final", err)
			}
			if diff := cmp.Diff(tc.then, r.states(t)); diff != "" {
				t.Errorf("ledger after the next copy (-want +got):\n%s", diff)
			}
			if n := s.handed()["c000@example.com"]; n != tc.handed {
				t.Errorf("provider got the message %d times, want %d", n, tc.handed)
			}
		})
	}
}

// TestWithoutAProviderNothingIsSent: when the channel has no provider to
// send through, the claimed recipients wait, deferred with the reason, and
// the batch is retried.
func TestWithoutAProviderNothingIsSent(t *testing.T) {
	s := newSender("inbox", true)
	r := newFakeRig(t, "email", 2, via("onsite", "onsite", s, nil))
	if err := r.deliver(t); !errors.Is(err, deliver.ErrPending) {
		t.Fatalf("delivery: %v, want %v", err, deliver.ErrPending)
	}
	for id, got := range r.rows(t) {
		if got.State != ledger.Deferred || !strings.Contains(got.Reason, route.ErrNoProvider.Error()) {
			t.Errorf("%s: %s (%q), want deferred for want of a provider", id, got.State, got.Reason)
		}
	}
	if n := len(r.rows(t)); n != 2 {
		t.Errorf("%d ledger rows, want 2", n)
	}
	if n := len(s.handed()); n != 0 {
		t.Errorf("the other channel's provider was handed %d messages", n)
	}
}

// TestReceiverOutOfRateWaitsAlone: recipients whose receiver has no send
// rate left are deferred unsent, while the other receivers' recipients go
// out; every send takes from the tenant's, the account's and the
// receiver's buckets.
func TestReceiverOutOfRateWaitsAlone(t *testing.T) {
	s := newSender("fake", false)
	r := newFakeRig(t, "email", 4, via("email", "smtp", s, nil))
	r.in.Messages[0].Email = "c000@gmail.com"
	r.in.Messages[1].Email = "c001@gmail.com"
	r.limits.tokens["mailbox:fake:gmail"] = 1
	if err := r.deliver(t); !errors.Is(err, deliver.ErrPending) {
		t.Fatalf("delivery: %v, want %v", err, deliver.ErrPending)
	}
	rows := r.rows(t)
	if diff := cmp.Diff(map[string]int{ledger.Sent: 3, ledger.Deferred: 1}, r.states(t)); diff != "" {
		t.Errorf("ledger (-want +got):\n%s", diff)
	}
	for _, id := range []string{"c000", "c001"} {
		if rows[id].State == ledger.Deferred && rows[id].Reason != "waiting for the send rate of gmail" {
			t.Errorf("%s deferred for %q, want the gmail rate", id, rows[id].Reason)
		}
	}
	if got := s.handed(); got["c002@example.com"] != 1 || got["c003@example.com"] != 1 || got["c000@gmail.com"]+got["c001@gmail.com"] != 1 {
		t.Errorf("handed %v, want both example.com recipients and one of gmail's", got)
	}
	want := [][]string{{"tenant:acme", "account:fake", "mailbox:fake:gmail"}, {"tenant:acme", "account:fake", "mailbox:fake:other"}}
	if diff := cmp.Diff(want, r.limits.taken, cmpopts.SortSlices(func(a, b []string) bool { return a[2] < b[2] })); diff != "" {
		t.Errorf("buckets taken from (-want +got):\n%s", diff)
	}
}

// TestSuppressedAreTakenOutOfTheAdAudience: an ad job's recipients
// suppressed since the audience was built are removed from it at the ad
// platform; other channels have no audience to leave.
func TestSuppressedAreTakenOutOfTheAdAudience(t *testing.T) {
	for _, tc := range []struct {
		channel string
		removed bool
	}{
		{"ad", true},
		{"email", false},
	} {
		t.Run(tc.channel, func(t *testing.T) {
			ads := &fakeAds{fakeSender: newSender("ads", true), removed: map[string][]string{}}
			r := newFakeRig(t, tc.channel, 3, via(tc.channel, "ads", ads, nil))
			if _, err := r.db.Exec(context.Background(), `SELECT herald_suppress('acme', ARRAY['c001@example.com'], ARRAY['unsubscribed'])`); err != nil {
				t.Fatal(err)
			}
			if err := r.deliver(t); err != nil {
				t.Fatalf("delivery: %v", err)
			}
			if diff := cmp.Diff(map[string]int{ledger.Sent: 2, ledger.Suppressed: 1}, r.states(t)); diff != "" {
				t.Errorf("ledger (-want +got):\n%s", diff)
			}
			want := map[string][]string{}
			if tc.removed {
				want[deliver.Audience(r.in.Job)] = []string{"c001@example.com"}
			}
			if diff := cmp.Diff(want, ads.removed); diff != "" {
				t.Errorf("removed from audiences (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]int{"c000@example.com": 1, "c002@example.com": 1}, ads.handed()); diff != "" {
				t.Errorf("handed (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBatchOfAJobNotActiveIsLeftAlone: a paused job's batch is acked
// without a claim or a send, and stays not done so that resuming the job
// publishes it again.
func TestBatchOfAJobNotActiveIsLeftAlone(t *testing.T) {
	s := newSender("fake", false)
	r := newFakeRig(t, "email", 2, via("email", "smtp", s, nil))
	if _, err := r.db.Exec(context.Background(), `UPDATE jobs SET state = 'paused' WHERE id = $1`, r.b.Job); err != nil {
		t.Fatal(err)
	}
	if err := r.deliver(t); err != nil {
		t.Fatalf("delivery: %v, want the message acked", err)
	}
	if diff := cmp.Diff(map[string]int{}, r.states(t)); diff != "" {
		t.Errorf("ledger (-want +got):\n%s", diff)
	}
	if n := len(s.handed()); n != 0 {
		t.Errorf("provider handed %d messages, want none", n)
	}
	if r.done(t) {
		t.Error("batch of a paused job done in the plan")
	}
}

// TestTenantSettings: a tenant's own providers are used in its order of
// preference, and its send rate is loaded into the limiter once per TTL,
// not per batch.
func TestTenantSettings(t *testing.T) {
	smtp, esp := newSender("relay", false), newSender("esp", true)
	r := newFakeRig(t, "email", 2, func(rt *route.Router, reg prometheus.Registerer) {
		rt.Add("email", "smtp", smtp, nil, breaker, reg)
		rt.Add("email", "esp", esp, nil, breaker, reg)
	})
	if _, err := r.db.Exec(context.Background(), `INSERT INTO tenants (id, send_rate, providers) VALUES ('acme', 50, '{"email": ["esp"]}')`); err != nil {
		t.Fatal(err)
	}
	for copyNo := 1; copyNo <= 2; copyNo++ {
		if err := r.deliver(t); err != nil {
			t.Fatalf("delivery %d: %v", copyNo, err)
		}
	}
	if diff := cmp.Diff(map[string]int{"c000@example.com": 1, "c001@example.com": 1}, esp.handed()); diff != "" {
		t.Errorf("handed to the tenant's provider (-want +got):\n%s", diff)
	}
	if n := len(smtp.handed()); n != 0 {
		t.Errorf("dispatch's first provider handed %d messages, want none", n)
	}
	if diff := cmp.Diff([]ratelimit.Bucket{{Name: "tenant:acme", Rate: 50}}, r.limits.ensured); diff != "" {
		t.Errorf("buckets ensured (-want +got):\n%s", diff)
	}
}

// TestSendsAreRecordedWhenAnotherReceiverFails: when the limiter fails for
// one receiver, what the others' recipients were sent is still recorded,
// and that receiver's recipients wait unsent. Left in sending, both would
// be taken for sends in doubt by the next copy of the batch, and a provider
// that cannot be asked would leave them ambiguous.
func TestSendsAreRecordedWhenAnotherReceiverFails(t *testing.T) {
	s := newSender("fake", false)
	r := newFakeRig(t, "email", 4, via("email", "smtp", s, nil))
	r.in.Messages[0].Email = "c000@gmail.com"
	r.in.Messages[1].Email = "c001@gmail.com"
	down := errors.New("rate limiter unreachable")
	r.limits.mu.Lock()
	r.limits.fail["mailbox:fake:gmail"] = down
	r.limits.mu.Unlock()
	if err := r.deliver(t); !errors.Is(err, down) {
		t.Fatalf("delivery: %v, want %v", err, down)
	}
	want := map[string]row{
		"c000": {ledger.Deferred, "take send rate: rate limiter unreachable", "fake"},
		"c001": {ledger.Deferred, "take send rate: rate limiter unreachable", "fake"},
		"c002": {ledger.Sent, "250 accepted", "fake"},
		"c003": {ledger.Sent, "250 accepted", "fake"},
	}
	if diff := cmp.Diff(want, r.rows(t)); diff != "" {
		t.Fatalf("ledger after the failed delivery (-want +got):\n%s", diff)
	}

	r.limits.mu.Lock()
	delete(r.limits.fail, "mailbox:fake:gmail")
	r.limits.mu.Unlock()
	if err := r.deliver(t); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if diff := cmp.Diff(map[string]int{ledger.Sent: 4}, r.states(t)); diff != "" {
		t.Errorf("ledger after the redelivery (-want +got):\n%s", diff)
	}
	wantHanded := map[string]int{"c000@gmail.com": 1, "c001@gmail.com": 1, "c002@example.com": 1, "c003@example.com": 1}
	if diff := cmp.Diff(wantHanded, s.handed()); diff != "" {
		t.Errorf("handed (-want +got):\n%s", diff)
	}
}
