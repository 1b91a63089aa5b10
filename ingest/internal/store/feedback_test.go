package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/devtools/testenv"
	"herald/shared/event"
)

// feedbackJob stores a job with one delivery per state given (customer
// "c-<state>", address "<state>@example.com") and the counters dispatch
// would have written for them, and returns the job's id.
func feedbackJob(t *testing.T, db *pgxpool.Pool, tenant string, states ...string) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	job := event.NewJobID()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`SELECT herald_ensure_deliveries_partition($1)`, now)
	exec(`INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel, template_id, template_version,
		audience, products_per_message, submitted_at, deadline)
		VALUES ($1, $2, $3, '', 'email', 't', 1, '{}', 6, $4, $5)`, tenant, job.UUID(), job.String(), now, now.Add(time.Hour))
	for i, st := range states {
		exec(`INSERT INTO deliveries (tenant_id, job_id, channel, customer_id, job_submitted_at, batch_seq, state, email)
			VALUES ($1, $2, 'email', $3, $4, $5, $6, $7)`, tenant, job.UUID(), "c-"+st, now, i, st, st+"@Example.com")
		if st == "sent" || st == "ambiguous" {
			exec(fmt.Sprintf(`INSERT INTO job_progress (tenant_id, job_id, shard, %[1]s) VALUES ($1, $2, $3, 1)
				ON CONFLICT (tenant_id, job_id, shard) DO UPDATE SET %[1]s = job_progress.%[1]s + 1`, st), tenant, job.UUID(), i%8)
		}
	}
	return job.String()
}

type deliveryView struct {
	State, Feedback, Reason string
}

func delivery(t *testing.T, db *pgxpool.Pool, tenant, job, customer string) deliveryView {
	t.Helper()
	var v deliveryView
	if err := db.QueryRow(context.Background(), `SELECT state, feedback, reason FROM deliveries
		WHERE tenant_id = $1 AND job_id = $2 AND customer_id = $3`, tenant, job, customer).Scan(&v.State, &v.Feedback, &v.Reason); err != nil {
		t.Fatal(err)
	}
	return v
}

func suppression(t *testing.T, db *pgxpool.Pool, tenant, email string) string {
	t.Helper()
	var reason string
	err := db.QueryRow(context.Background(), `SELECT coalesce(max(reason), '') FROM suppressions WHERE tenant_id = $1 AND email = $2`,
		tenant, email).Scan(&reason)
	if err != nil {
		t.Fatal(err)
	}
	return reason
}

func totals(t *testing.T, db *pgxpool.Pool, tenant, job string) [2]int64 {
	t.Helper()
	var sent, ambiguous int64
	if err := db.QueryRow(context.Background(), `SELECT sent, ambiguous FROM job_totals WHERE tenant_id = $1 AND job_id = $2`,
		tenant, job).Scan(&sent, &ambiguous); err != nil {
		t.Fatal(err)
	}
	return [2]int64{sent, ambiguous}
}

