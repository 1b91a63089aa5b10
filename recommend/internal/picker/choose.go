package picker

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

// Data is what Choose knows about one batch: everything read from the
// database for it, one query per table.
type Data struct {
	// Now is the reference time of the lookback windows.
	Now time.Time
	// Catalog holds the eligible items among all candidates of the batch:
	// in stock and at or above the price floor. Anything else is not offered.
	Catalog map[string]*Item
	// CatalogVersion is the tenant's catalog version Catalog was read at.
	CatalogVersion int64
	// Rankings are the partner's ranked lists by customer id.
	Rankings map[string]Ranking
	// Activity is each customer's events by customer id.
	Activity map[string]*Activity
	// CatalogBestSellers and BestSellers are item ids, best first.
	CatalogBestSellers []string
	BestSellers        []string
	// Associations are the related items of an item, best first, by kind
	// ("purchase", "view").
	Associations map[AssocKey][]Related
	// Changes are the latest catalog change of each kind per item.
	Changes map[ChangeKey]Change
}

// Item is an eligible catalog item.
type Item struct {
	Product    *eventv1.Product
	Categories []string
}

// Ranking is one customer's list from the partner's model.
type Ranking struct {
	Items        []string
	ModelVersion string
}

// Activity is what a customer did: distinct items per kind, latest first.
type Activity struct {
	Viewed    []Touch
	Carted    []Touch
	Purchased []Touch
	// bought holds Purchased's items, for the never-bought rule.
	bought map[string]struct{}
}

// Touch is the last time a customer did something with an item.
type Touch struct {
	Item string
	At   time.Time
}

// AssocKey names the related items of one item for one kind of event.
type AssocKey struct{ Kind, Item string }

// Related is an associated item with its score.
type Related struct {
	Item  string
	Score float32
}

// ChangeKey names the latest change of one kind of one item.
type ChangeKey struct{ Kind, Item string }

// Change is a catalog change: back in stock, or a price drop.
type Change struct {
	OldPrice, NewPrice int64
	At                 time.Time
}

// Bought reports whether the customer bought item within the purchase horizon.
func (a *Activity) Bought(item string) bool {
	if a == nil {
		return false
	}
	if a.bought == nil {
		a.bought = make(map[string]struct{}, len(a.Purchased))
		for _, t := range a.Purchased {
			a.bought[t.Item] = struct{}{}
		}
	}
	_, ok := a.bought[item]
	return ok
}

// Source values besides strategy names.
const (
	SourceNone    = "none"
	SourceSkipped = "skipped"
)

// Choose picks up to rules.N products per recipient of in, walking the
// strategy chain: each strategy offers its candidates in its own order and
// fills the slots still empty. Every candidate must pass the business rules:
// in the catalog as eligible (in stock, not under the price floor), never
// bought by the customer, not already picked, and under the category cap. A
// recipient left with fewer than rules.MinProducts products gets no product
// block (hide) or no message (skip, with the reason). Products shared by
// recipients travel once in the batch. Choose is pure: same input, same
// output.
func Choose(in *eventv1.RecommendBatch, rules Rules, d *Data) *eventv1.RenderBatch {
	out := &eventv1.RenderBatch{Job: in.Job, Recipients: make([]*eventv1.Picked, len(in.Recipients))}
	for _, s := range rules.Chain {
		out.Strategies = append(out.Strategies, s.Name)
	}
	c := chooser{rules: rules, d: d, out: out, index: make(map[string]int32, len(d.Catalog))}
	for i, r := range in.Recipients {
		out.Recipients[i] = c.pick(r)
	}
	return out
}

type chooser struct {
	rules Rules
	d     *Data
	out   *eventv1.RenderBatch
	index map[string]int32 // product id -> index in out.Products

	// Per-recipient scratch, reused.
	ids    []string
	cats   []catCount
	scores map[string]float32
}

type catCount struct {
	cat string
	n   int
}

