package event

import (
	"errors"
	"fmt"
	"slices"

	eventv1 "herald/shared/event/v1"
)

// The recommendation strategies a job's Picking may name. Recommend
// documents what each one offers and its default lookback.
const (
	// StrategyPartnerRankings: the customer's ranked list from the
	// partner's own model (the recommendations dataset), in order.
	StrategyPartnerRankings = "partner_rankings"
	// StrategyCatalogBestSellers: the tenant's items by the sales_30d the
	// partner reports in the catalog.
	StrategyCatalogBestSellers = "catalog_best_sellers"
	// StrategyBestSellers: the tenant's items by units bought over the
	// lookback window, counted from purchase events.
	StrategyBestSellers = "best_sellers"
	// StrategyCoPurchase: items bought by the customers who bought what this
	// customer bought.
	StrategyCoPurchase = "co_purchase"
	// StrategyCoView: items viewed by the customers who viewed what this
	// customer viewed.
	StrategyCoView = "co_view"
	// StrategyRecentlyViewed: what the customer viewed, latest first.
	StrategyRecentlyViewed = "recently_viewed"
	// StrategyAbandonedCart: what the customer put in their cart within the
	// lookback and has not bought, latest first.
	StrategyAbandonedCart = "abandoned_cart"
	// StrategyBackInStock: items the customer showed interest in that came
	// back in stock.
	StrategyBackInStock = "back_in_stock"
	// StrategyPriceDrop: items the customer showed interest in whose price
	// went down.
	StrategyPriceDrop = "price_drop"
)

// Strategies lists every strategy name.
var Strategies = []string{
	StrategyPartnerRankings, StrategyCatalogBestSellers, StrategyBestSellers, StrategyCoPurchase,
	StrategyCoView, StrategyRecentlyViewed, StrategyAbandonedCart, StrategyBackInStock, StrategyPriceDrop,
}

// What happens to a recipient left with too few products.
const (
	OnShortHideBlock = "hide_block"
	OnShortSkip      = "skip"
)

// Bounds on a Picking.
const (
	MaxStrategies    = 8
	MaxLookbackHours = 24 * 400
	MaxTriggerItems  = 100
)

// ErrInvalidPicking marks a Picking that ValidatePicking rejects.
var ErrInvalidPicking = errors.New("invalid picking")

// ValidatePicking reports everything wrong with p, a job's picking rules
// for a message of n products (nil p is valid: the default chain). Ingest
// calls it when it accepts a job, so recommend never meets a chain it
// cannot run.
func ValidatePicking(p *eventv1.Picking, n int) error {
	if p == nil {
		return nil
	}
	var problems []error
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Errorf("%w: "+format, append([]any{ErrInvalidPicking}, args...)...))
	}
	if len(p.Strategies) == 0 {
		add("at least one strategy is required")
	}
	if len(p.Strategies) > MaxStrategies {
		add("at most %d strategies", MaxStrategies)
	}
	seen := map[string]bool{}
	for _, s := range p.Strategies {
		switch {
		case !slices.Contains(Strategies, s.GetName()):
			add("unknown strategy %q (known: %v)", s.GetName(), Strategies)
		case seen[s.GetName()]:
			add("strategy %q appears twice", s.GetName())
		}
		seen[s.GetName()] = true
		if s.GetLookbackHours() < 0 || s.GetLookbackHours() > MaxLookbackHours {
			add("strategy %q: lookback_hours must be between 0 and %d", s.GetName(), MaxLookbackHours)
		}
	}
	switch p.OnShort {
	case "", OnShortHideBlock, OnShortSkip:
	default:
		add("on_short must be %q or %q, not %q", OnShortHideBlock, OnShortSkip, p.OnShort)
	}
	if p.MinProducts < 0 || int(p.MinProducts) > max(n, 1) {
		add("min_products must be between 0 and the products per message (%d)", n)
	}
	if p.CategoryCap < 0 {
		add("category_cap must not be negative")
	}
	if p.PriceFloorCents < 0 {
		add("price_floor_cents must not be negative")
	}
	if len(p.ItemIds) > MaxTriggerItems {
		add("at most %d item_ids", MaxTriggerItems)
	}
	return errors.Join(problems...)
}