func TestFeedbackLandsOnItsDelivery(t *testing.T) {
	db := testenv.DB(t)
	s := New(db)
	ctx := context.Background()
	job := feedbackJob(t, db, "acme", "sent", "ambiguous", "suppressed")
	key := func(customer string) event.DeliveryKey {
		return event.DeliveryKey{Tenant: "acme", Job: job, Channel: event.ChannelEmail, Customer: customer}
	}
	apply := func(t *testing.T, id, customer string, kind FeedbackKind) FeedbackResult {
		t.Helper()
		res, err := s.ApplyFeedback(ctx, Feedback{Provider: "ses", EventID: id, Key: key(customer), Kind: kind}, 3)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	t.Run("a hard bounce suppresses the address and marks the delivery", func(t *testing.T) {
		if got := apply(t, "e1", "c-sent", Bounced); got != FeedbackApplied {
			t.Fatalf("result %q, want applied", got)
		}
		if diff := cmp.Diff(deliveryView{State: "sent", Feedback: "bounced"}, delivery(t, db, "acme", job, "c-sent")); diff != "" {
			t.Errorf("delivery (-want +got):\n%s", diff)
		}
		if got := suppression(t, db, "acme", "sent@example.com"); got != "bounce" {
			t.Errorf("suppression reason %q, want bounce", got)
		}
	})
	t.Run("the same event twice changes nothing", func(t *testing.T) {
		if _, err := db.Exec(ctx, `DELETE FROM suppressions WHERE tenant_id = 'acme'`); err != nil {
			t.Fatal(err)
		}
		if got := apply(t, "e1", "c-sent", Bounced); got != FeedbackDuplicate {
			t.Fatalf("result %q, want duplicate", got)
		}
		if got := suppression(t, db, "acme", "sent@example.com"); got != "" {
			t.Errorf("a duplicate suppressed again: %q", got)
		}
	})
	t.Run("a later, milder report leaves the gravest", func(t *testing.T) {
		apply(t, "e2", "c-sent", Delivered)
		if got := delivery(t, db, "acme", job, "c-sent").Feedback; got != "bounced" {
			t.Errorf("feedback %q after a later delivered, want bounced", got)
		}
	})
	t.Run("a report settles an ambiguous delivery as sent and moves the counts", func(t *testing.T) {
		if got := totals(t, db, "acme", job); got != [2]int64{1, 1} {
			t.Fatalf("before: sent, ambiguous = %v, want [1 1]", got)
		}
		apply(t, "e3", "c-ambiguous", Delivered)
		if diff := cmp.Diff(deliveryView{State: "sent", Feedback: "delivered", Reason: "settled by ses delivered"},
			delivery(t, db, "acme", job, "c-ambiguous")); diff != "" {
			t.Errorf("delivery (-want +got):\n%s", diff)
		}
		if got := totals(t, db, "acme", job); got != [2]int64{2, 0} {
			t.Errorf("after: sent, ambiguous = %v, want [2 0]", got)
		}
	})
	t.Run("a complaint suppresses for good", func(t *testing.T) {
		apply(t, "e4", "c-ambiguous", Complained)
		if got := suppression(t, db, "acme", "ambiguous@example.com"); got != "complaint" {
			t.Errorf("suppression reason %q, want complaint", got)
		}
		if got := totals(t, db, "acme", job); got != [2]int64{2, 0} {
			t.Errorf("a second report of a settled delivery moved the counts: %v", got)
		}
	})
	t.Run("a delivery never handed to a provider takes no report", func(t *testing.T) {
		if got := apply(t, "e5", "c-suppressed", Complained); got != FeedbackUnknown {
			t.Fatalf("result %q, want unknown", got)
		}
		if got := delivery(t, db, "acme", job, "c-suppressed").Feedback; got != "" {
			t.Errorf("feedback %q on a suppressed delivery", got)
		}
	})
	t.Run("a key of no delivery, or of another tenant, changes nothing", func(t *testing.T) {
		if got := apply(t, "e6", "nobody", Bounced); got != FeedbackUnknown {
			t.Errorf("unknown customer: result %q", got)
		}
		other := key("c-sent")
		other.Tenant = "globex"
		res, err := s.ApplyFeedback(ctx, Feedback{Provider: "ses", EventID: "e7", Key: other, Kind: Complained}, 3)
		if err != nil || res != FeedbackUnknown {
			t.Errorf("another tenant's key: %q, %v", res, err)
		}
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM feedback_events WHERE event_id IN ('e5', 'e6', 'e7')`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d unknown reports were recorded (%v)", n, err)
		}
	})
}

func TestSoftBouncesSuppressAfterARun(t *testing.T) {
	db := testenv.DB(t)
	s := New(db)
	ctx := context.Background()
	job := feedbackJob(t, db, "acme", "sent")
	k := event.DeliveryKey{Tenant: "acme", Job: job, Channel: event.ChannelEmail, Customer: "c-sent"}
	report := func(id string, kind FeedbackKind) {
		t.Helper()
		if _, err := s.ApplyFeedback(ctx, Feedback{Provider: "smtp", EventID: id, Key: k, Kind: kind}, 3); err != nil {
			t.Fatal(err)
		}
	}
	report("s1", SoftBounce)
	report("s2", SoftBounce)
	report("d1", Delivered) // a delivery ends the run
	report("s3", SoftBounce)
	report("s4", SoftBounce)
	if got := suppression(t, db, "acme", "sent@example.com"); got != "" {
		t.Fatalf("suppressed (%q) after two soft bounces in a row", got)
	}
	report("s5", SoftBounce)
	if got := suppression(t, db, "acme", "sent@example.com"); got != "bounce" {
		t.Errorf("suppression %q after three soft bounces in a row, want bounce", got)
	}

	// Erasing the customer forgets the run along with the address.
	if _, err := db.Exec(ctx, `SELECT herald_erase_delivery_addresses('acme', 'c-sent')`); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM soft_bounces WHERE tenant_id = 'acme'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d soft-bounce runs left after erasure (%v)", left, err)
	}
}

func TestFeedbackRefusesWhatTheDatabaseWould(t *testing.T) {
	s := New(nil) // never reached: each report is refused before the database
	good := Feedback{Provider: "ses", EventID: "e1", Kind: Bounced,
		Key: event.DeliveryKey{Tenant: "acme", Job: event.NewJobID().String(), Channel: event.ChannelEmail, Customer: "c1"}}
	for name, mutate := range map[string]func(*Feedback){
		"no provider":       func(f *Feedback) { f.Provider = "" },
		"no event id":       func(f *Feedback) { f.EventID = "" },
		"a long event id":   func(f *Feedback) { f.EventID = string(make([]byte, 256)) },
		"no tenant":         func(f *Feedback) { f.Key.Tenant = "" },
		"a job id not uuid": func(f *Feedback) { f.Key.Job = "job-1" },
		"an upper-case job": func(f *Feedback) { f.Key.Job = "0B9F5A4E-3C1D-4E8A-9F00-1234567890AB" },
		"an unknown channel": func(f *Feedback) {
			f.Key.Channel = "ads"
		},
		"an unknown kind": func(f *Feedback) { f.Kind = "opened" },
		"a NUL":           func(f *Feedback) { f.Key.Customer = "c\x001" },
	} {
		f := good
		mutate(&f)
		if _, err := s.ApplyFeedback(context.Background(), f, 3); !errors.Is(err, ErrInvalidFeedback) {
			t.Errorf("%s: err = %v, want ErrInvalidFeedback", name, err)
		}
	}
	if _, err := s.ApplyFeedback(context.Background(), good, 0); !errors.Is(err, ErrInvalidFeedback) {
		t.Errorf("soft limit 0: err = %v, want ErrInvalidFeedback", err)
	}
}

// TestDeliveryByMessageHash: the hash of a delivery's Message-ID, as a VERP
// return path carries it, finds that delivery and no other; a hash no
// delivery has is ErrNotFound, and one that is not 32 hex digits never
// reaches the database.
func TestDeliveryByMessageHash(t *testing.T) {
	db := testenv.DB(t)
	s := New(db)
	ctx := context.Background()
	acme := feedbackJob(t, db, "acme", "sent", "ambiguous")
	globex := feedbackJob(t, db, "globex", "sent")
	keys := []event.DeliveryKey{
		{Tenant: "acme", Job: acme, Channel: event.ChannelEmail, Customer: "c-sent"},
		{Tenant: "acme", Job: acme, Channel: event.ChannelEmail, Customer: "c-ambiguous"},
		{Tenant: "globex", Job: globex, Channel: event.ChannelEmail, Customer: "c-sent"},
	}
	for _, k := range keys {
		if _, err := db.Exec(ctx, `UPDATE deliveries SET message_id = $1 WHERE tenant_id = $2 AND job_id = $3 AND customer_id = $4`,
			k.MessageID("mail.herald.test"), k.Tenant, k.Job, k.Customer); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range keys {
		hash, _, _ := strings.Cut(want.MessageID("mail.herald.test"), "@")
		got, err := s.DeliveryByMessageHash(ctx, hash)
		if err != nil {
			t.Fatalf("DeliveryByMessageHash(%s): %v", hash, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("DeliveryByMessageHash(%s) (-want +got):\n%s", hash, diff)
		}
	}
	unknown, _, _ := strings.Cut(event.DeliveryKey{Tenant: "acme", Job: acme, Channel: event.ChannelEmail, Customer: "nobody"}.MessageID(""), "@")
	if k, err := s.DeliveryByMessageHash(ctx, unknown); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown hash: %+v, %v; want ErrNotFound", k, err)
	}
	for _, bad := range []string{"", "%", strings.Repeat("A", 32), strings.Repeat("a", 31), strings.Repeat("a", 33)} {
		if k, err := s.DeliveryByMessageHash(ctx, bad); !errors.Is(err, ErrInvalidFeedback) {
			t.Errorf("hash %q: %+v, %v; want ErrInvalidFeedback", bad, k, err)
		}
	}
}

// TestMessageHashLookupUsesTheIndex: the lookup probes the Message-ID
// hash index of each partition (deliveries_message_hash, which each
// partition inherits) rather than scanning the ledger, which grows by
// billions of rows a day.
func TestMessageHashLookupUsesTheIndex(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	feedbackJob(t, db, "acme", "sent")
	if _, err := db.Exec(ctx, `ANALYZE deliveries`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, `EXPLAIN `+strings.ReplaceAll(deliveryByMessageHashSQL, "@hash", "'"+strings.Repeat("a", 32)+"'"))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(plan, "\n"), `Index Cond: ("left"(message_id, 32) =`) {
		t.Errorf("the lookup does not use the Message-ID hash index:\n%s", strings.Join(plan, "\n"))
	}
}
