package picker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"herald/recommend/internal/picker"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return now.Add(-d) }

const day = 24 * time.Hour

// catalog makes eligible items; an id given as "id:cat1,cat2" has categories.
func catalog(specs ...string) map[string]*picker.Item {
	out := map[string]*picker.Item{}
	for _, s := range specs {
		id, cats, _ := strings.Cut(s, ":")
		it := &picker.Item{Product: &eventv1.Product{Id: id, Title: "title " + id, PriceCents: 1000}}
		if cats != "" {
			it.Categories = strings.Split(cats, ",")
		}
		out[id] = it
	}
	return out
}

func chain(names ...string) *eventv1.Picking {
	p := &eventv1.Picking{}
	for _, n := range names {
		p.Strategies = append(p.Strategies, &eventv1.Strategy{Name: n})
	}
	return p
}

func touches(spec ...any) []picker.Touch {
	var out []picker.Touch
	for i := 0; i < len(spec); i += 2 {
		out = append(out, picker.Touch{Item: spec[i].(string), At: ago(spec[i+1].(time.Duration))})
	}
	return out
}

type want struct {
	ids    []string
	source string
	skip   bool
}

func TestChoose(t *testing.T) {
	base := func() *picker.Data {
		return &picker.Data{
			Now:                now,
			Catalog:            catalog("a", "b", "c", "d", "x", "y", "z"),
			CatalogBestSellers: []string{"x", "y", "z"},
			Rankings:           map[string]picker.Ranking{"r1": {Items: []string{"c", "a", "b"}, ModelVersion: "m7"}},
		}
	}
	tests := []struct {
		name    string
		picking *eventv1.Picking
		n       int
		data    func(d *picker.Data)
		want    want
	}{
		{"default chain: ranked list in order", nil, 2, nil,
			want{[]string{"c", "a"}, "partner_rankings", false}},
		{"out-of-stock item never appears", nil, 3, func(d *picker.Data) {
			delete(d.Catalog, "a") // the catalog query returns only in-stock items
		}, want{[]string{"c", "b", "x"}, "partner_rankings+catalog_best_sellers", false}},
		{"an item bought yesterday never appears, from any strategy", nil, 3, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {Purchased: touches("a", day, "x", 2*day)}}
		}, want{[]string{"c", "b", "y"}, "partner_rankings+catalog_best_sellers", false}},
		{"repeats skipped", nil, 3, func(d *picker.Data) {
			d.Rankings["r1"] = picker.Ranking{Items: []string{"a", "a", "x"}}
		}, want{[]string{"a", "x", "y"}, "partner_rankings+catalog_best_sellers", false}},
		{"no list: best sellers", nil, 2, func(d *picker.Data) {
			delete(d.Rankings, "r1")
		}, want{[]string{"x", "y"}, "catalog_best_sellers", false}},
		{"category cap", &eventv1.Picking{Strategies: chain(event.StrategyPartnerRankings).Strategies, CategoryCap: 1}, 3,
			func(d *picker.Data) {
				d.Catalog = catalog("a:shoes", "b:shoes,sale", "c:hats", "d:sale")
				d.Rankings["r1"] = picker.Ranking{Items: []string{"a", "b", "c", "d"}}
			}, want{[]string{"a", "c", "d"}, "partner_rankings", false}},
		{"category cap of two, an item counts toward each of its categories",
			&eventv1.Picking{Strategies: chain(event.StrategyPartnerRankings).Strategies, CategoryCap: 2}, 4,
			func(d *picker.Data) {
				d.Catalog = catalog("a:shoes", "b:shoes,sale", "c:shoes", "d:sale", "e:sale")
				d.Rankings["r1"] = picker.Ranking{Items: []string{"a", "b", "c", "d", "e"}}
			}, want{[]string{"a", "b", "d"}, "partner_rankings", false}},
		{"recently viewed: latest first, within the lookback", chain(event.StrategyRecentlyViewed), 3, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {Viewed: touches("b", time.Hour, "d", 2*day, "a", 40*day)}}
		}, want{[]string{"b", "d"}, "recently_viewed", false}},
		{"abandoned cart: carted within 72h and not bought", chain(event.StrategyAbandonedCart), 3, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {
				Carted:    touches("a", time.Hour, "b", 2*time.Hour, "c", 2*day, "d", 4*day),
				Purchased: touches("b", time.Hour),
			}}
		}, want{[]string{"a", "c"}, "abandoned_cart", false}},
		{"abandoned cart with a longer lookback", &eventv1.Picking{Strategies: []*eventv1.Strategy{
			{Name: event.StrategyAbandonedCart, LookbackHours: 24 * 5}}}, 3, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {Carted: touches("a", time.Hour, "d", 4*day)}}
		}, want{[]string{"a", "d"}, "abandoned_cart", false}},
		{"co-purchase: summed association scores", chain(event.StrategyCoPurchase), 3, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {Purchased: touches("a", day, "b", 2*day)}}
			d.Associations = map[picker.AssocKey][]picker.Related{
				{Kind: "purchase", Item: "a"}: {{Item: "c", Score: 0.5}, {Item: "d", Score: 0.4}, {Item: "b", Score: 0.3}},
				{Kind: "purchase", Item: "b"}: {{Item: "d", Score: 0.3}, {Item: "x", Score: 0.2}},
				{Kind: "view", Item: "a"}:     {{Item: "z", Score: 0.9}},
			}
		}, want{[]string{"d", "c", "x"}, "co_purchase", false}},
		{"co-view: seeds are recent views", chain(event.StrategyCoView), 2, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {Viewed: touches("a", day, "b", 20*day)}}
			d.Associations = map[picker.AssocKey][]picker.Related{
				{Kind: "view", Item: "a"}: {{Item: "c", Score: 0.1}},
				{Kind: "view", Item: "b"}: {{Item: "d", Score: 0.9}},
			}
		}, want{[]string{"c"}, "co_view", false}},
		{"back in stock: interest and a change, latest interest first", chain(event.StrategyBackInStock), 3, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {
				Viewed: touches("a", 3*day, "b", 4*day, "c", 5*day),
				Carted: touches("b", day),
			}}
			d.Changes = map[picker.ChangeKey]picker.Change{
				{Kind: "back_in_stock", Item: "a"}: {At: ago(time.Hour)},
				{Kind: "back_in_stock", Item: "b"}: {At: ago(time.Hour)},
				{Kind: "price_drop", Item: "c"}:    {At: ago(time.Hour), OldPrice: 2000, NewPrice: 1000},
			}
		}, want{[]string{"b", "a"}, "back_in_stock", false}},
		{"back in stock limited to the job's trigger items",
			&eventv1.Picking{Strategies: chain(event.StrategyBackInStock).Strategies, ItemIds: []string{"a"}}, 3, func(d *picker.Data) {
				d.Activity = map[string]*picker.Activity{"r1": {Viewed: touches("a", 3*day, "b", 4*day)}}
				d.Changes = map[picker.ChangeKey]picker.Change{
					{Kind: "back_in_stock", Item: "a"}: {At: ago(time.Hour)},
					{Kind: "back_in_stock", Item: "b"}: {At: ago(time.Hour)},
				}
			}, want{[]string{"a"}, "back_in_stock", false}},
		{"price drop: biggest drop first, only while still down", chain(event.StrategyPriceDrop), 3, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {Viewed: touches("a", day, "b", day, "c", day)}}
			d.Changes = map[picker.ChangeKey]picker.Change{
				{Kind: "price_drop", Item: "a"}: {At: ago(time.Hour), OldPrice: 1100, NewPrice: 1000},
				{Kind: "price_drop", Item: "b"}: {At: ago(time.Hour), OldPrice: 2000, NewPrice: 1000},
				{Kind: "price_drop", Item: "c"}: {At: ago(time.Hour), OldPrice: 900, NewPrice: 800}, // now back at 1000
			}
		}, want{[]string{"b", "a"}, "price_drop", false}},
		{"windowed best sellers", chain(event.StrategyBestSellers), 2, func(d *picker.Data) {
			d.BestSellers = []string{"z", "gone", "y"}
		}, want{[]string{"z", "y"}, "best_sellers", false}},
		{"fallback: the next strategy tops up",
			chain(event.StrategyAbandonedCart, event.StrategyRecentlyViewed, event.StrategyCatalogBestSellers), 4, func(d *picker.Data) {
				d.Activity = map[string]*picker.Activity{"r1": {Carted: touches("a", time.Hour), Viewed: touches("a", time.Hour, "b", day)}}
			}, want{[]string{"a", "b", "x", "y"}, "abandoned_cart+recently_viewed+catalog_best_sellers", false}},
		{"fallback: hide the block when nothing qualifies", chain(event.StrategyAbandonedCart), 3, nil,
			want{nil, "none", false}},
		{"fallback: skip the recipient when nothing qualifies",
			&eventv1.Picking{Strategies: chain(event.StrategyAbandonedCart).Strategies, OnShort: event.OnShortSkip}, 3, nil,
			want{nil, "skipped", true}},
		{"fallback: fewer than min_products hides the block",
			&eventv1.Picking{Strategies: chain(event.StrategyRecentlyViewed).Strategies, MinProducts: 2}, 3, func(d *picker.Data) {
				d.Activity = map[string]*picker.Activity{"r1": {Viewed: touches("a", time.Hour)}}
			}, want{nil, "none", false}},
		{"fallback: min_products met", &eventv1.Picking{Strategies: chain(event.StrategyRecentlyViewed).Strategies,
			MinProducts: 2, OnShort: event.OnShortSkip}, 3, func(d *picker.Data) {
			d.Activity = map[string]*picker.Activity{"r1": {Viewed: touches("a", time.Hour, "b", time.Hour)}}
		}, want{[]string{"a", "b"}, "recently_viewed", false}},
		{"no products asked for", nil, 0, nil, want{nil, "none", false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := base()
			if tc.data != nil {
				tc.data(d)
			}
			job := &eventv1.Job{ProductsPerMessage: int32(tc.n), Picking: tc.picking}
			if err := event.ValidatePicking(tc.picking, tc.n); err != nil {
				t.Fatalf("test picking does not validate: %v", err)
			}
			in := &eventv1.RecommendBatch{Job: job, Recipients: []*eventv1.Recipient{{CustomerId: "r1"}}}
			out := picker.Choose(in, picker.RulesOf(job), d)
			got := out.Recipients[0]
			var ids []string
			for _, i := range got.Products {
				ids = append(ids, out.Products[i].Id)
			}
			if diff := cmp.Diff(tc.want.ids, ids); diff != "" {
				t.Errorf("products (-want +got):\n%s", diff)
			}
			if got.Source != tc.want.source || got.Provenance.GetStrategy() != tc.want.source {
				t.Errorf("source %q, provenance strategy %q; want %q", got.Source, got.Provenance.GetStrategy(), tc.want.source)
			}
			if (got.SkipReason != "") != tc.want.skip {
				t.Errorf("skip reason %q, want skipped %v", got.SkipReason, tc.want.skip)
			}
			if len(got.ProductStrategies) != len(got.Products) {
				t.Errorf("%d product strategies for %d products", len(got.ProductStrategies), len(got.Products))
			}
		})
	}
}