func (c *chooser) pick(r *eventv1.Recipient) *eventv1.Picked {
	n := c.rules.N
	picked := &eventv1.Picked{Recipient: r, Products: make([]int32, 0, n)}
	c.ids, c.cats = c.ids[:0], c.cats[:0]
	act := c.d.Activity[r.CustomerId]
	var used uint32 // bit i: strategy i supplied a product
	var model string
	for si, step := range c.rules.Chain {
		if len(c.ids) >= n {
			break
		}
		before := len(c.ids)
		c.offer(step, r.CustomerId, act, func(id string) bool {
			it := c.d.Catalog[id]
			if it == nil || act.Bought(id) || slices.Contains(c.ids, id) || !c.underCap(it) {
				return len(c.ids) < n
			}
			if step.Name == event.StrategyPriceDrop && !c.stillDropped(id, it) {
				return true
			}
			c.take(it)
			picked.Products = append(picked.Products, c.ref(it.Product))
			picked.ProductStrategies = append(picked.ProductStrategies, int32(si))
			return len(c.ids) < n
		})
		if len(c.ids) > before {
			used |= 1 << si
			if step.Name == event.StrategyPartnerRankings {
				model = c.d.Rankings[r.CustomerId].ModelVersion
			}
		}
	}
	prov := &eventv1.Provenance{CatalogVersion: c.d.CatalogVersion}
	picked.Provenance = prov
	if n > 0 && len(c.ids) < c.rules.MinProducts {
		reason := fmt.Sprintf("%d of the %d products needed after %s", len(c.ids), c.rules.MinProducts,
			strings.Join(c.out.Strategies, ", "))
		picked.Products, picked.ProductStrategies = picked.Products[:0], nil
		if c.rules.Skip {
			picked.Source, picked.SkipReason = SourceSkipped, "too few products: "+reason
		} else {
			picked.Source = SourceNone
		}
		prov.Strategy = picked.Source
		return picked
	}
	var names []string
	for si, s := range c.rules.Chain {
		if used&(1<<si) != 0 {
			names = append(names, s.Name)
		}
	}
	picked.Source = SourceNone
	if len(names) > 0 {
		picked.Source = strings.Join(names, "+")
	}
	prov.Strategy, prov.ModelVersion = picked.Source, model
	return picked
}

// take records it as picked for the current recipient.
func (c *chooser) take(it *Item) {
	c.ids = append(c.ids, it.Product.Id)
	if c.rules.CategoryCap <= 0 {
		return
	}
	for _, cat := range it.Categories {
		i := slices.IndexFunc(c.cats, func(cc catCount) bool { return cc.cat == cat })
		if i < 0 {
			c.cats = append(c.cats, catCount{cat, 1})
		} else {
			c.cats[i].n++
		}
	}
}

// underCap reports whether every category of it still has room.
func (c *chooser) underCap(it *Item) bool {
	if c.rules.CategoryCap <= 0 {
		return true
	}
	for _, cat := range it.Categories {
		for _, cc := range c.cats {
			if cc.cat == cat && cc.n >= c.rules.CategoryCap {
				return false
			}
		}
	}
	return true
}

// stillDropped reports whether a price-drop item still sells below the
// price it dropped from.
func (c *chooser) stillDropped(id string, it *Item) bool {
	ch, ok := c.d.Changes[ChangeKey{"price_drop", id}]
	return ok && it.Product.PriceCents < ch.OldPrice
}

func (c *chooser) ref(pr *eventv1.Product) int32 {
	i, ok := c.index[pr.Id]
	if !ok {
		i = int32(len(c.out.Products))
		c.index[pr.Id] = i
		c.out.Products = append(c.out.Products, pr)
	}
	return i
}

