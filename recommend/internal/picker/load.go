package picker

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

var (
	//go:embed sql/recommendations.sql
	recommendationsSQL string
	//go:embed sql/activity.sql
	activitySQL string
	//go:embed sql/best_sellers.sql
	bestSellersSQL string
	//go:embed sql/associations.sql
	associationsSQL string
	//go:embed sql/association_run.sql
	associationRunSQL string
	//go:embed sql/refresh_associations.sql
	refreshAssociationsSQL string
	//go:embed sql/changes.sql
	changesSQL string
	//go:embed sql/catalog_version.sql
	catalogVersionSQL string
)

// Bounds on what one batch reads.
const (
	// maxTouches caps the distinct viewed and carted items read per
	// customer and kind.
	maxTouches = 200
	// bestSellersKept is how many windowed best sellers are kept per tenant.
	bestSellersKept = 200
)

// Item-to-item association settings: the window of events they learn from,
// how many recent items of each customer count, and how many related items
// each item keeps.
var associationWindow = map[string]time.Duration{
	"purchase": 180 * 24 * time.Hour,
	"view":     30 * 24 * time.Hour,
}

const (
	associationsPerCustomer = 50
	associationsPerItem     = 30
)

// infinity is PostgreSQL's 'infinity' timestamp: the start of a window that
// admits nothing.
var infinity = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}

// load reads everything Choose needs for in under rules: one query per
// table, in one read-only snapshot so that the catalog version matches the
// items read.
func (p *Picker) load(ctx context.Context, in *eventv1.RecommendBatch, rules Rules) (*Data, error) {
	tenant := in.GetJob().GetTenantId()
	d := &Data{Now: p.now(), Catalog: map[string]*Item{}}
	if rules.N == 0 {
		return d, nil
	}
	if kinds := rules.associationKinds(); len(kinds) > 0 {
		if err := p.ensureAssociations(ctx, tenant, kinds, d.Now); err != nil {
			return nil, err
		}
	}
	var best []string
	if rules.uses(event.StrategyBestSellers) {
		var err error
		if best, err = p.bestSellers(ctx, tenant, d.Now.Add(-rules.lookback(event.StrategyBestSellers))); err != nil {
			return nil, err
		}
	}
	ids := make([]string, len(in.Recipients))
	for i, r := range in.Recipients {
		ids[i] = r.CustomerId
	}
	tx, err := p.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin read: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// Round trip 1: what the batch's customers did and were ranked.
	var b pgx.Batch
	b.Queue(catalogVersionSQL, tenant).QueryRow(func(row pgx.Row) error {
		return row.Scan(&d.CatalogVersion)
	})
	if rules.uses(event.StrategyPartnerRankings) {
		d.Rankings = make(map[string]Ranking, len(ids))
		var customer string
		var r Ranking
		b.Queue(recommendationsSQL, tenant, ids).Query(func(rows pgx.Rows) error {
			_, err := pgx.ForEachRow(rows, []any{&customer, &r.Items, &r.ModelVersion}, func() error {
				d.Rankings[customer] = r
				return nil
			})
			return err
		})
	}
	views, carts := rules.viewWindow(), rules.cartWindow()
	d.Activity = make(map[string]*Activity)
	b.Queue(activitySQL, pgx.StrictNamedArgs{
		"tenant":          tenant,
		"customers":       ids,
		"purchases_since": d.Now.Add(-PurchaseHorizon),
		"views_since":     since(d.Now, views),
		"carts_since":     since(d.Now, carts),
		"touches_cap":     maxTouches,
	}).
		Query(func(rows pgx.Rows) error { return scanActivity(rows, d.Activity) })
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("read rankings and events: %w", err)
	}

	// Round trip 2: what the strategies derive from those events.
	b = pgx.Batch{}
	if kinds := rules.associationKinds(); len(kinds) > 0 {
		var seedKinds, seedItems []string
		for _, a := range d.Activity {
			for _, kind := range kinds {
				touches := a.Purchased
				if kind == "view" {
					touches = a.Viewed
				}
				for i, t := range touches {
					if i == maxSeeds {
						break
					}
					seedKinds, seedItems = append(seedKinds, kind), append(seedItems, t.Item)
				}
			}
		}
		if len(seedItems) > 0 {
			d.Associations = map[AssocKey][]Related{}
			var kind, item string
			var related []string
			var scores []float32
			b.Queue(associationsSQL, tenant, seedKinds, seedItems).Query(func(rows pgx.Rows) error {
				_, err := pgx.ForEachRow(rows, []any{&kind, &item, &related, &scores}, func() error {
					rs := make([]Related, min(len(related), len(scores)))
					for i := range rs {
						rs[i] = Related{Item: related[i], Score: scores[i]}
					}
					d.Associations[AssocKey{kind, item}] = rs
					return nil
				})
				return err
			})
		}
	}
	if kinds := rules.changeKinds(); len(kinds) > 0 {
		var interest []string
		for _, a := range d.Activity {
			for _, t := range a.Viewed {
				interest = append(interest, t.Item)
			}
			for _, t := range a.Carted {
				interest = append(interest, t.Item)
			}
		}
		if len(interest) > 0 {
			d.Changes = map[ChangeKey]Change{}
			var item, kind string
			var ch Change
			b.Queue(changesSQL, tenant, interest, d.Now.Add(-rules.lookback(event.StrategyBackInStock, event.StrategyPriceDrop)), kinds).
				Query(func(rows pgx.Rows) error {
					_, err := pgx.ForEachRow(rows, []any{&item, &kind, &ch.OldPrice, &ch.NewPrice, &ch.At}, func() error {
						d.Changes[ChangeKey{kind, item}] = ch
						return nil
					})
					return err
				})
		}
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return nil, fmt.Errorf("read associations and catalog changes: %w", err)
		}
	}

	// Round trip 3: the catalog, for the candidates not already cached at
	// this catalog version.
	d.BestSellers = best
	candidates := d.candidates(rules, best)
	var wantBest int
	if rules.uses(event.StrategyCatalogBestSellers) {
		wantBest = bestSellersWanted(rules)
	}
	if len(candidates) > 0 || wantBest > 0 {
		if err := p.catalog.read(ctx, tx, tenant, d, candidates, rules.PriceFloor, wantBest); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("end read: %w", err)
	}
	return d, nil
}

