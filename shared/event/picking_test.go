package event_test

import (
	"errors"
	"strings"
	"testing"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

func TestValidatePicking(t *testing.T) {
	ok := &eventv1.Picking{
		Strategies: []*eventv1.Strategy{{Name: event.StrategyAbandonedCart, LookbackHours: 48},
			{Name: event.StrategyRecentlyViewed}, {Name: event.StrategyCatalogBestSellers}},
		MinProducts: 2, OnShort: event.OnShortSkip, CategoryCap: 2, PriceFloorCents: 500,
	}
	if err := event.ValidatePicking(ok, 6); err != nil {
		t.Errorf("valid picking: %v", err)
	}
	if err := event.ValidatePicking(nil, 6); err != nil {
		t.Errorf("no picking (the default chain): %v", err)
	}
	tests := []struct {
		name string
		p    *eventv1.Picking
		want string
	}{
		{"no strategy", &eventv1.Picking{}, "at least one strategy"},
		{"unknown strategy", &eventv1.Picking{Strategies: []*eventv1.Strategy{{Name: "magic"}}}, `unknown strategy "magic"`},
		{"twice", &eventv1.Picking{Strategies: []*eventv1.Strategy{{Name: "co_view"}, {Name: "co_view"}}}, "appears twice"},
		{"lookback", &eventv1.Picking{Strategies: []*eventv1.Strategy{{Name: "co_view", LookbackHours: -1}}}, "lookback_hours"},
		{"on_short", &eventv1.Picking{Strategies: []*eventv1.Strategy{{Name: "co_view"}}, OnShort: "explode"}, "on_short"},
		{"min_products", &eventv1.Picking{Strategies: []*eventv1.Strategy{{Name: "co_view"}}, MinProducts: 7}, "min_products"},
		{"price floor", &eventv1.Picking{Strategies: []*eventv1.Strategy{{Name: "co_view"}}, PriceFloorCents: -1}, "price_floor_cents"},
	}
	for _, tc := range tests {
		err := event.ValidatePicking(tc.p, 6)
		if !errors.Is(err, event.ErrInvalidPicking) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an ErrInvalidPicking about %q", tc.name, err, tc.want)
		}
	}
}
