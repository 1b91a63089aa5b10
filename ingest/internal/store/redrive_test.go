package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

// RedriveJob makes an active job's provider failures deferred again, takes
// them out of its failed count, and unpublishes every batch that holds one
// or is unfinished; render failures stay failed.
func TestRedriveJob(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bf")
	j := newJob("k1", "")
	id := f.create("acme", j).ID
	f.exec(`INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids, published_at, publishes, done_at)
		VALUES ('acme', $1, 0, '{c1,c2}', now(), 1, now()), ('acme', $1, 1, '{c3}', now(), 1, now()),
		       ('acme', $1, 2, '{c4}', now(), 3, NULL), ('acme', $1, 3, '{c5}', now(), 1, now())`, id)
	f.exec(`INSERT INTO deliveries (tenant_id, job_id, channel, customer_id, job_submitted_at, batch_seq, state, email, reason, done_at)
		VALUES ('acme', $1, 'email', 'c1', $2, 0, 'sent', 'c1@example.com', '', now()),
		       ('acme', $1, 'email', 'c2', $2, 0, 'failed', 'c2@example.com', 'provider: 550 mailbox full', now()),
		       ('acme', $1, 'email', 'c3', $2, 1, 'failed', 'c3@example.com', 'render: template error', now()),
		       ('acme', $1, 'email', 'c5', $2, 3, 'sent', 'c5@example.com', '', now())`, id, j.SubmittedAt)
	f.exec(`INSERT INTO job_progress (tenant_id, job_id, shard, sent, failed) VALUES ('acme', $1, 0, 2, 2)`, id)

	got, err := f.s.RedriveJob(ctx, "acme", id, testNow())
	if err != nil {
		t.Fatal(err)
	}
	if got != (Redriven{Recipients: 1, Batches: 2}) {
		t.Errorf("re-drove %+v, want 1 recipient and 2 batches (the failure's and the unfinished one)", got)
	}
	for _, tc := range []struct {
		what string
		sql  string
		want int
	}{
		{"c2 deferred again", `SELECT count(*) FROM deliveries WHERE customer_id = 'c2' AND state = 'deferred' AND done_at IS NULL`, 1},
		{"c3's render failure stays", `SELECT count(*) FROM deliveries WHERE customer_id = 'c3' AND state = 'failed'`, 1},
		{"failed count", `SELECT failed FROM job_progress WHERE job_id = '` + id.String() + `'`, 1},
		{"batches 0 and 2 to publish again", `SELECT count(*) FROM job_batches WHERE seq IN (0, 2) AND published_at IS NULL AND publishes = 0 AND done_at IS NULL`, 2},
		{"batches 1 and 3 untouched", `SELECT count(*) FROM job_batches WHERE seq IN (1, 3) AND published_at IS NOT NULL AND done_at IS NOT NULL`, 2},
	} {
		if n := f.count(tc.sql); n != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, n, tc.want)
		}
	}
	if again, err := f.s.RedriveJob(ctx, "acme", id, testNow()); err != nil || again.Recipients != 0 {
		t.Errorf("again: %+v, %v; want no recipient", again, err)
	}
}

// A re-drive needs an active job of the tenant before its deadline.
func TestRedriveJobRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bf")
	j := newJob("k1", "")
	id := f.create("acme", j).ID
	if _, err := f.s.RedriveJob(ctx, "globex", id, testNow()); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant's job: %v, want ErrNotFound", err)
	}
	if _, err := f.s.RedriveJob(ctx, "acme", uuid.New(), testNow()); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown job: %v, want ErrNotFound", err)
	}
	if _, err := f.s.RedriveJob(ctx, "acme", id, j.Deadline); !errors.Is(err, ErrDeadlinePassed) {
		t.Errorf("at the deadline: %v, want ErrDeadlinePassed", err)
	}
	if err := f.s.ChangeJob(ctx, "acme", id, Pause); err != nil {
		t.Fatal(err)
	}
	var bad *TransitionError
	if _, err := f.s.RedriveJob(ctx, "acme", id, testNow()); !errors.As(err, &bad) || *bad != (TransitionError{Action: Redrive, State: StatePaused}) {
		t.Errorf("paused job: %v, want a *TransitionError for re-driving a paused job", err)
	}
	if bad != nil && bad.Error() != "a paused job cannot be re-driven" {
		t.Errorf("message %q", bad.Error())
	}
}

// OnsiteMessages reads a customer's unexpired messages, newest first, and
// marks them seen; a customer the tenant does not have is not found.
func TestOnsiteMessages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.customers("acme", "c1", "c2")
	job := uuid.New()
	now := time.Now()
	f.exec(`INSERT INTO onsite_messages (tenant_id, customer_id, delivery_key, job_id, payload, created_at, expires_at)
		VALUES ('acme', 'c1', 'k-old', $1, '{"n":1}', $2, $4), ('acme', 'c1', 'k-new', $1, '{"n":2}', $3, $4),
		       ('acme', 'c1', 'k-gone', $1, '{"n":0}', $2, $2), ('acme', 'c2', 'k-other', $1, '{"n":3}', $3, $4)`,
		job, now.Add(-2*time.Hour), now.Add(-time.Hour), now.Add(time.Hour))
	read := func(limit int) ([]string, []bool) {
		t.Helper()
		msgs, err := f.s.OnsiteMessages(ctx, "acme", "c1", limit)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		var seen []bool
		for _, m := range msgs {
			if m.JobID != job {
				t.Errorf("message %s of job %s, want %s", m.ID, m.JobID, job)
			}
			keys, seen = append(keys, m.ID), append(seen, m.Seen)
		}
		return keys, seen
	}
	if keys, seen := read(1); len(keys) != 1 || keys[0] != "k-new" || seen[0] {
		t.Errorf("first read of one: %v seen %v, want the newest, unseen", keys, seen)
	}
	if keys, seen := read(10); len(keys) != 2 || keys[0] != "k-new" || keys[1] != "k-old" || !seen[0] || seen[1] {
		t.Errorf("second read: %v seen %v, want k-new (seen) and k-old (unseen)", keys, seen)
	}
	if _, err := f.s.OnsiteMessages(ctx, "acme", "c9", 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown customer: %v, want ErrNotFound", err)
	}
	if _, err := f.s.OnsiteMessages(ctx, "globex", "c1", 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant's customer: %v, want ErrNotFound", err)
	}
}
