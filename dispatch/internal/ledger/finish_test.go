package ledger_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"herald/dispatch/internal/ledger"
)

func TestFinishWaitsForEveryRecipient(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids) VALUES ($1, $2, $3, $4)`,
		b.Tenant, b.Job, b.Seq, []string{"c1", "c2"}); err != nil {
		t.Fatal(err)
	}
	done := func() bool {
		t.Helper()
		var done bool
		if err := db.QueryRow(ctx, `SELECT done_at IS NOT NULL FROM job_batches WHERE job_id = $1 AND seq = $2`, b.Job, b.Seq).Scan(&done); err != nil {
			t.Fatal(err)
		}
		return done
	}
	h, err := ledger.New(db).Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	step := func(what string, claim []ledger.Item, record []ledger.Outcome, want bool) {
		t.Helper()
		if len(claim) > 0 {
			if _, err := h.Claim(ctx, claim, "smtp:test"); err != nil {
				t.Fatal(err)
			}
		}
		if len(record) > 0 {
			if err := h.Record(ctx, record); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		if got := done(); got != want {
			t.Fatalf("%s: batch done %v, want %v", what, got, want)
		}
	}
	step("c1 sent, c2 not claimed", []ledger.Item{{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"}},
		[]ledger.Outcome{{CustomerID: "c1", State: ledger.Sent}}, false)
	step("c2 sending", []ledger.Item{{CustomerID: "c2", Email: "bob@example.com", MessageID: "m2"}}, nil, false)
	step("c2 deferred", nil, []ledger.Outcome{{CustomerID: "c2", State: ledger.Deferred, Reason: "421 try later"}}, false)
	if _, err := h.Retry(ctx, []string{"c2"}, "smtp:test"); err != nil {
		t.Fatal(err)
	}
	step("c2 sent", nil, []ledger.Outcome{{CustomerID: "c2", State: ledger.Sent}}, true)
}

// The finish check must look each recipient up by the ledger's key, not
// scan the job's ledger per recipient: planned against a fresh partition's
// missing statistics, a join did exactly that, and a 1,000,000-recipient
// job spent most of PostgreSQL's CPU on it.
func TestFinishLooksEachRecipientUp(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	ids := make([]string, 500)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%04d", i)
	}
	if _, err := db.Exec(ctx, `INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids) VALUES ($1, $2, $3, $4)`,
		b.Tenant, b.Job, b.Seq, ids); err != nil {
		t.Fatal(err)
	}
	// Rows the statistics do not know about yet, as in a job's first minutes.
	if _, err := db.Exec(ctx, `INSERT INTO deliveries (tenant_id, job_id, channel, customer_id, job_submitted_at, batch_seq, state, email)
		SELECT $1, $2, $3, 'x' || i, $4, 1, 'sent', 'x' || i || '@example.com' FROM generate_series(1, 5000) i`,
		b.Tenant, b.Job, b.Channel, b.SubmittedAt); err != nil {
		t.Fatal(err)
	}
	// Both as dispatch runs it (inside Ledger.Lock, which turns hash and
	// merge joins off) and with the server's defaults.
	for _, joins := range []string{"off", "on"} {
		tx, err := db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('enable_hashjoin', $1, true), set_config('enable_mergejoin', $1, true)`, joins); err != nil {
			t.Fatal(err)
		}
		var plan strings.Builder
		rows, err := tx.Query(ctx, "EXPLAIN "+finishStatement(t, db), b.Tenant, b.Job, b.Channel, b.SubmittedAt, b.Seq)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback(ctx)
		if !strings.Contains(plan.String(), "customer_id = c.id") || strings.Contains(plan.String(), "Join Filter") {
			t.Errorf("hash and merge joins %s: finish does not probe the ledger's key per recipient:\n%s", joins, plan.String())
		}
	}
}

// finishStatement is the statement herald_finish_batch runs (ledger's
// finish_batch.sql calls it), as installed, its arguments as $1..$5.
func finishStatement(t *testing.T, db *pgxpool.Pool) string {
	t.Helper()
	if !strings.Contains(ledger.FinishBatchSQL, "herald_finish_batch(") {
		t.Fatalf("finish_batch.sql no longer calls herald_finish_batch:\n%s", ledger.FinishBatchSQL)
	}
	var body string
	if err := db.QueryRow(context.Background(), `SELECT prosrc FROM pg_proc WHERE proname = 'herald_finish_batch'`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	for i, arg := range []string{"_tenant", "_job", "_channel", "_submitted", "_seq"} {
		body = regexp.MustCompile(`\b`+arg+`\b`).ReplaceAllLiteralString(body, fmt.Sprintf("$%d", i+1))
	}
	return body
}
