package deliver_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
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

// rig is a dispatcher on a real ledger, sending through the SMTP client to
// the mail catcher, which it can ask which Message-IDs it holds.
type rig struct {
	db   *pgxpool.Pool
	mail *mailcatch.Server
	smtp *smtpout.Pool
	d    *deliver.Dispatcher
	b    ledger.Batch
	in   *eventv1.DispatchBatch
}

func newRig(t *testing.T, recipients int) *rig {
	t.Helper()
	ctx := context.Background()
	db := testenv.DB(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	b := ledger.Batch{Tenant: "acme", Job: uuid.New(), Channel: "email", SubmittedAt: now, Deadline: now.Add(time.Hour), Seq: 7}
	if _, err := db.Exec(ctx, `SELECT herald_ensure_deliveries_partition($1)`, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel,
		template_id, template_version, audience, products_per_message, submitted_at, deadline)
		VALUES ($1, $2, $3, '', 'email', 't', 1, '{}', 6, $4, $5)`, b.Tenant, b.Job, b.Job.String(), b.SubmittedAt, b.Deadline); err != nil {
		t.Fatal(err)
	}
	in := &eventv1.DispatchBatch{From: "shop@acme.example", Job: &eventv1.Job{TenantId: b.Tenant, JobId: b.Job.String(),
		Seq: b.Seq, Channel: b.Channel, SubmittedAt: timestamppb.New(b.SubmittedAt), Deadline: timestamppb.New(b.Deadline)}}
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
	return &rig{db: db, mail: mail, smtp: pool, d: d, b: b, in: in}
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
func (r *rig) deliver(t *testing.T) error {
	t.Helper()
	data, attrs, err := event.Encode(r.in, event.Identity, "")
	if err != nil {
		t.Fatal(err)
	}
	return r.d.Handle(context.Background(), &pubsub.Message{ID: "m", Data: data, Attributes: attrs})
}

func (r *rig) states(t *testing.T) map[string]int {
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
func (r *rig) done(t *testing.T) bool {
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
