package picker_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/devtools/testenv"
	"herald/recommend/internal/picker"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// queryLog records the SQL a pool runs, batched or not.
type queryLog struct {
	mu  sync.Mutex
	sql []string
}

func (l *queryLog) add(sql string) {
	l.mu.Lock()
	l.sql = append(l.sql, sql)
	l.mu.Unlock()
}

func (l *queryLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.add(d.SQL)
	return ctx
}
func (l *queryLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (l *queryLog) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (l *queryLog) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	l.add(d.SQL)
}
func (l *queryLog) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (l *queryLog) reset() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.sql
	l.sql = nil
	return out
}

// tracedDB is a migrated test database whose queries are logged.
func tracedDB(t *testing.T) (*pgxpool.Pool, *queryLog) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL(t))
	testenv.Must(t, err, "parse database url")
	log := &queryLog{}
	cfg.ConnConfig.Tracer = log
	db, err := pgxpool.NewWithConfig(context.Background(), cfg)
	testenv.Must(t, err, "connect")
	t.Cleanup(db.Close)
	return db, log
}

func exec(t *testing.T, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// shop loads a small tenant: items i01..i20 (i05 out of stock, i06 cheap,
// categories by tens), best sellers by descending sales from i20, customers
// c1..c4 subscribed.
func shop(t *testing.T, db *pgxpool.Pool) {
	t.Helper()
	for i := 1; i <= 20; i++ {
		id := fmt.Sprintf("i%02d", i)
		price := 2000 + i
		if i == 6 {
			price = 300
		}
		exec(t, db, `INSERT INTO catalog_items (tenant_id, id, title, url, price_cents, in_stock, sales_30d, categories)
			VALUES ('acme', $1, 'Item ' || $1, 'https://shop.example/' || $1, $2, $3, $4, $5)`,
			id, price, i != 5, i*10, []string{fmt.Sprintf("cat%d", i/10)})
	}
	for _, c := range []string{"c1", "c2", "c3", "c4"} {
		exec(t, db, `INSERT INTO customers (tenant_id, id, email) VALUES ('acme', $1, $1 || '@example.com')`, c)
	}
}

func events(t *testing.T, db *pgxpool.Pool, customer, kind string, age time.Duration, items ...string) {
	t.Helper()
	exec(t, db, `SELECT herald_ensure_events_partition($1)`, time.Now().Add(-age))
	for _, it := range items {
		exec(t, db, `INSERT INTO events (tenant_id, customer_id, kind, item_id, occurred_at) VALUES ('acme', $1, $2, $3, $4)`,
			customer, kind, it, time.Now().Add(-age))
	}
}

func batchOf(p *eventv1.Picking, n int, customers ...string) *eventv1.RecommendBatch {
	in := &eventv1.RecommendBatch{Job: &eventv1.Job{TenantId: "acme", JobId: "j1", ProductsPerMessage: int32(n), Picking: p}}
	for _, c := range customers {
		in.Recipients = append(in.Recipients, &eventv1.Recipient{CustomerId: c})
	}
	return in
}

// picks returns each recipient's product ids.
func picks(out *eventv1.RenderBatch) map[string][]string {
	got := map[string][]string{}
	for _, r := range out.Recipients {
		ids := []string{}
		for _, i := range r.Products {
			ids = append(ids, out.Products[i].Id)
		}
		got[r.Recipient.CustomerId] = ids
	}
	return got
}

func TestPickFromDatabase(t *testing.T) {
	db, _ := tracedDB(t)
	shop(t, db)
	exec(t, db, `INSERT INTO recommendations (tenant_id, customer_id, item_ids, model_version) VALUES
		('acme', 'c1', '{i05,i01,i02,i06,i01,i03}', 'm-3'), ('acme', 'c2', '{i04}', 'm-3')`)
	events(t, db, "c1", "purchase", 24*time.Hour, "i02")                 // bought yesterday
	events(t, db, "c1", "purchase", 400*24*time.Hour, "i03")             // beyond the horizon: offered again
	events(t, db, "c2", "purchase", 60*24*time.Hour, "i20", "i19")       // best sellers it bought
	events(t, db, "c3", "add_to_cart", 2*time.Hour, "i07", "i08", "i09") // carts, the latest last
	events(t, db, "c3", "purchase", time.Hour, "i08")
	events(t, db, "c3", "add_to_cart", 5*24*time.Hour, "i10") // too old
	events(t, db, "c4", "view", time.Hour, "i11", "i05")
	events(t, db, "c4", "view", 2*time.Hour, "i12")

	p := picker.New(db, nil, nil, picker.Config{})
	ctx := context.Background()
	tests := []struct {
		name    string
		picking *eventv1.Picking
		n       int
		want    map[string][]string
		source  map[string]string
	}{
		{"default chain", nil, 3, map[string][]string{
			"c1": {"i01", "i06", "i03"},
			"c2": {"i04", "i18", "i17"},
			"c3": {"i20", "i19", "i18"},
		}, map[string]string{
			"c1": "partner_rankings", "c2": "partner_rankings+catalog_best_sellers", "c3": "catalog_best_sellers",
		}},
		{"price floor and category cap", &eventv1.Picking{
			Strategies:      chain(event.StrategyPartnerRankings, event.StrategyCatalogBestSellers).Strategies,
			PriceFloorCents: 1000, CategoryCap: 2,
		}, 4, map[string][]string{
			// c1's list is all cat0: two of them, then best sellers of
			// cat2 (i20) and cat1 (i19).
			"c1": {"i01", "i03", "i20", "i19"},
		}, nil},
		{"abandoned cart, else skip", &eventv1.Picking{
			Strategies: chain(event.StrategyAbandonedCart).Strategies, OnShort: event.OnShortSkip,
		}, 6, map[string][]string{"c3": {"i09", "i07"}, "c4": {}}, map[string]string{"c3": "abandoned_cart", "c4": "skipped"}},
		{"recently viewed, out of stock left out", chain(event.StrategyRecentlyViewed), 3,
			map[string][]string{"c4": {"i11", "i12"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var customers []string
			for c := range tc.want {
				customers = append(customers, c)
			}
			slices.Sort(customers)
			out, err := p.Pick(ctx, batchOf(tc.picking, tc.n, customers...))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, picks(out)); diff != "" {
				t.Errorf("picks (-want +got):\n%s", diff)
			}
			for _, r := range out.Recipients {
				if s, ok := tc.source[r.Recipient.CustomerId]; ok && r.Source != s {
					t.Errorf("%s: source %q, want %q", r.Recipient.CustomerId, r.Source, s)
				}
				if r.Provenance.GetCatalogVersion() < 1 {
					t.Errorf("%s: catalog version %d", r.Recipient.CustomerId, r.Provenance.GetCatalogVersion())
				}
			}
		})
	}
	out, err := p.Pick(ctx, batchOf(nil, 3, "c1"))
	testenv.Must(t, err, "pick")
	if got := out.Recipients[0].Provenance.GetModelVersion(); got != "m-3" {
		t.Errorf("model version %q, want m-3", got)
	}
}

func TestPickBestSellersOverWindow(t *testing.T) {
	db, _ := tracedDB(t)
	shop(t, db)
	events(t, db, "c2", "purchase", time.Hour, "i03", "i03", "i04")
	events(t, db, "c3", "purchase", time.Hour, "i04", "i03", "i01")
	events(t, db, "c4", "purchase", 20*24*time.Hour, "i07", "i07", "i07", "i07") // outside 7 days
	p := picker.New(db, nil, nil, picker.Config{})
	out, err := p.Pick(context.Background(), batchOf(chain(event.StrategyBestSellers), 3, "c1", "c3"))
	testenv.Must(t, err, "pick")
	want := map[string][]string{"c1": {"i03", "i04", "i01"}, "c3": {}}
	if diff := cmp.Diff(want, picks(out)); diff != "" {
		t.Errorf("picks (-want +got):\n%s", diff)
	}
}

func TestPickCoPurchase(t *testing.T) {
	db, _ := tracedDB(t)
	shop(t, db)
	// Everyone who bought i01 also bought i02; some bought i03 too.
	for i := range 6 {
		c := fmt.Sprintf("o%d", i)
		events(t, db, c, "purchase", 10*24*time.Hour, "i01", "i02")
		if i < 2 {
			events(t, db, c, "purchase", 10*24*time.Hour, "i03")
		}
	}
	events(t, db, "c1", "purchase", 24*time.Hour, "i01")
	p := picker.New(db, nil, nil, picker.Config{})
	out, err := p.Pick(context.Background(), batchOf(chain(event.StrategyCoPurchase), 3, "c1"))
	testenv.Must(t, err, "pick")
	if diff := cmp.Diff(map[string][]string{"c1": {"i02", "i03"}}, picks(out)); diff != "" {
		t.Errorf("picks (-want +got):\n%s", diff)
	}
}

func TestCatalogTriggers(t *testing.T) {
	db, _ := tracedDB(t)
	shop(t, db)
	ctx := context.Background()
	version := func() int64 {
		var v int64
		testenv.Must(t, db.QueryRow(ctx, `SELECT version FROM catalog_versions WHERE tenant_id = 'acme'`).Scan(&v), "version")
		return v
	}
	v0 := version()
	events(t, db, "c1", "view", 24*time.Hour, "i05")
	events(t, db, "c2", "add_to_cart", 2*24*time.Hour, "i05")
	events(t, db, "c3", "view", 24*time.Hour, "i05")
	events(t, db, "c3", "purchase", 12*time.Hour, "i05") // bought it after all
	events(t, db, "c4", "view", 60*24*time.Hour, "i05")  // interest too old
	events(t, db, "c1", "view", 24*time.Hour, "i07")
	exec(t, db, `UPDATE customers SET subscribed = false WHERE id = 'c2'`)

	// One upload as ingest does it: an upsert that brings i05 back, drops
	// i07's price, raises i08's and inserts i21. One version step.
	exec(t, db, `INSERT INTO catalog_items AS i (tenant_id, id, title, url, price_cents, in_stock)
		VALUES ('acme', 'i05', 'Item i05', 'u', 2005, true), ('acme', 'i07', 'Item i07', 'u', 1500, true),
		       ('acme', 'i08', 'Item i08', 'u', 9000, true), ('acme', 'i21', 'Item i21', 'u', 100, true)
		ON CONFLICT (tenant_id, id) DO UPDATE SET price_cents = excluded.price_cents, in_stock = excluded.in_stock`)
	if v := version(); v != v0+1 {
		t.Errorf("catalog version %d after one upload, want %d", v, v0+1)
	}
	rows, _ := db.Query(ctx, `SELECT id, item_id, kind, old_price_cents, new_price_cents FROM catalog_changes ORDER BY id`)
	type change struct {
		ID       int64
		Item     string
		Kind     string
		Old, New int64
	}
	changes, err := pgx.CollectRows(rows, pgx.RowToStructByPos[change])
	testenv.Must(t, err, "read changes")
	want := []change{{Item: "i05", Kind: "back_in_stock", Old: 2005, New: 2005}, {Item: "i07", Kind: "price_drop", Old: 2007, New: 1500}}
	if diff := cmp.Diff(want, changes, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".ID" }, cmp.Ignore())); diff != "" {
		t.Fatalf("changes (-want +got):\n%s", diff)
	}
	rows, _ = db.Query(ctx, `SELECT customer_id FROM herald_catalog_change_audience($1, '30 days')`, changes[0].ID)
	audience, err := pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.Must(t, err, "audience")
	if diff := cmp.Diff([]string{"c1"}, audience); diff != "" {
		t.Errorf("back-in-stock audience (-want +got):\n%s", diff)
	}
	rows, _ = db.Query(ctx, `SELECT customer_id FROM herald_catalog_change_audience($1, '30 days', 30)`, changes[1].ID)
	audience, err = pgx.CollectRows(rows, pgx.RowTo[string])
	testenv.Must(t, err, "audience")
	if len(audience) != 0 {
		t.Errorf("a 25%% drop reached %v with a 30%% minimum", audience)
	}

	// The triggered job: back in stock for its item, the price drop for c1.
	p := picker.New(db, nil, nil, picker.Config{})
	out, err := p.Pick(ctx, batchOf(&eventv1.Picking{Strategies: chain(event.StrategyBackInStock).Strategies,
		ItemIds: []string{"i05"}, OnShort: event.OnShortSkip}, 3, "c1", "c4"))
	testenv.Must(t, err, "pick")
	if diff := cmp.Diff(map[string][]string{"c1": {"i05"}, "c4": {}}, picks(out)); diff != "" {
		t.Errorf("back-in-stock picks (-want +got):\n%s", diff)
	}
	if got := out.Recipients[0].Provenance.GetCatalogVersion(); got != v0+1 {
		t.Errorf("provenance catalog version %d, want %d", got, v0+1)
	}
	out, err = p.Pick(ctx, batchOf(chain(event.StrategyPriceDrop), 3, "c1"))
	testenv.Must(t, err, "pick")
	if diff := cmp.Diff(map[string][]string{"c1": {"i07"}}, picks(out)); diff != "" {
		t.Errorf("price-drop picks (-want +got):\n%s", diff)
	}
}