// offer calls yield with step's candidates for the customer, best first,
// until yield returns false.
func (c *chooser) offer(step Step, customer string, act *Activity, yield func(id string) bool) {
	since := c.d.Now.Add(-step.Lookback)
	switch step.Name {
	case event.StrategyPartnerRankings:
		each(c.d.Rankings[customer].Items, yield)
	case event.StrategyCatalogBestSellers:
		each(c.d.CatalogBestSellers, yield)
	case event.StrategyBestSellers:
		each(c.d.BestSellers, yield)
	case event.StrategyRecentlyViewed:
		if act != nil {
			eachSince(act.Viewed, since, yield)
		}
	case event.StrategyAbandonedCart:
		if act != nil {
			eachSince(act.Carted, since, yield)
		}
	case event.StrategyCoPurchase:
		if act != nil {
			c.related("purchase", act.Purchased, since, yield)
		}
	case event.StrategyCoView:
		if act != nil {
			c.related("view", act.Viewed, since, yield)
		}
	case event.StrategyBackInStock:
		if act != nil {
			c.changed("back_in_stock", act, since, func(a, b candidate) int { return b.at.Compare(a.at) }, yield)
		}
	case event.StrategyPriceDrop:
		if act != nil {
			// Biggest drop (relative to the old price) first.
			c.changed("price_drop", act, since, func(a, b candidate) int {
				return cmp.Or(cmp.Compare(b.drop, a.drop), b.at.Compare(a.at))
			}, yield)
		}
	}
}

func each(ids []string, yield func(string) bool) {
	for _, id := range ids {
		if !yield(id) {
			return
		}
	}
}

func eachSince(ts []Touch, since time.Time, yield func(string) bool) {
	for _, t := range ts {
		if t.At.Before(since) {
			return // latest first: the rest are older still
		}
		if !yield(t.Item) {
			return
		}
	}
}

// maxSeeds bounds how many of a customer's items seed item-to-item
// recommendations: the most recent ones say most about what they want now.
const maxSeeds = 10

// related offers the items associated with the customer's seed items (of
// kind), ranked by their summed association scores.
func (c *chooser) related(kind string, seeds []Touch, since time.Time, yield func(string) bool) {
	if c.scores == nil {
		c.scores = map[string]float32{}
	}
	clear(c.scores)
	var order []string
	for i, s := range seeds {
		if i == maxSeeds || s.At.Before(since) {
			break
		}
		for _, r := range c.d.Associations[AssocKey{kind, s.Item}] {
			if _, ok := c.scores[r.Item]; !ok {
				order = append(order, r.Item)
			}
			c.scores[r.Item] += r.Score
		}
	}
	slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(c.scores[b], c.scores[a]) })
	each(order, yield)
}

type candidate struct {
	id   string
	at   time.Time // when the customer last showed interest
	drop int64     // price drop in basis points of the old price
}

// changed offers the items the customer viewed or carted since `since`
// that have a change of kind since then, restricted to the job's trigger
// items when it names some.
func (c *chooser) changed(kind string, act *Activity, since time.Time, order func(a, b candidate) int, yield func(string) bool) {
	var cands []candidate
	add := func(ts []Touch) {
		for _, t := range ts {
			if t.At.Before(since) {
				break
			}
			if c.rules.TriggerItems != nil && !c.rules.TriggerItems[t.Item] {
				continue
			}
			ch, ok := c.d.Changes[ChangeKey{kind, t.Item}]
			if !ok || ch.At.Before(since) {
				continue
			}
			if i := slices.IndexFunc(cands, func(x candidate) bool { return x.id == t.Item }); i >= 0 {
				if t.At.After(cands[i].at) {
					cands[i].at = t.At
				}
				continue
			}
			var drop int64
			if ch.OldPrice > 0 {
				drop = (ch.OldPrice - ch.NewPrice) * 10000 / ch.OldPrice
			}
			cands = append(cands, candidate{id: t.Item, at: t.At, drop: drop})
		}
	}
	add(act.Carted)
	add(act.Viewed)
	slices.SortStableFunc(cands, order)
	for _, x := range cands {
		if !yield(x.id) {
			return
		}
	}
}
