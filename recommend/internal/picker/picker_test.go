package picker_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"herald/recommend/internal/picker"
	eventv1 "herald/shared/event/v1"
)

func TestChoose(t *testing.T) {
	product := func(id string) *eventv1.Product { return &eventv1.Product{Id: id, Title: "title " + id} }
	inStock := map[string]*eventv1.Product{"a": product("a"), "b": product("b"), "c": product("c")}
	best := []*eventv1.Product{product("b"), product("x"), product("y"), product("z")}
	tests := []struct {
		name       string
		list       []string
		n          int
		wantIDs    []string
		wantSource string
	}{
		{"ranked list, in order", []string{"c", "a", "b"}, 2, []string{"c", "a"}, picker.SourceRecommendations},
		{"out of stock and repeats skipped", []string{"gone", "a", "a", "c"}, 2, []string{"a", "c"}, picker.SourceRecommendations},
		{"topped up with best sellers, no repeats", []string{"b", "gone"}, 3, []string{"b", "x", "y"}, picker.SourceMixed},
		{"no list: best sellers", nil, 2, []string{"b", "x"}, picker.SourceBestSellers},
		{"no products asked for", []string{"a"}, 0, nil, picker.SourceNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := &eventv1.RecommendBatch{Job: &eventv1.Job{}, Recipients: []*eventv1.Recipient{{CustomerId: "r1"}}}
			out := picker.Choose(in, map[string][]string{"r1": tc.list}, inStock, best, tc.n)
			got := out.Recipients[0]
			var ids []string
			for _, i := range got.Products {
				ids = append(ids, out.Products[i].Id)
			}
			if diff := cmp.Diff(tc.wantIDs, ids); diff != "" || got.Source != tc.wantSource {
				t.Fatalf("source %q (want %q), products (-want +got):\n%s", got.Source, tc.wantSource, diff)
			}
		})
	}
}

func TestChooseSharesProductsAcrossRecipients(t *testing.T) {
	a := &eventv1.Product{Id: "a"}
	in := &eventv1.RecommendBatch{Job: &eventv1.Job{}, Recipients: []*eventv1.Recipient{{CustomerId: "r1"}, {CustomerId: "r2"}}}
	out := picker.Choose(in, map[string][]string{"r1": {"a"}, "r2": {"a"}}, map[string]*eventv1.Product{"a": a}, nil, 1)
	if len(out.Products) != 1 || out.Recipients[0].Products[0] != 0 || out.Recipients[1].Products[0] != 0 {
		t.Fatalf("a product two recipients share must travel once: %d products, refs %v %v",
			len(out.Products), out.Recipients[0].Products, out.Recipients[1].Products)
	}
}