var tableRE = regexp.MustCompile(`(?i)\b(?:FROM|JOIN)\s+([a-z_]+)`)

// TestOneQueryPerTablePerBatch checks that reading a batch costs the same
// queries for one recipient as for many, and touches each table once.
func TestOneQueryPerTablePerBatch(t *testing.T) {
	db, log := tracedDB(t)
	shop(t, db)
	everything := chain(event.StrategyAbandonedCart, event.StrategyBackInStock, event.StrategyPriceDrop,
		event.StrategyRecentlyViewed, event.StrategyCoView, event.StrategyCoPurchase, event.StrategyPartnerRankings,
		event.StrategyCatalogBestSellers)
	var many []string
	for i := range 300 {
		c := fmt.Sprintf("m%03d", i)
		many = append(many, c)
		exec(t, db, `INSERT INTO recommendations (tenant_id, customer_id, item_ids) VALUES ('acme', $1, '{i01,i02}')`, c)
		events(t, db, c, "view", time.Hour, fmt.Sprintf("i%02d", 1+i%20))
		events(t, db, c, "purchase", time.Hour, fmt.Sprintf("i%02d", 1+(i+3)%20))
	}
	ctx := context.Background()
	// Warm up: the first batch computes the associations.
	_, err := picker.New(db, nil, nil, picker.Config{}).Pick(ctx, batchOf(everything, 6, many[:1]...))
	testenv.Must(t, err, "pick")
	// Fresh pickers: nothing cached in the process.
	log.reset()
	_, err = picker.New(db, nil, nil, picker.Config{}).Pick(ctx, batchOf(everything, 6, many[:1]...))
	testenv.Must(t, err, "pick")
	one := log.reset()
	_, err = picker.New(db, nil, nil, picker.Config{}).Pick(ctx, batchOf(everything, 6, many...))
	testenv.Must(t, err, "pick")
	all := log.reset()
	if len(one) != len(all) {
		t.Fatalf("1 recipient took %d queries, 300 took %d:\n%s\n---\n%s", len(one), len(all), strings.Join(one, "\n"), strings.Join(all, "\n"))
	}
	perTable := map[string]int{}
	for _, q := range all {
		for _, m := range tableRE.FindAllStringSubmatch(q, -1) {
			perTable[m[1]]++
		}
	}
	for _, table := range []string{"recommendations", "events", "item_associations", "item_association_runs", "catalog_changes", "catalog_versions"} {
		if perTable[table] != 1 {
			t.Errorf("%s read by %d queries, want 1", table, perTable[table])
		}
	}
	// The catalog query names catalog_items twice (candidates and best sellers) in one statement.
	var catalogQueries int
	for _, q := range all {
		if strings.Contains(q, "catalog_items") {
			catalogQueries++
		}
	}
	if catalogQueries != 1 {
		t.Errorf("%d queries read catalog_items, want 1", catalogQueries)
	}
}

