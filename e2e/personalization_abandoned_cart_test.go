package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/deploy/stack"
	"herald/shared/event"
)

// TestAbandonedCartJobEmailsExactlyQualifyingCarts runs a job with strategy
// "abandoned_cart" (fallback: skip) through recommend, render and dispatch:
// exactly the customers whose carts qualify (an in-stock item added within
// 72 hours and not bought since) get an email, each showing their own cart
// items, latest first; everyone else is skipped, and the job completes.
func TestAbandonedCartJobEmailsExactlyQualifyingCarts(t *testing.T) {
	maildir := t.TempDir()
	st := startStack(t, stack.Options{Maildir: maildir})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := partnerClient(t, st, "acme")
	tn := stack.DemoTenant{ID: "acme", Customers: 40, Items: 30, Seed: 5}
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	var inStock, soldOut []stack.Item
	for j := range tn.Items {
		if it := tn.Item(j); it.InStock {
			inStock = append(inStock, it)
		} else {
			soldOut = append(soldOut, it)
		}
	}
	if len(inStock) < 10 || len(soldOut) == 0 {
		t.Fatalf("demo catalog has %d items in stock and %d sold out; pick another seed", len(inStock), len(soldOut))
	}
	// The audience: subscribed customers, as the planner would read them.
	var audience []stack.Customer
	for i := range tn.Customers {
		if c := tn.Customer(i); c.Subscribed && !tn.Suppressed(i) {
			audience = append(audience, c)
		}
	}
	if len(audience) < 10 {
		t.Fatalf("only %d customers to mail", len(audience))
	}
	now := time.Now()
	record := func(c stack.Customer, kind string, it stack.Item, ago time.Duration) {
		t.Helper()
		at := now.Add(-ago)
		if _, err := db.Exec(ctx, `SELECT herald_ensure_events_partition($1)`, at); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO events (tenant_id, customer_id, kind, item_id, occurred_at)
			VALUES ('acme', $1, $2, $3, $4)`, c.ID, kind, it.ID, at); err != nil {
			t.Fatal(err)
		}
	}
	h := time.Hour
	// Qualifying carts, and what each customer must be shown.
	want := map[string][]string{}
	a, b, c := audience[0], audience[1], audience[2]
	record(a, "add_to_cart", inStock[0], 2*h)
	record(a, "add_to_cart", inStock[1], 1*h)
	want[a.Email] = []string{inStock[1].Title, inStock[0].Title}
	record(b, "add_to_cart", inStock[2], 5*h)
	record(b, "add_to_cart", inStock[3], 3*h)
	record(b, "purchase", inStock[3], 2*h) // bought after all
	want[b.Email] = []string{inStock[2].Title}
	record(c, "view", inStock[5], 80*h)
	record(c, "add_to_cart", inStock[4], 70*h) // just inside 72 hours
	want[c.Email] = []string{inStock[4].Title}
	// Carts that do not qualify.
	record(audience[3], "add_to_cart", inStock[5], 100*h) // too old
	record(audience[4], "add_to_cart", soldOut[0], 1*h)   // out of stock
	record(audience[5], "add_to_cart", inStock[6], 3*h)   // bought since
	record(audience[5], "purchase", inStock[6], 1*h)      //
	record(audience[6], "view", inStock[7], 1*h)          // only looked
	record(audience[7], "purchase", inStock[8], 24*h)     // only bought
	record(audience[7], "add_to_cart", inStock[8], 2*h)   // ... and it again: never an item bought
	var templateVersion int32
	if err := db.QueryRow(ctx, `SELECT max(version) FROM templates WHERE tenant_id = 'acme' AND id = 'black-friday'`).Scan(&templateVersion); err != nil {
		t.Fatal(err)
	}

	// The job, through the partner API, for the whole audience.
	ids := make([]string, len(audience))
	for i, cu := range audience {
		ids[i] = cu.ID
	}
	cart := blackFriday()
	cart["audience"] = map[string]any{"customer_ids": ids}
	cart["campaign"] = "cart"
	cart["picking"] = map[string]any{
		"strategies": []map[string]any{{"name": event.StrategyAbandonedCart, "lookback_hours": 72}},
		"on_short":   event.OnShortSkip,
	}
	job, err := client.SubmitJob(ctx, "abandoned-cart-1", cart)
	if err != nil {
		t.Fatal(err)
	}
	job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.Planned != int64(len(audience)) || job.Done() != job.Planned {
		t.Fatalf("job %s: planned %d, done %d, want all %d recipients final", job.State, job.Planned, job.Done(), len(audience))
	}
	jobID := job.ID

	msgs := st.Mail.Messages()
	got := map[string][]string{}
	for _, m := range msgs {
		if len(m.To) != 1 {
			t.Fatalf("message %s to %v", m.MessageID, m.To)
		}
		if _, dup := got[m.To[0]]; dup {
			t.Fatalf("two messages to %s", m.To[0])
		}
		got[m.To[0]] = productTitles(textPart(t, m.Path))
	}
	for addr, titles := range want {
		if !slices.Equal(got[addr], titles) {
			t.Errorf("%s was shown %q, want their cart %q", addr, got[addr], titles)
		}
	}
	for addr := range got {
		if _, ok := want[addr]; !ok {
			t.Errorf("%s got an email; their cart does not qualify", addr)
		}
	}

	// The ledger: sent to the three, the others skipped with the reason,
	// and the provenance of every row.
	rows, _ := db.Query(ctx, `SELECT email, state, reason, strategy, template_version FROM deliveries WHERE job_id = $1`, jobID)
	type row struct {
		Email, State, Reason, Strategy string
		TemplateVersion                int32
	}
	ledger, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ledger {
		_, sent := want[r.Email]
		switch {
		case sent && r.State != "sent":
			t.Errorf("%s: ledger state %s (%s), want sent", r.Email, r.State, r.Reason)
		case !sent && r.State != "skipped":
			t.Errorf("%s: ledger state %s (%s), want skipped", r.Email, r.State, r.Reason)
		}
		if sent && r.Strategy != "" && (r.Strategy != event.StrategyAbandonedCart || r.TemplateVersion != templateVersion) {
			t.Errorf("%s: provenance %q v%d", r.Email, r.Strategy, r.TemplateVersion)
		}
	}
	if len(ledger) != len(audience) {
		t.Errorf("%d ledger rows for %d recipients", len(ledger), len(audience))
	}
	var done bool
	if err := db.QueryRow(ctx, `SELECT bool_and(done_at IS NOT NULL) FROM job_batches WHERE job_id = $1`, jobID).Scan(&done); err != nil {
		t.Fatal(err)
	}
	if !done {
		t.Error("the job's batches are not done: skipped recipients must complete them")
	}
	if job.Counts.Skipped != int64(len(audience)-len(want)) || job.Counts.Sent != int64(len(want)) {
		t.Errorf("job counts %+v: want %d sent, %d skipped", job.Counts, len(want), len(audience)-len(want))
	}
	t.Logf("abandoned cart: %d emails, %d skipped", len(got), len(ledger)-len(got))
}
