package ledger_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/devtools/testenv"
	"herald/dispatch/internal/ledger"
	"herald/shared/event"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func setup(t testing.TB) (*pgxpool.Pool, ledger.Batch) {
	t.Helper()
	db := testenv.DB(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := db.Exec(context.Background(), `SELECT herald_ensure_deliveries_partition($1)`, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(context.Background(), `INSERT INTO suppressions (tenant_id, email, reason) VALUES ('acme', 'gone@example.com', 'hard bounce')`); err != nil {
		t.Fatal(err)
	}
	b := ledger.Batch{Tenant: "acme", Job: event.NewJobID(), Channel: event.ChannelEmail, SubmittedAt: now, Deadline: now.Add(time.Hour), Seq: 3}
	addJob(t, db, b)
	return db, b
}

// addJob stores b's job, active, as ingest would have: the claim sends
// only for active jobs.
func addJob(t testing.TB, db *pgxpool.Pool, b ledger.Batch) {
	t.Helper()
	_, err := db.Exec(context.Background(), `INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel,
		template_id, template_version, audience, products_per_message, submitted_at, deadline)
		VALUES ($1, $2, $3, '', $4, 't', 1, '{}', 6, $5, $6)`, b.Tenant, b.Job, b.Job.String(), b.Channel, b.SubmittedAt, b.SubmittedAt.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
}

func progress(t *testing.T, db *pgxpool.Pool, job event.JobID) map[string]int64 {
	t.Helper()
	var sent, failed, suppressed, expired, ambiguous, capped int64
	err := db.QueryRow(context.Background(), `SELECT coalesce(sum(sent),0), coalesce(sum(failed),0), coalesce(sum(suppressed),0),
		coalesce(sum(expired),0), coalesce(sum(ambiguous),0), coalesce(sum(capped),0) FROM job_progress WHERE job_id = $1`, job).
		Scan(&sent, &failed, &suppressed, &expired, &ambiguous, &capped)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]int64{"sent": sent, "failed": failed, "suppressed": suppressed, "expired": expired, "ambiguous": ambiguous, "capped": capped}
}

var byCustomer = cmpopts.SortSlices(func(a, b ledger.Claim) bool { return a.CustomerID < b.CustomerID })

func TestClaimOncePerRecipient(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	l := ledger.New(db)
	items := []ledger.Item{
		{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"},
		{CustomerID: "c2", Email: "Gone@Example.com", MessageID: "m2"},
		{CustomerID: "c3", Email: "bob@example.com", RenderError: "template exploded"},
	}
	h, err := l.Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	claims, err := h.Claim(ctx, items, "smtp:test")
	if err != nil {
		t.Fatal(err)
	}
	want := []ledger.Claim{{CustomerID: "c1", State: ledger.Sending, Fresh: true, Provider: "smtp:test"}, {CustomerID: "c2", State: ledger.Suppressed, Fresh: true, Provider: ""}, {CustomerID: "c3", State: ledger.Failed, Fresh: true, Provider: ""}}
	if diff := cmp.Diff(want, claims, byCustomer); diff != "" {
		t.Fatalf("first claim (-want +got):\n%s", diff)
	}
	// A second claim of the same batch (a redelivered message) creates
	// nothing and reports what the first one left.
	again, err := h.Claim(ctx, items, "smtp:test")
	if err != nil {
		t.Fatal(err)
	}
	want = []ledger.Claim{{CustomerID: "c1", State: ledger.Sending, Fresh: false, Provider: "smtp:test"}, {CustomerID: "c2", State: ledger.Suppressed, Fresh: false, Provider: ""}, {CustomerID: "c3", State: ledger.Failed, Fresh: false, Provider: ""}}
	if diff := cmp.Diff(want, again, byCustomer); diff != "" {
		t.Fatalf("second claim (-want +got):\n%s", diff)
	}
	if err := h.Record(ctx, []ledger.Outcome{{CustomerID: "c1", State: ledger.Sent, Reason: "250 ok"}}); err != nil {
		t.Fatal(err)
	}
	// Recording twice changes nothing: only rows in sending move.
	if err := h.Record(ctx, []ledger.Outcome{{CustomerID: "c1", State: ledger.Sent, Reason: "250 ok"}}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int64{"sent": 1, "failed": 1, "suppressed": 1, "expired": 0, "ambiguous": 0, "capped": 0}, progress(t, db, b.Job)); diff != "" {
		t.Fatalf("progress (-want +got):\n%s", diff)
	}
	// Another batch naming the same recipients owns none of them.
	other := b
	other.Seq = 4
	h2, err := l.Lock(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Release(ctx)
	if claims, err := h2.Claim(ctx, items, "smtp:test"); err != nil || len(claims) != 0 {
		t.Fatalf("other batch claimed %v, %v; want nothing", claims, err)
	}
}

func TestLockIsExclusive(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	l := ledger.New(db)
	h, err := l.Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *ledger.Held, 1)
	go func() {
		h2, err := l.Lock(ctx, b)
		if err != nil {
			t.Error(err)
		}
		got <- h2
	}()
	select {
	case <-got:
		t.Fatal("a second worker locked a batch that is held")
	case <-time.After(300 * time.Millisecond):
	}
	h.Release(ctx)
	select {
	case h2 := <-got:
		h2.Release(ctx)
	case <-time.After(10 * time.Second):
		t.Fatal("the lock was not handed over after release")
	}
}

// TestLockTakesTheBatchKey: the advisory lock a held batch takes is its
// event.BatchKey's, the key every release of dispatch locks for that
// batch, so two releases side by side never work one batch at once.
func TestLockTakesTheBatchKey(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	key := event.BatchKey{Job: b.Job, Seq: b.Seq, Channel: b.Channel}.LockKey()
	other, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	defer other.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
	// tryLock reports whether the other session takes the key; the held
	// batch is released before anything fails, or the pool would wait for
	// its connection forever.
	tryLock := func() bool {
		t.Helper()
		var ok bool
		if err := other.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
			t.Error(err)
		}
		return ok
	}
	h, err := ledger.New(db).Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	whileHeld := tryLock()
	h.Release(ctx)
	if whileHeld {
		t.Error("another session locked the batch key while the batch is held")
	}
	if !tryLock() {
		t.Error("the batch key stayed locked after release")
	}
}

// TestBatchJobIsAUUID: a batch's job id reaches PostgreSQL as the uuid it
// names.
func TestBatchJobIsAUUID(t *testing.T) {
	db, b := setup(t)
	var got string
	if err := db.QueryRow(context.Background(), `SELECT $1::uuid::text`, b.Job).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != b.Job.String() {
		t.Fatalf("job id %s reached PostgreSQL as %s", b.Job, got)
	}
}

func TestPastTheDeadlineRecipientsExpire(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	b.Deadline = b.SubmittedAt.Add(-time.Second)
	h, err := ledger.New(db).Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	claims, err := h.Claim(ctx, []ledger.Item{{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"}}, "smtp:test")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]ledger.Claim{{CustomerID: "c1", State: ledger.Expired, Fresh: true, Provider: ""}}, claims); diff != "" {
		t.Fatalf("claim past the deadline (-want +got):\n%s", diff)
	}
	if p := progress(t, db, b.Job); p["expired"] != 1 {
		t.Fatalf("progress %v, want one expired", p)
	}
}

func TestDeferredAreRetriedByTheirBatch(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	h, err := ledger.New(db).Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	if _, err := h.Claim(ctx, []ledger.Item{{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"}}, "smtp:test"); err != nil {
		t.Fatal(err)
	}
	if err := h.Record(ctx, []ledger.Outcome{{CustomerID: "c1", State: ledger.Deferred, Reason: "421 try later"}}); err != nil {
		t.Fatal(err)
	}
	states, err := h.Retry(ctx, []string{"c1"}, "smtp:test")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]ledger.Retried{"c1": {State: ledger.Sending}}, states); diff != "" {
		t.Fatalf("retry (-want +got):\n%s", diff)
	}
	var attempts int
	if err := db.QueryRow(ctx, `SELECT attempts FROM deliveries WHERE customer_id = 'c1'`).Scan(&attempts); err != nil || attempts != 2 {
		t.Fatalf("attempts %d, %v; want 2", attempts, err)
	}
}

func TestDailyCapHoldsAcrossJobs(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `INSERT INTO tenants (id, daily_cap) VALUES ('acme', 1)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO customers (tenant_id, id, email, timezone) VALUES ('acme', 'c1', 'ada@example.com', 'Pacific/Kiritimati')`); err != nil {
		t.Fatal(err)
	}
	item := []ledger.Item{{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"}}
	claim := func(b ledger.Batch) []ledger.Claim {
		h, err := ledger.New(db).Lock(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		claims, err := h.Claim(ctx, item, "smtp:test")
		if err != nil {
			t.Fatal(err)
		}
		return claims
	}
	if diff := cmp.Diff([]ledger.Claim{{CustomerID: "c1", State: ledger.Sending, Fresh: true, Provider: "smtp:test"}}, claim(b)); diff != "" {
		t.Fatalf("first job (-want +got):\n%s", diff)
	}
	second := b
	second.Job = event.NewJobID()
	addJob(t, db, second)
	if diff := cmp.Diff([]ledger.Claim{{CustomerID: "c1", State: ledger.Capped, Fresh: true, Provider: ""}}, claim(second)); diff != "" {
		t.Fatalf("second job the same day (-want +got):\n%s", diff)
	}
	// The day is the recipient's own: Kiritimati is 14 hours ahead of UTC.
	var day time.Time
	if err := db.QueryRow(ctx, `SELECT day FROM recipient_day_counts WHERE customer_id = 'c1'`).Scan(&day); err != nil {
		t.Fatal(err)
	}
	if want := time.Now().In(mustLoad(t, "Pacific/Kiritimati")).Format(time.DateOnly); day.Format(time.DateOnly) != want {
		t.Fatalf("counted on %s, want the recipient's local day %s", day.Format(time.DateOnly), want)
	}
	if p := progress(t, db, second.Job); p["capped"] != 1 {
		t.Fatalf("second job's progress %v, want one capped", p)
	}
}

func mustLoad(t *testing.T, name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestPausedJobsClaimNobody(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `UPDATE jobs SET state = 'paused' WHERE id = $1`, b.Job); err != nil {
		t.Fatal(err)
	}
	h, err := ledger.New(db).Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	if state, err := h.JobState(ctx); err != nil || state != "paused" {
		t.Fatalf("job state %q, %v", state, err)
	}
	claims, err := h.Claim(ctx, []ledger.Item{{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"}}, "smtp:test")
	if err != nil || len(claims) != 0 {
		t.Fatalf("claims for a paused job: %v, %v", claims, err)
	}
}

// TestRetryRechecksSuppression: a recipient deferred before they
// unsubscribed is not sent when the batch comes back.
func TestRetryRechecksSuppression(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	h, err := ledger.New(db).Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	if _, err := h.Claim(ctx, []ledger.Item{{CustomerID: "c1", Email: "Ada@example.com", MessageID: "m1"}}, "smtp:test"); err != nil {
		t.Fatal(err)
	}
	if err := h.Record(ctx, []ledger.Outcome{{CustomerID: "c1", State: ledger.Deferred, Reason: "waiting for the send rate"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO suppressions (tenant_id, email, reason) VALUES ('acme', 'ada@example.com', 'unsubscribed')`); err != nil {
		t.Fatal(err)
	}
	states, err := h.Retry(ctx, []string{"c1"}, "smtp:test")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]ledger.Retried{"c1": {State: ledger.Suppressed}}, states); diff != "" {
		t.Fatalf("retry after an unsubscribe (-want +got):\n%s", diff)
	}
	if p := progress(t, db, b.Job); p["suppressed"] != 1 {
		t.Fatalf("progress %v, want one suppressed", p)
	}
}

// TestQuietHoursHoldOrSkip puts a recipient inside the job's quiet hours
// (the whole day but one minute, in their time zone): with hold, the claim
// defers them until the window ends; with skip, it skips them.
func TestQuietHoursHoldOrSkip(t *testing.T) {
	for _, mode := range []string{"hold", "skip"} {
		t.Run(mode, func(t *testing.T) {
			db, b := setup(t)
			ctx := context.Background()
			if _, err := db.Exec(ctx, `INSERT INTO customers (tenant_id, id, email, timezone) VALUES ('acme', 'c1', 'ada@example.com', 'America/New_York')`); err != nil {
				t.Fatal(err)
			}
			ny := mustLoad(t, "America/New_York")
			local := time.Now().In(ny)
			now := local.Hour()*60 + local.Minute()
			// A window that ends two minutes from now, local time.
			b.Quiet = &ledger.Quiet{StartMinute: (now + 3) % 1440, EndMinute: (now + 2) % 1440, Mode: mode}
			h, err := ledger.New(db).Lock(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Release(ctx)
			claims, err := h.Claim(ctx, []ledger.Item{{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"}}, "smtp:test")
			if err != nil || len(claims) != 1 {
				t.Fatalf("claim: %v, %v", claims, err)
			}
			c := claims[0]
			if mode == "skip" {
				if c.State != ledger.Skipped || c.NotBefore != nil {
					t.Fatalf("skip mode: %+v", c)
				}
				return
			}
			end := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, ny).Add(time.Duration((now+2)%1440) * time.Minute)
			if !end.After(local) {
				end = end.Add(24 * time.Hour)
			}
			if c.State != ledger.Deferred || c.NotBefore == nil || !c.NotBefore.Equal(end) {
				t.Fatalf("hold mode: %+v; want deferred until %s", c, end)
			}
			// Coming back early changes nothing: the row is still held.
			states, err := h.Retry(ctx, []string{"c1"}, "smtp:test")
			if err != nil {
				t.Fatal(err)
			}
			if st := states["c1"]; st.State != ledger.Deferred || st.NotBefore == nil || !st.NotBefore.Equal(end) {
				t.Fatalf("early retry: %+v", st)
			}
		})
	}
}

// TestGlobalSuppressionsApplyToEveryTenant: an address on the global list
// ('*') is suppressed for any tenant.
func TestGlobalSuppressionsApplyToEveryTenant(t *testing.T) {
	db, b := setup(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `INSERT INTO suppressions (tenant_id, email, reason) VALUES ('*', 'trap@example.com', 'spam trap')`); err != nil {
		t.Fatal(err)
	}
	h, err := ledger.New(db).Lock(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	claims, err := h.Claim(ctx, []ledger.Item{{CustomerID: "c1", Email: "Trap@Example.com", MessageID: "m1"}}, "smtp:test")
	if err != nil || len(claims) != 1 || claims[0].State != ledger.Suppressed {
		t.Fatalf("claim of a globally suppressed address: %+v, %v", claims, err)
	}
}

// TestDailyCapCountsASendHeldForQuietHours: a recipient held for quiet
// hours at the claim takes a send of their local day when the hold ends,
// and is capped if the day is used up meanwhile; a recipient whose send
// was counted at the claim and then deferred by the provider is not
// counted again.
func TestDailyCapCountsASendHeldForQuietHours(t *testing.T) {
	ny := mustLoad(t, "America/New_York")
	for _, tc := range []struct {
		name      string
		usedToday int // sends of the recipient's day by other jobs
		want      string
		wantCount int
	}{
		{"day free", 0, ledger.Sending, 1},
		{"day used up", 1, ledger.Capped, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, b := setup(t)
			ctx := context.Background()
			for _, q := range []string{
				`INSERT INTO tenants (id, daily_cap) VALUES ('acme', 1)`,
				`INSERT INTO customers (tenant_id, id, email, timezone) VALUES ('acme', 'c1', 'ada@example.com', 'America/New_York')`,
			} {
				if _, err := db.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			local := time.Now().In(ny)
			now := local.Hour()*60 + local.Minute()
			held := b
			held.Quiet = &ledger.Quiet{StartMinute: (now + 3) % 1440, EndMinute: (now + 2) % 1440, Mode: "hold"}
			h, err := ledger.New(db).Lock(ctx, held)
			if err != nil {
				t.Fatal(err)
			}
			claims, err := h.Claim(ctx, []ledger.Item{{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"}}, "smtp:test")
			h.Release(ctx)
			if err != nil || len(claims) != 1 || claims[0].State != ledger.Deferred {
				t.Fatalf("claim in quiet hours: %+v, %v", claims, err)
			}
			day := local.Format(time.DateOnly)
			if tc.usedToday > 0 {
				if _, err := db.Exec(ctx, `INSERT INTO recipient_day_counts (tenant_id, customer_id, day, sends) VALUES ('acme', 'c1', $1, $2)`, day, tc.usedToday); err != nil {
					t.Fatal(err)
				}
			}
			// The quiet hours are over.
			if _, err := db.Exec(ctx, `UPDATE deliveries SET not_before = now() - interval '1 second' WHERE customer_id = 'c1'`); err != nil {
				t.Fatal(err)
			}
			h, err = ledger.New(db).Lock(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Release(ctx)
			states, err := h.Retry(ctx, []string{"c1"}, "smtp:test")
			if err != nil {
				t.Fatal(err)
			}
			if st := states["c1"]; st.State != tc.want {
				t.Fatalf("after the hold: %+v, want %s", st, tc.want)
			}
			var sends int
			if err := db.QueryRow(ctx, `SELECT sends FROM recipient_day_counts WHERE customer_id = 'c1' AND day = $1`, day).Scan(&sends); err != nil {
				t.Fatal(err)
			}
			if sends != tc.wantCount {
				t.Fatalf("%d sends counted for the day, want %d", sends, tc.wantCount)
			}
			if tc.want == ledger.Capped {
				if p := progress(t, db, b.Job); p["capped"] != 1 {
					t.Fatalf("progress %v, want one capped", p)
				}
			}
		})
	}
	t.Run("counted at the claim", func(t *testing.T) {
		db, b := setup(t)
		ctx := context.Background()
		if _, err := db.Exec(ctx, `INSERT INTO tenants (id, daily_cap) VALUES ('acme', 1)`); err != nil {
			t.Fatal(err)
		}
		h, err := ledger.New(db).Lock(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		if _, err := h.Claim(ctx, []ledger.Item{{CustomerID: "c1", Email: "ada@example.com", MessageID: "m1"}}, "smtp:test"); err != nil {
			t.Fatal(err)
		}
		if err := h.Record(ctx, []ledger.Outcome{{CustomerID: "c1", State: ledger.Deferred, Reason: "421 try later"}}); err != nil {
			t.Fatal(err)
		}
		states, err := h.Retry(ctx, []string{"c1"}, "smtp:test")
		if err != nil {
			t.Fatal(err)
		}
		if st := states["c1"]; st.State != ledger.Sending {
			t.Fatalf("retry of a provider deferral: %+v, want sending", st)
		}
		var sends int
		if err := db.QueryRow(ctx, `SELECT sum(sends) FROM recipient_day_counts WHERE customer_id = 'c1'`).Scan(&sends); err != nil {
			t.Fatal(err)
		}
		if sends != 1 {
			t.Fatalf("%d sends counted, want the claim's one", sends)
		}
	})
}