// TestCatalogCacheFollowsVersion checks that the catalog read by later
// batches comes from the process's cache until the catalog changes, and
// that a change is seen by the very next batch.
func TestCatalogCacheFollowsVersion(t *testing.T) {
	db, log := tracedDB(t)
	shop(t, db)
	exec(t, db, `INSERT INTO recommendations (tenant_id, customer_id, item_ids) VALUES ('acme', 'c1', '{i01,i02,i03}')`)
	p := picker.New(db, nil, nil, picker.Config{})
	ctx := context.Background()
	pick := func() ([]string, int) {
		t.Helper()
		log.reset()
		out, err := p.Pick(ctx, batchOf(nil, 2, "c1"))
		testenv.Must(t, err, "pick")
		var catalogReads int
		for _, q := range log.reset() {
			if strings.Contains(q, "FROM catalog_items") {
				catalogReads++
			}
		}
		return picks(out)["c1"], catalogReads
	}
	if ids, reads := pick(); !slices.Equal(ids, []string{"i01", "i02"}) || reads != 1 {
		t.Fatalf("first batch: %v with %d catalog reads, want [i01 i02] with 1", ids, reads)
	}
	if ids, reads := pick(); !slices.Equal(ids, []string{"i01", "i02"}) || reads != 0 {
		t.Fatalf("second batch: %v with %d catalog reads, want [i01 i02] from the cache", ids, reads)
	}
	exec(t, db, `UPDATE catalog_items SET in_stock = false WHERE tenant_id = 'acme' AND id = 'i01'`)
	if ids, reads := pick(); !slices.Equal(ids, []string{"i02", "i03"}) || reads != 1 {
		t.Fatalf("after i01 sold out: %v with %d catalog reads, want [i02 i03] read again", ids, reads)
	}
}
