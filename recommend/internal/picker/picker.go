// Package picker chooses the products for each recipient of a batch under
// the job's strategy chain and business rules.
//
// # Strategies
//
// A job names a chain of strategies (eventv1.Picking); without one it gets
// the partner's rankings topped up with the catalog's best sellers. The first
// strategy fills the message's product slots, each next one tops up the
// slots still empty:
//
//   - partner_rankings: the customer's ranked list from the partner's model.
//   - catalog_best_sellers: items by the sales_30d the partner reports.
//   - best_sellers: items by units bought in purchase events over the
//     lookback (default 7 days).
//   - co_purchase / co_view: items associated with the customer's recent
//     purchases (default 90 days) or views (7 days): the item-to-item
//     associations learnt from all customers' events (cosine similarity
//     over 180 or 30 days), summed over the customer's 10 latest seeds.
//   - recently_viewed: the customer's views, latest first (30 days).
//   - abandoned_cart: what the customer put in their cart within the
//     lookback (72 hours) and has not bought, latest first.
//   - back_in_stock / price_drop: items the customer viewed or carted
//     within the lookback (30 days) that came back in stock, or whose price
//     went down and is still down, within it; limited to the job's trigger
//     items when it names some. Price drops go biggest first.
//
// # Rules
//
// Every candidate must be in stock, at or above the job's price floor,
// never bought by the customer (over PurchaseHorizon), not already in the
// message, and within the per-category cap (an item counts toward each of
// its categories). A recipient left with fewer than min_products products
// (default 1) goes out without the product block (on_short "hide_block",
// the default; the template sees no Items) or is skipped with the reason
// (on_short "skip"; render passes the skip to dispatch, which records it).
//
// # Data access
//
// A batch is read with one query per table, in three round trips inside one
// read-only snapshot: catalog version, rankings and events; then the
// associations and catalog changes those events call for; then the catalog,
// for every candidate at once. Catalog items are cached per tenant at its
// catalog version, so a job's later batches read only items no earlier batch
// asked for. Windowed best sellers are cached per tenant and window for a
// minute, and associations are recomputed by the first worker to find them
// older than the refresh period.
package picker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

// Publisher is where picked batches go.
type Publisher interface {
	Publish(ctx context.Context, b event.Batch, traceparent string) (*pubsub.PublishResult, error)
}

// Config tunes the picker.
type Config struct {
	// AssociationRefresh is how old item-to-item associations may get
	// before a worker recomputes them (default 6 hours).
	AssociationRefresh time.Duration
}

// Picker handles recommend batches.
type Picker struct {
	db          *pgxpool.Pool
	pub         Publisher
	now         func() time.Time
	refresh     time.Duration
	cachePeriod time.Duration

	catalog catalogCache

	mu    sync.Mutex
	best  map[bestKey][]string
	fresh map[string]time.Time // tenant+kind -> associations fresh until

	recipients *prometheus.CounterVec
}

// New returns a picker reading db and publishing to pub.
func New(db *pgxpool.Pool, pub Publisher, reg prometheus.Registerer, cfg Config) *Picker {
	if cfg.AssociationRefresh <= 0 {
		cfg.AssociationRefresh = 6 * time.Hour
	}
	return &Picker{
		db: db, pub: pub, now: time.Now, refresh: cfg.AssociationRefresh, cachePeriod: time.Minute,
		best: map[bestKey][]string{}, fresh: map[string]time.Time{},
		recipients: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "herald_recommend_recipients_total",
			Help: `Recipients picked for, by the strategies that supplied their products ("none": no products, "skipped": not to be messaged).`,
		}, []string{"source"}),
	}
}

// Handle picks products for one batch and publishes it to render; it returns
// only after Pub/Sub has the result, so the input may then be acked.
func (p *Picker) Handle(ctx context.Context, m *pubsub.Message) error {
	var in eventv1.RecommendBatch
	if err := event.Decode(m.Data, m.Attributes, &in); err != nil {
		return err
	}
	out, err := p.Pick(ctx, &in)
	if err != nil {
		return err
	}
	res, err := p.pub.Publish(ctx, out, m.Attributes[event.AttrTraceparent])
	if err != nil {
		return err
	}
	if _, err := res.Get(ctx); err != nil {
		return fmt.Errorf("publish render batch: %w", err)
	}
	for _, r := range out.Recipients {
		p.recipients.WithLabelValues(r.Source).Inc()
	}
	return nil
}

// Pick returns the render batch for in. A picking chain that does not
// validate (ingest validates it first, so only a hand-made message has
// one) marks the message malformed.
func (p *Picker) Pick(ctx context.Context, in *eventv1.RecommendBatch) (*eventv1.RenderBatch, error) {
	if err := event.ValidatePicking(in.GetJob().GetPicking(), int(in.GetJob().GetProductsPerMessage())); err != nil {
		return nil, fmt.Errorf("%w: %v", event.ErrMalformed, err)
	}
	rules := RulesOf(in.GetJob())
	d, err := p.load(ctx, in, rules)
	if err != nil {
		return nil, err
	}
	return Choose(in, rules, d), nil
}
