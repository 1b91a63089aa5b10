package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"herald/dispatch/internal/ledger"
)

// BenchmarkClaimAndRecord measures the ledger's hot path: claim a chunk of
// recipients (suppression, deadline and daily-cap checks included) and
// record them sent, as dispatch does for every chunk, from eight batches at
// once. It reports recipients per second.
func BenchmarkClaimAndRecord(b *testing.B) {
	db, base := setup(b)
	if _, err := db.Exec(context.Background(), `INSERT INTO tenants (id, daily_cap) VALUES ('acme', 5)`); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	l := ledger.New(db)
	const workers, chunk = 8, 100
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bt := base
			bt.Seq = int64(w)
			h, err := l.Lock(ctx, bt)
			if err != nil {
				b.Error(err)
				return
			}
			defer h.Release(ctx)
			items := make([]ledger.Item, chunk)
			outcomes := make([]ledger.Outcome, chunk)
			for done := 0; done < b.N/workers+1; done += chunk {
				for i := range items {
					id := fmt.Sprintf("r%d-%08d", w, done+i)
					items[i] = ledger.Item{CustomerID: id, Email: id + "@example.com", MessageID: id}
					outcomes[i] = ledger.Outcome{CustomerID: id, State: ledger.Sent, Reason: "250 2.0.0 ok"}
				}
				if _, err := h.Claim(ctx, items, "smtp:test"); err != nil {
					b.Error(err)
					return
				}
				if err := h.Record(ctx, outcomes); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "recipients/s")
}
