package triggers_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/ingest/internal/store"
	"herald/ingest/internal/triggers"
	eventv1 "herald/shared/event/v1"

	"google.golang.org/protobuf/encoding/protojson"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func exec(t *testing.T, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// seed gives tenant a template, five customers, a sold-out item and a
// cheap one, and these events: c1 viewed the sold-out item, c2 carted it,
// c3 carted it and bought it since, c4 viewed it long ago, c5 (not
// subscribed) viewed it.
func seed(t *testing.T, db *pgxpool.Pool, tenant string) {
	t.Helper()
	now := time.Now()
	exec(t, db, `INSERT INTO templates (tenant_id, id, version, from_email, subject, html) VALUES ($1, 'restock', 1, 'shop@acme.example', 'Back', '<p>x</p>')`, tenant)
	for i, sub := range []bool{true, true, true, true, false} {
		exec(t, db, `INSERT INTO customers (tenant_id, id, email, subscribed) VALUES ($1, $2, $3, $4)`,
			tenant, "c"+string(rune('1'+i)), "c"+string(rune('1'+i))+"@example.com", sub)
	}
	exec(t, db, `INSERT INTO catalog_items (tenant_id, id, title, url, price_cents, in_stock) VALUES
		($1, 'boots', 'Boots', 'https://acme.example/boots', 10000, false), ($1, 'socks', 'Socks', 'https://acme.example/socks', 500, true)`, tenant)
	for _, e := range []struct {
		customer, kind string
		ago            time.Duration
	}{
		{"c1", "view", time.Hour}, {"c2", "add_to_cart", 2 * time.Hour}, {"c3", "add_to_cart", 3 * time.Hour},
		{"c3", "purchase", time.Hour}, {"c4", "view", 50 * 24 * time.Hour}, {"c5", "view", time.Hour},
	} {
		exec(t, db, `SELECT herald_ensure_events_partition($1)`, now.Add(-e.ago))
		exec(t, db, `INSERT INTO events (tenant_id, customer_id, kind, item_id, occurred_at) VALUES ($1, $2, $3, 'boots', $4)`,
			tenant, e.customer, e.kind, now.Add(-e.ago))
	}
}

type jobRow struct {
	ID       string
	Key      string
	Audience store.Audience
	Picking  []byte
	Campaign string
	Channel  string
	Due      time.Duration
}

func jobsOf(t *testing.T, db *pgxpool.Pool, tenant string) []jobRow {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT id::text, idempotency_key, audience, picking, campaign, channel,
		extract(epoch FROM deadline - submitted_at)::float8 FROM jobs WHERE tenant_id = $1 ORDER BY idempotency_key`, tenant)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []jobRow
	for rows.Next() {
		var j jobRow
		var audience []byte
		var due float64
		if err := rows.Scan(&j.ID, &j.Key, &audience, &j.Picking, &j.Campaign, &j.Channel, &due); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(audience, &j.Audience); err != nil {
			t.Fatal(err)
		}
		j.Due = time.Duration(due * float64(time.Second))
		out = append(out, j)
	}
	return out
}

func newWorker(db *pgxpool.Pool, maxAudience int) *triggers.Worker {
	return triggers.New(store.New(db), slog.New(slog.DiscardHandler), prometheus.NewRegistry(),
		triggers.Config{Poll: time.Second, MaxAudience: maxAudience, Attempts: 3})
}

func TestBackInStockCreatesOneJobForTheInterested(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	seed(t, db, "acme")
	if err := store.New(db).PutCatalogTrigger(ctx, "acme", store.CatalogTrigger{Kind: "back_in_stock", Channel: "email",
		TemplateID: "restock", Lookback: 30 * 24 * time.Hour, Deadline: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	exec(t, db, `UPDATE catalog_items SET in_stock = true WHERE tenant_id = 'acme' AND id = 'boots'`)
	w := newWorker(db, 10_000)
	// Twice: acting on the changes again makes no second job.
	for range 2 {
		if err := w.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	jobs := jobsOf(t, db, "acme")
	if len(jobs) != 1 {
		t.Fatalf("%d jobs, want 1: %+v", len(jobs), jobs)
	}
	j := jobs[0]
	if want := []string{"c1", "c2"}; !slices.Equal(j.Audience.CustomerIDs, want) {
		t.Errorf("audience %v, want %v (c3 bought it, c4 looked too long ago, c5 unsubscribed)", j.Audience.CustomerIDs, want)
	}
	var p eventv1.Picking
	if err := protojson.Unmarshal(j.Picking, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Strategies) != 1 || p.Strategies[0].Name != "back_in_stock" || !slices.Equal(p.ItemIds, []string{"boots"}) || p.OnShort != "skip" {
		t.Errorf("picking %v: want back_in_stock of boots only, skipping the recipient when it is gone", &p)
	}
	if j.Campaign != "back_in_stock" || j.Channel != "email" || j.Due != 2*time.Hour {
		t.Errorf("job campaign %q channel %q due %s after submission", j.Campaign, j.Channel, j.Due)
	}
	var handled int
	var jobID string
	if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE handled_at IS NOT NULL), max(job_id::text) FROM catalog_changes WHERE tenant_id = 'acme'`).Scan(&handled, &jobID); err != nil {
		t.Fatal(err)
	}
	if handled != 1 || jobID != j.ID {
		t.Errorf("catalog change handled %d times with job %s, want once with %s", handled, jobID, j.ID)
	}
}

