package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"herald/deploy/stack"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/messaging"
)

// TestAbandonedCartJobEmailsExactlyQualifyingCarts runs a job with strategy
// "abandoned_cart" (fallback: skip) through recommend, render and dispatch:
// exactly the customers whose carts qualify (an in-stock item added within
// 72 hours and not bought since) get an email, each showing their own cart
// items, latest first; everyone else is skipped, and the job completes.
//
// The partner API cannot take a job's picking rules yet (the ingest side of
// issue 7), so the test records the job and its one batch in SQL, as
// ingest's planner would, and publishes the batch to recommend itself.
func TestAbandonedCartJobEmailsExactlyQualifyingCarts(t *testing.T) {
	maildir := t.TempDir()
	st := startStack(t, stack.Options{Maildir: maildir})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := &stack.Client{BaseURL: st.IngestURL, Tenant: "acme"}
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

	// The job and its one batch, as ingest records and plans them.
	jobID := uuid.Must(uuid.NewV7())
	submitted := now.UTC().Truncate(time.Microsecond)
	deadline := submitted.Add(time.Hour)
	ids := make([]string, len(audience))
	recipients := make([]*eventv1.Recipient, len(audience))
	for i, cu := range audience {
		ids[i] = cu.ID
		recipients[i] = &eventv1.Recipient{CustomerId: cu.ID, Email: cu.Email, FirstName: cu.FirstName, LastName: cu.LastName, Locale: cu.Locale}
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`SELECT herald_ensure_deliveries_partition($1)`, []any{submitted}},
		{`INSERT INTO jobs (tenant_id, id, idempotency_key, request_sha256, channel, template_id, template_version, audience,
			products_per_message, campaign, submitted_at, deadline, planned, planned_at)
		  VALUES ('acme', $1, 'abandoned-cart-1', '\x00', 'email', 'black-friday', $2, $3, 6, 'cart', $4, $5, $6, now())`,
			[]any{jobID, templateVersion, map[string]any{"customer_ids": ids}, submitted, deadline, len(ids)}},
		{`INSERT INTO job_batches (tenant_id, job_id, seq, customer_ids) VALUES ('acme', $1, 0, $2)`, []any{jobID, ids}},
	} {
		if _, err := db.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	ps, err := messaging.Connect(ctx, messaging.Config{Project: st.Project, EmulatorHost: st.PubsubHost})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	pub := messaging.NewPublisher(ps, messaging.Recommend, event.Identity, prometheus.NewRegistry())
	defer pub.Stop()
	res, err := pub.Publish(ctx, &eventv1.RecommendBatch{
		Job: &eventv1.Job{TenantId: "acme", JobId: jobID.String(), Seq: 0, Channel: "email",
			SubmittedAt: timestamppb.New(submitted), Deadline: timestamppb.New(deadline),
			TemplateId: "black-friday", TemplateVersion: templateVersion, ProductsPerMessage: 6, Campaign: "cart",
			Picking: &eventv1.Picking{
				Strategies: []*eventv1.Strategy{{Name: event.StrategyAbandonedCart, LookbackHours: 72}},
				OnShort:    event.OnShortSkip,
			}},
		Recipients: recipients,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := res.Get(ctx); err != nil {
		t.Fatal(err)
	}

	// Every recipient reaches a final state in the ledger.
	for {
		var final int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE job_id = $1 AND state NOT IN ('sending', 'deferred')`,
			jobID).Scan(&final); err != nil {
			t.Fatal(err)
		}
		if final == len(audience) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of %d recipients final", final, len(audience))
		}
		time.Sleep(100 * time.Millisecond)
	}

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
	// and the provenance of every row. Until dispatch records skip_reason
	// as the state "skipped", a skipped recipient is recorded failed with
	// the skip as its reason; neither is ever sent.
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
		case !sent && r.State != "skipped" && !(r.State == "failed" && strings.Contains(r.Reason, "skipped: too few products")):
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
	if err := db.QueryRow(ctx, `SELECT done_at IS NOT NULL FROM job_batches WHERE job_id = $1 AND seq = 0`, jobID).Scan(&done); err != nil {
		t.Fatal(err)
	}
	if !done {
		t.Error("the job's batch is not done: skipped recipients must complete it")
	}
	t.Logf("abandoned cart: %d emails, %d skipped", len(got), len(ledger)-len(got))
}