// bestSellersWanted is how many catalog best sellers to read: enough to
// top up a message after the customer's purchases and the category cap
// have taken some out.
func bestSellersWanted(r Rules) int { return 4*r.N + 20 }

func since(now time.Time, window time.Duration) any {
	if window == 0 {
		return infinity
	}
	return now.Add(-window)
}

// viewWindow and cartWindow are how far back views and carts are read.
func (r *Rules) viewWindow() time.Duration {
	return r.lookback(event.StrategyRecentlyViewed, event.StrategyCoView, event.StrategyBackInStock, event.StrategyPriceDrop)
}

func (r *Rules) cartWindow() time.Duration {
	return r.lookback(event.StrategyAbandonedCart, event.StrategyBackInStock, event.StrategyPriceDrop)
}

func (r *Rules) associationKinds() []string {
	var kinds []string
	if r.uses(event.StrategyCoPurchase) {
		kinds = append(kinds, "purchase")
	}
	if r.uses(event.StrategyCoView) {
		kinds = append(kinds, "view")
	}
	return kinds
}

func (r *Rules) changeKinds() []string {
	var kinds []string
	if r.uses(event.StrategyBackInStock) {
		kinds = append(kinds, "back_in_stock")
	}
	if r.uses(event.StrategyPriceDrop) {
		kinds = append(kinds, "price_drop")
	}
	return kinds
}

