package picker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"herald/devtools/testenv"
	"herald/recommend/internal/picker"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

// The partner-rankings workload: batches of 1,000 recipients, each with a
// ranked list of 10 items from a 5,000-item catalog of which 10% are out of
// stock, a few purchases each, 6 products per message topped up with best
// sellers.
const (
	benchBatch    = 1000
	benchItems    = 5000
	benchListLen  = 10
	benchProducts = 6
)

func benchData() (*eventv1.RecommendBatch, *picker.Data) {
	r := rand.New(rand.NewPCG(1, 2))
	d := &picker.Data{Now: now, Catalog: map[string]*picker.Item{}, Rankings: map[string]picker.Ranking{},
		Activity: map[string]*picker.Activity{}, CatalogVersion: 7}
	for j := range benchItems {
		if j%10 == 0 {
			continue // out of stock
		}
		id := fmt.Sprintf("SKU-%05d", j)
		d.Catalog[id] = &picker.Item{Product: &eventv1.Product{Id: id, Title: "Item " + id, PriceCents: int64(1000 + j)},
			Categories: []string{fmt.Sprintf("cat%d", j%40)}}
		if j < 60 {
			d.CatalogBestSellers = append(d.CatalogBestSellers, id)
		}
	}
	in := &eventv1.RecommendBatch{Job: &eventv1.Job{TenantId: "acme", JobId: "j", ProductsPerMessage: benchProducts}}
	for i := range benchBatch {
		c := fmt.Sprintf("c%08d", i)
		in.Recipients = append(in.Recipients, &eventv1.Recipient{CustomerId: c, Email: c + "@example.com"})
		list := make([]string, benchListLen)
		for k := range list {
			list[k] = fmt.Sprintf("SKU-%05d", r.IntN(benchItems))
		}
		d.Rankings[c] = picker.Ranking{Items: list, ModelVersion: "m1"}
		if i%2 == 0 {
			d.Activity[c] = &picker.Activity{Purchased: []picker.Touch{{Item: list[r.IntN(benchListLen)], At: now}}}
		}
	}
	return in, d
}

// BenchmarkChoose measures choosing for the partner-rankings strategy, the
// CPU work recommend does per recipient besides reading the database.
// recipients/s is per core (one goroutine); recipients/cpu-s divides by
// the process's CPU time instead, garbage collection included, which is
// steadier on a shared machine.
func BenchmarkChoose(b *testing.B) {
	in, d := benchData()
	for _, bc := range []struct {
		name    string
		picking *eventv1.Picking
	}{
		{"partner_rankings", nil},
		{"partner_rankings_category_cap", &eventv1.Picking{CategoryCap: 2,
			Strategies: chain(event.StrategyPartnerRankings, event.StrategyCatalogBestSellers).Strategies}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in.Job.Picking = bc.picking
			rules := picker.RulesOf(in.Job)
			b.ReportAllocs()
			start, cpu0 := time.Now(), processCPU()
			for b.Loop() {
				picker.Choose(in, rules, d)
			}
			b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "recipients/s")
			b.ReportMetric(float64(b.N*benchBatch)/(processCPU()-cpu0).Seconds(), "recipients/cpu-s")
		})
	}
}

// BenchmarkPick measures a whole batch of the partner-rankings workload
// against PostgreSQL: the three round trips, decoding and choosing.
// recipients/s counts wall time with the database on the same machine;
// recipients/cpu-s divides by the CPU time of this process alone, which is
// what a core of recommend does.
func BenchmarkPick(b *testing.B) {
	db := testenv.DB(b)
	ctx := context.Background()
	in, d := benchData()
	_, err := db.Exec(ctx, `INSERT INTO catalog_items (tenant_id, id, title, url, price_cents, in_stock, sales_30d, categories)
		SELECT 'acme', format('SKU-%s', lpad(j::text, 5, '0')), 'Item ' || j, 'https://shop.example/p/' || j, 1000 + j,
		       j % 10 <> 0, 5000 - j, ARRAY['cat' || (j % 40)]
		FROM generate_series(0, $1 - 1) AS j`, benchItems)
	testenv.Must(b, err, "load catalog")
	var customers, emails []string
	var lists [][]string
	for _, r := range in.Recipients {
		customers, emails = append(customers, r.CustomerId), append(emails, r.Email)
		lists = append(lists, d.Rankings[r.CustomerId].Items)
	}
	_, err = db.Exec(ctx, `INSERT INTO customers (tenant_id, id, email) SELECT 'acme', c, e FROM unnest($1::text[], $2::text[]) AS t(c, e)`,
		customers, emails)
	testenv.Must(b, err, "load customers")
	for i, c := range customers {
		_, err = db.Exec(ctx, `INSERT INTO recommendations (tenant_id, customer_id, item_ids, model_version) VALUES ('acme', $1, $2, 'm1')`,
			c, lists[i])
		testenv.Must(b, err, "load recommendations")
	}
	_, err = db.Exec(ctx, `SELECT herald_ensure_events_partition(now())`)
	testenv.Must(b, err, "events partition")
	for c, a := range d.Activity {
		_, err = db.Exec(ctx, `INSERT INTO events (tenant_id, customer_id, kind, item_id, occurred_at) VALUES ('acme', $1, 'purchase', $2, now())`,
			c, a.Purchased[0].Item)
		testenv.Must(b, err, "load events")
	}
	_, err = db.Exec(ctx, `ANALYZE`)
	testenv.Must(b, err, "analyze")
	p := picker.New(db, nil, nil, picker.Config{})
	in.Job.Picking = nil
	b.ReportAllocs()
	start, cpu0 := time.Now(), processCPU()
	for b.Loop() {
		if _, err := p.Pick(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/time.Since(start).Seconds(), "recipients/s")
	b.ReportMetric(float64(b.N*benchBatch)/(processCPU()-cpu0).Seconds(), "recipients/cpu-s")
}

// processCPU is the CPU time this process has used: recommend's own cost,
// without PostgreSQL's.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
