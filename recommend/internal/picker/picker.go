// Package picker chooses the products for each recipient of a batch: the
// top in-stock items of the customer's ingested recommendations, topped up
// from the tenant's best sellers. It reads each table once per batch, never
// once per recipient.
package picker

import (
	"context"
	_ "embed"
	"fmt"

	"cloud.google.com/go/pubsub/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

var (
	//go:embed sql/recommendations.sql
	recommendationsSQL string
	//go:embed sql/items.sql
	itemsSQL string
	//go:embed sql/best_sellers.sql
	bestSellersSQL string
)

// Where a recipient's products came from.
const (
	SourceRecommendations = "recommendations"
	SourceMixed           = "recommendations+best_sellers"
	SourceBestSellers     = "best_sellers"
	SourceNone            = "none"
)

// Publisher is where picked batches go.
type Publisher interface {
	Publish(ctx context.Context, b event.Batch, traceparent string) (*pubsub.PublishResult, error)
}

// Picker handles recommend batches.
type Picker struct {
	db         *pgxpool.Pool
	pub        Publisher
	recipients *prometheus.CounterVec
}

// New returns a picker reading db and publishing to pub.
func New(db *pgxpool.Pool, pub Publisher, reg prometheus.Registerer) *Picker {
	return &Picker{
		db: db, pub: pub,
		recipients: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "herald_recommend_recipients_total",
			Help: "Recipients given products, by where the products came from.",
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

// Pick returns the render batch for in.
func (p *Picker) Pick(ctx context.Context, in *eventv1.RecommendBatch) (*eventv1.RenderBatch, error) {
	tenant := in.GetJob().GetTenantId()
	n := int(in.GetJob().GetProductsPerMessage())
	ids := make([]string, len(in.Recipients))
	for i, r := range in.Recipients {
		ids[i] = r.CustomerId
	}
	lists := make(map[string][]string, len(ids))
	var wanted []string
	if n > 0 {
		rows, _ := p.db.Query(ctx, recommendationsSQL, tenant, ids)
		var customer string
		var items []string
		_, err := pgx.ForEachRow(rows, []any{&customer, &items}, func() error {
			lists[customer] = items
			wanted = append(wanted, items...)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read recommendations: %w", err)
		}
	}
	inStock, err := p.products(ctx, itemsSQL, tenant, wanted)
	if err != nil {
		return nil, err
	}
	var best []*eventv1.Product
	if n > 0 {
		best, err = p.products(ctx, bestSellersSQL, tenant, 2*n)
		if err != nil {
			return nil, err
		}
	}
	byID := make(map[string]*eventv1.Product, len(inStock))
	for _, pr := range inStock {
		byID[pr.Id] = pr
	}
	return Choose(in, lists, byID, best, n), nil
}

func (p *Picker) products(ctx context.Context, query, tenant string, arg any) ([]*eventv1.Product, error) {
	if ids, ok := arg.([]string); ok && len(ids) == 0 {
		return nil, nil
	}
	rows, _ := p.db.Query(ctx, query, tenant, arg)
	var out []*eventv1.Product
	for rows.Next() {
		pr := &eventv1.Product{}
		if err := rows.Scan(&pr.Id, &pr.Title, &pr.Brand, &pr.Url, &pr.ImageUrl, &pr.PriceCents, &pr.CompareAtCents,
			&pr.Currency, &pr.Rating, &pr.Reviews); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read catalog: %w", err)
		}
		out = append(out, pr)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return out, nil
}

// Choose picks up to n products per recipient: the customer's ranked list in
// order, skipping items not in inStock and repeats, then best sellers the
// customer was not already given. Products shared by several recipients
// appear once in the batch.
func Choose(in *eventv1.RecommendBatch, lists map[string][]string, inStock map[string]*eventv1.Product, best []*eventv1.Product, n int) *eventv1.RenderBatch {
	out := &eventv1.RenderBatch{Job: in.Job, Recipients: make([]*eventv1.Picked, len(in.Recipients))}
	index := map[string]int32{}
	ref := func(pr *eventv1.Product) int32 {
		i, ok := index[pr.Id]
		if !ok {
			i = int32(len(out.Products))
			index[pr.Id] = i
			out.Products = append(out.Products, pr)
		}
		return i
	}
	for i, r := range in.Recipients {
		picked := &eventv1.Picked{Recipient: r, Products: make([]int32, 0, n)}
		seen := make(map[string]bool, n)
		fromList := 0
		for _, id := range lists[r.CustomerId] {
			if len(picked.Products) == n {
				break
			}
			pr, ok := inStock[id]
			if !ok || seen[id] {
				continue
			}
			seen[id] = true
			picked.Products = append(picked.Products, ref(pr))
			fromList++
		}
		for _, pr := range best {
			if len(picked.Products) == n {
				break
			}
			if seen[pr.Id] {
				continue
			}
			seen[pr.Id] = true
			picked.Products = append(picked.Products, ref(pr))
		}
		switch {
		case len(picked.Products) == 0:
			picked.Source = SourceNone
		case fromList == len(picked.Products):
			picked.Source = SourceRecommendations
		case fromList == 0:
			picked.Source = SourceBestSellers
		default:
			picked.Source = SourceMixed
		}
		out.Recipients[i] = picked
	}
	return out
}