func scanActivity(rows pgx.Rows, into map[string]*Activity) error {
	var customer, kind, item string
	var at time.Time
	var a *Activity
	var last string
	_, err := pgx.ForEachRow(rows, []any{&customer, &kind, &item, &at}, func() error {
		if a == nil || customer != last {
			a = into[customer]
			if a == nil {
				a = &Activity{}
				into[customer] = a
			}
			last = customer
		}
		t := Touch{Item: item, At: at}
		switch kind {
		case "view":
			a.Viewed = append(a.Viewed, t)
		case "add_to_cart":
			a.Carted = append(a.Carted, t)
		case "purchase":
			a.Purchased = append(a.Purchased, t)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read events: %w", err)
	}
	return nil
}

// candidates lists the distinct item ids the chain's strategies could offer
// the batch, for the one catalog query.
func (d *Data) candidates(rules Rules, best []string) []string {
	size := len(best)
	for _, r := range d.Rankings {
		size += len(r.Items)
	}
	seen := make(map[string]struct{}, size)
	out := make([]string, 0, size)
	add := func(id string) {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	for _, r := range d.Rankings {
		for _, id := range r.Items {
			add(id)
		}
	}
	for _, id := range best {
		add(id)
	}
	for _, a := range d.Activity {
		if rules.uses(event.StrategyRecentlyViewed, event.StrategyBackInStock, event.StrategyPriceDrop) {
			for _, t := range a.Viewed {
				add(t.Item)
			}
		}
		if rules.uses(event.StrategyAbandonedCart, event.StrategyBackInStock, event.StrategyPriceDrop) {
			for _, t := range a.Carted {
				add(t.Item)
			}
		}
	}
	for _, rs := range d.Associations {
		for _, r := range rs {
			add(r.Item)
		}
	}
	return out
}

// bestSellers returns the tenant's items by units bought since `since`,
// from a cache: the answer changes slowly and costs a scan of the window's
// purchases. The window's start is rounded to the cache period so that
// every batch of a job shares one answer.
func (p *Picker) bestSellers(ctx context.Context, tenant string, since time.Time) ([]string, error) {
	since = since.Truncate(p.cachePeriod)
	key := bestKey{tenant, since}
	p.mu.Lock()
	e, ok := p.best[key]
	p.mu.Unlock()
	if ok {
		return e, nil
	}
	rows, _ := p.db.Query(ctx, bestSellersSQL, tenant, since, bestSellersKept)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read best sellers: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.best {
		if k.since.Before(since) {
			delete(p.best, k) // a newer window replaces it
		}
	}
	p.best[key] = ids
	return ids, nil
}

type bestKey struct {
	tenant string
	since  time.Time
}

// ensureAssociations recomputes the tenant's associations of each kind
// that are missing or older than the refresh period. One worker recomputes
// while the others go on with what there is.
func (p *Picker) ensureAssociations(ctx context.Context, tenant string, kinds []string, now time.Time) error {
	var check []string
	p.mu.Lock()
	for _, kind := range kinds {
		if !p.fresh[tenant+"\x00"+kind].After(now) {
			check = append(check, kind)
		}
	}
	p.mu.Unlock()
	if len(check) == 0 {
		return nil
	}
	computed := map[string]time.Time{}
	var kind string
	var at time.Time
	rows, _ := p.db.Query(ctx, associationRunSQL, tenant, check)
	if _, err := pgx.ForEachRow(rows, []any{&kind, &at}, func() error { computed[kind] = at; return nil }); err != nil {
		return fmt.Errorf("read association runs: %w", err)
	}
	for _, kind := range check {
		at := computed[kind]
		if at.Add(p.refresh).Before(now) {
			done, err := p.refreshAssociations(ctx, tenant, kind, now)
			if err != nil {
				return err
			}
			if !done {
				continue // another worker is at it; check again next batch
			}
			at = now
		}
		p.mu.Lock()
		p.fresh[tenant+"\x00"+kind] = at.Add(p.refresh)
		p.mu.Unlock()
	}
	return nil
}

// refreshAssociations recomputes the tenant's associations of kind unless
// another worker holds the refresh lock; it reports whether they are fresh.
func (p *Picker) refreshAssociations(ctx context.Context, tenant, kind string, now time.Time) (bool, error) {
	tx, err := p.db.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("begin association refresh: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var n int64
	err = tx.QueryRow(ctx, refreshAssociationsSQL, pgx.StrictNamedArgs{
		"tenant":             tenant,
		"kind":               kind,
		"events_since":       now.Add(-associationWindow[kind]),
		"items_per_customer": associationsPerCustomer,
		"related_per_item":   associationsPerItem,
		"fresh_after":        now.Add(-p.refresh),
	}).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("refresh %s associations: %w", kind, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("refresh %s associations: %w", kind, err)
	}
	return n >= 0, nil
}
