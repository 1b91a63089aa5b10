package picker

import (
	"time"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

// Default lookbacks: how far back customer events count for a strategy whose
// job does not say.
var defaultLookback = map[string]time.Duration{
	// Units bought over the last week: what sells now, not last season.
	event.StrategyBestSellers: 7 * 24 * time.Hour,
	// The customer's purchases that seed "bought together".
	event.StrategyCoPurchase: 90 * 24 * time.Hour,
	// The customer's views that seed "viewed together".
	event.StrategyCoView:         7 * 24 * time.Hour,
	event.StrategyRecentlyViewed: 30 * 24 * time.Hour,
	// A cart older than three days is rarely still wanted.
	event.StrategyAbandonedCart: 72 * time.Hour,
	// Interest (views, carts) in an item, and the item's change, within a
	// month.
	event.StrategyBackInStock: 30 * 24 * time.Hour,
	event.StrategyPriceDrop:   30 * 24 * time.Hour,
}

// PurchaseHorizon is how far back "never an item the customer already
// bought" looks. Events older than this may have been dropped with their
// partition anyway.
const PurchaseHorizon = 365 * 24 * time.Hour

// Rules are a job's Picking with the defaults filled in.
type Rules struct {
	Chain       []Step
	N           int // products per message
	MinProducts int
	Skip        bool // on_short: skip the recipient instead of hiding the block
	CategoryCap int
	PriceFloor  int64
	// TriggerItems restricts back_in_stock and price_drop to these items
	// (nil: any item with such a change).
	TriggerItems map[string]bool
}

// Step is one strategy of the chain.
type Step struct {
	Name     string
	Lookback time.Duration
}

// DefaultChain is what a job without a Picking gets: the partner's rankings
// topped up with the catalog's best sellers.
var DefaultChain = []Step{{Name: event.StrategyPartnerRankings}, {Name: event.StrategyCatalogBestSellers}}

// RulesOf returns the rules of job.
func RulesOf(job *eventv1.Job) Rules {
	r := Rules{N: int(job.GetProductsPerMessage()), MinProducts: 1}
	p := job.GetPicking()
	if p == nil || len(p.Strategies) == 0 {
		r.Chain = DefaultChain
	} else {
		for _, s := range p.Strategies {
			st := Step{Name: s.Name, Lookback: time.Duration(s.LookbackHours) * time.Hour}
			if st.Lookback == 0 {
				st.Lookback = defaultLookback[s.Name]
			}
			r.Chain = append(r.Chain, st)
		}
	}
	if p == nil {
		return r
	}
	if p.MinProducts > 0 {
		r.MinProducts = int(p.MinProducts)
	}
	r.Skip = p.OnShort == event.OnShortSkip
	r.CategoryCap = int(p.CategoryCap)
	r.PriceFloor = p.PriceFloorCents
	if len(p.ItemIds) > 0 {
		r.TriggerItems = make(map[string]bool, len(p.ItemIds))
		for _, id := range p.ItemIds {
			r.TriggerItems[id] = true
		}
	}
	return r
}

// uses reports whether the chain has any of the named strategies.
func (r *Rules) uses(names ...string) bool {
	for _, s := range r.Chain {
		for _, n := range names {
			if s.Name == n {
				return true
			}
		}
	}
	return false
}

// lookback returns the longest lookback of the chain's steps among names
// (0 if none of them is in the chain).
func (r *Rules) lookback(names ...string) time.Duration {
	var d time.Duration
	for _, s := range r.Chain {
		for _, n := range names {
			if s.Name == n {
				d = max(d, s.Lookback)
			}
		}
	}
	return d
}