func TestChangesWithoutATriggerOrAnAudienceMakeNoJob(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	seed(t, db, "acme")
	st := store.New(db)
	if err := st.PutCatalogTrigger(ctx, "acme", store.CatalogTrigger{Kind: "price_drop", Channel: "email",
		TemplateID: "restock", Lookback: 30 * 24 * time.Hour, MinDropPercent: 20}); err != nil {
		t.Fatal(err)
	}
	// Back in stock, but the tenant has no back_in_stock trigger; socks
	// drop 50% but nobody looked at them; boots drop 10%, under the
	// trigger's minimum. Then boots drop 30%: a job.
	exec(t, db, `UPDATE catalog_items SET in_stock = true WHERE tenant_id = 'acme' AND id = 'boots'`)
	exec(t, db, `UPDATE catalog_items SET price_cents = 250 WHERE tenant_id = 'acme' AND id = 'socks'`)
	exec(t, db, `UPDATE catalog_items SET price_cents = 9000 WHERE tenant_id = 'acme' AND id = 'boots'`)
	w := newWorker(db, 1)
	if err := w.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if jobs := jobsOf(t, db, "acme"); len(jobs) != 0 {
		t.Fatalf("jobs %+v, want none", jobs)
	}
	exec(t, db, `UPDATE catalog_items SET price_cents = 6300 WHERE tenant_id = 'acme' AND id = 'boots'`)
	if err := w.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// MaxAudience 1: the two interested customers get a job each.
	jobs := jobsOf(t, db, "acme")
	var got []string
	for _, j := range jobs {
		got = append(got, j.Audience.CustomerIDs...)
	}
	if len(jobs) != 2 || !slices.Equal(got, []string{"c1", "c2"}) || jobs[0].Campaign != "price_drop" {
		t.Fatalf("jobs %+v: want one price_drop job for each of c1 and c2", jobs)
	}
	var pending int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM catalog_changes WHERE handled_at IS NULL`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != 0 {
		t.Errorf("%d catalog changes left unhandled", pending)
	}
}

// handling is what became of one catalog change.
type handling struct {
	Tenant, Item, Kind string
	// Outcome is "job", "none" (handled, nobody to message), "parked" or
	// "pending".
	Outcome string
}

// handlings lists every catalog change: those handled, in the order they
// were, then the parked ones, then those still pending. It returns the
// reasons of the parked ones apart.
func handlings(t *testing.T, db *pgxpool.Pool) ([]handling, []string) {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT tenant_id, item_id, kind,
		CASE WHEN job_id IS NOT NULL THEN 'job' WHEN handled_at IS NOT NULL THEN 'none' WHEN parked_at IS NOT NULL THEN 'parked' ELSE 'pending' END,
		coalesce(last_error, '')
		FROM catalog_changes ORDER BY handled_at NULLS LAST, parked_at NULLS LAST, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []handling
	var reasons []string
	for rows.Next() {
		var h handling
		var reason string
		if err := rows.Scan(&h.Tenant, &h.Item, &h.Kind, &h.Outcome, &reason); err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
		if h.Outcome == "parked" {
			reasons = append(reasons, reason)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, reasons
}

// TestOneTenantCannotHoldUpAnother gives acme and globex each a
// back_in_stock trigger and the same customers, lets acme make trouble,
// and checks that globex's change is acted on all the same.
func TestOneTenantCannotHoldUpAnother(t *testing.T) {
	backInStock := func(t *testing.T, db *pgxpool.Pool, tenant string) {
		exec(t, db, `UPDATE catalog_items SET in_stock = true WHERE tenant_id = $1 AND id = 'boots'`, tenant)
	}
	for _, tc := range []struct {
		name string
		// trouble makes the catalog changes, acme's first.
		trouble func(t *testing.T, db *pgxpool.Pool)
		want    []handling
		// parkedFor is part of every parked change's reason.
		parkedFor string
	}{{
		name: "acme submitted jobs under the keys of its own catalog change's job",
		trouble: func(t *testing.T, db *pgxpool.Pool) {
			backInStock(t, db, "acme")
			var id string
			if err := db.QueryRow(context.Background(), `SELECT id::text FROM catalog_changes WHERE tenant_id = 'acme'`).Scan(&id); err != nil {
				t.Fatal(err)
			}
			for _, k := range []struct {
				key     string
				refused bool
			}{
				{"catalog-change-" + id, false}, // the key such a job had: a partner's now
				{"catalog change " + id, true},  // the key it has, which no partner's job may hold
			} {
				now := time.Now()
				hash := sha256.Sum256([]byte("acme's own request"))
				_, err := store.New(db).CreateJob(context.Background(), "acme", store.NewJob{
					IdempotencyKey: k.key, RequestHash: hash[:],
					Channel: "email", TemplateID: "restock", Audience: store.Audience{CustomerIDs: []string{"c1"}},
					ProductsPerMessage: 1, SubmittedAt: now, Deadline: now.Add(time.Hour),
				}, func(store.JobStatus) ([]byte, error) { return []byte("{}"), nil })
				var pgErr *pgconn.PgError
				if refused := errors.As(err, &pgErr) && pgErr.ConstraintName == "jobs_key_of_origin"; refused != k.refused || (err != nil && !refused) {
					t.Fatalf("acme's job under %q: error %v; want it refused: %v", k.key, err, k.refused)
				}
			}
			backInStock(t, db, "globex")
		},
		want: []handling{{"acme", "boots", "back_in_stock", "job"}, {"globex", "boots", "back_in_stock", "job"}},
	}, {
		name: "acme's trigger makes a job that can never be stored",
		trouble: func(t *testing.T, db *pgxpool.Pool) {
			exec(t, db, `UPDATE catalog_triggers SET deadline = interval '-1 hour' WHERE tenant_id = 'acme'`)
			backInStock(t, db, "acme")
			backInStock(t, db, "globex")
		},
		want:      []handling{{"globex", "boots", "back_in_stock", "job"}, {"acme", "boots", "back_in_stock", "parked"}},
		parkedFor: "violates check constraint",
	}, {
		name: "acme changed much of its catalog before globex changed anything",
		trouble: func(t *testing.T, db *pgxpool.Pool) {
			backInStock(t, db, "acme")
			exec(t, db, `UPDATE catalog_items SET price_cents = 100 WHERE tenant_id = 'acme' AND id = 'socks'`)
			exec(t, db, `UPDATE catalog_items SET price_cents = 5000 WHERE tenant_id = 'acme' AND id = 'boots'`)
			backInStock(t, db, "globex")
		},
		// acme has no price_drop trigger: those changes make no job.
		want: []handling{{"acme", "boots", "back_in_stock", "job"}, {"globex", "boots", "back_in_stock", "job"},
			{"acme", "socks", "price_drop", "none"}, {"acme", "boots", "price_drop", "none"}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			db := testenv.DB(t)
			ctx := context.Background()
			for _, tenant := range []string{"acme", "globex"} {
				seed(t, db, tenant)
				if err := store.New(db).PutCatalogTrigger(ctx, tenant, store.CatalogTrigger{Kind: "back_in_stock", Channel: "email",
					TemplateID: "restock", Lookback: 30 * 24 * time.Hour}); err != nil {
					t.Fatal(err)
				}
			}
			tc.trouble(t, db)
			if err := newWorker(db, 10_000).Drain(ctx); err != nil {
				t.Errorf("drain: %v", err)
			}
			got, reasons := handlings(t, db)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("catalog changes (-want +got):\n%s", diff)
			}
			for _, r := range reasons {
				if !strings.Contains(r, tc.parkedFor) {
					t.Errorf("parked with reason %q, want one saying %q", r, tc.parkedFor)
				}
			}
		})
	}
}