func TestChooseProvenance(t *testing.T) {
	d := &picker.Data{
		Now: now, Catalog: catalog("a", "x"), CatalogVersion: 42, CatalogBestSellers: []string{"x"},
		Rankings: map[string]picker.Ranking{"r1": {Items: []string{"a"}, ModelVersion: "model-7"}},
	}
	job := &eventv1.Job{ProductsPerMessage: 2}
	in := &eventv1.RecommendBatch{Job: job, Recipients: []*eventv1.Recipient{{CustomerId: "r1"}, {CustomerId: "r2"}}}
	out := picker.Choose(in, picker.RulesOf(job), d)
	want := []*eventv1.Provenance{
		{Strategy: "partner_rankings+catalog_best_sellers", ModelVersion: "model-7", CatalogVersion: 42},
		{Strategy: "catalog_best_sellers", CatalogVersion: 42}, // no rankings used: no model version
	}
	for i, w := range want {
		got := out.Recipients[i].Provenance
		if got.Strategy != w.Strategy || got.ModelVersion != w.ModelVersion || got.CatalogVersion != w.CatalogVersion {
			t.Errorf("recipient %d provenance %v, want %v", i, got, w)
		}
	}
	if diff := cmp.Diff([]string{"partner_rankings", "catalog_best_sellers"}, out.Strategies); diff != "" {
		t.Errorf("strategies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int32{0, 1}, out.Recipients[0].ProductStrategies); diff != "" {
		t.Errorf("product strategies (-want +got):\n%s", diff)
	}
}

func TestChooseSharesProductsAcrossRecipients(t *testing.T) {
	d := &picker.Data{Now: now, Catalog: catalog("a"),
		Rankings: map[string]picker.Ranking{"r1": {Items: []string{"a"}}, "r2": {Items: []string{"a"}}}}
	job := &eventv1.Job{ProductsPerMessage: 1}
	in := &eventv1.RecommendBatch{Job: job, Recipients: []*eventv1.Recipient{{CustomerId: "r1"}, {CustomerId: "r2"}}}
	out := picker.Choose(in, picker.RulesOf(job), d)
	if len(out.Products) != 1 || out.Recipients[0].Products[0] != 0 || out.Recipients[1].Products[0] != 0 {
		t.Fatalf("a product two recipients share must travel once: %d products, refs %v %v",
			len(out.Products), out.Recipients[0].Products, out.Recipients[1].Products)
	}
}

func TestChooseSkipReasonSaysWhy(t *testing.T) {
	job := &eventv1.Job{ProductsPerMessage: 3, Picking: &eventv1.Picking{
		Strategies: chain(event.StrategyAbandonedCart, event.StrategyRecentlyViewed).Strategies, OnShort: event.OnShortSkip, MinProducts: 2}}
	d := &picker.Data{Now: now, Catalog: catalog("a"),
		Activity: map[string]*picker.Activity{"r1": {Viewed: touches("a", time.Hour)}}}
	in := &eventv1.RecommendBatch{Job: job, Recipients: []*eventv1.Recipient{{CustomerId: "r1"}}}
	got := picker.Choose(in, picker.RulesOf(job), d).Recipients[0]
	want := "too few products: 1 of the 2 products needed after abandoned_cart, recently_viewed"
	if got.SkipReason != want || len(got.Products) != 0 {
		t.Fatalf("skip reason %q with %d products, want %q and none", got.SkipReason, len(got.Products), want)
	}
}

func TestPickRejectsInvalidPicking(t *testing.T) {
	for _, p := range []*eventv1.Picking{
		{},
		chain("magic"),
		chain(event.StrategyAbandonedCart, event.StrategyAbandonedCart),
		{Strategies: chain(event.StrategyAbandonedCart).Strategies, OnShort: "explode"},
		{Strategies: chain(event.StrategyAbandonedCart).Strategies, MinProducts: 9},
		{Strategies: []*eventv1.Strategy{{Name: event.StrategyAbandonedCart, LookbackHours: -1}}},
	} {
		if err := event.ValidatePicking(p, 6); err == nil {
			t.Errorf("picking %v validates", p)
		}
	}
	p := picker.New(nil, nil, nil, picker.Config{})
	job := &eventv1.Job{TenantId: "t", JobId: "j", ProductsPerMessage: 3, Picking: chain("magic")}
	_, err := p.Pick(context.Background(), &eventv1.RecommendBatch{Job: job, Recipients: []*eventv1.Recipient{{CustomerId: "r1"}}})
	if !errors.Is(err, event.ErrMalformed) {
		t.Fatalf("Pick with an unknown strategy: %v, want ErrMalformed", err)
	}
}
