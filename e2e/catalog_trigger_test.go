package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"herald/deploy/stack"
)

// TestBackInStockEmailsTheInterested configures a back-in-stock trigger
// through the partner API, records who looked at a sold-out item, and puts
// the item back in stock with an ordinary catalog upload: Herald creates
// the job itself, and exactly the customers who viewed or carted the item
// (and did not buy it since) get an email showing that item alone.
func TestBackInStockEmailsTheInterested(t *testing.T) {
	maildir := t.TempDir()
	st := startStack(t, stack.Options{Maildir: maildir, Flags: map[string][]string{"ingest": {"-trigger-poll=200ms"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := partnerClient(t, st, "acme")
	tn := stack.DemoTenant{ID: "acme", Customers: 40, Items: 30, Seed: 5}
	if err := tn.Load(ctx, client); err != nil {
		t.Fatal(err)
	}
	var item stack.Item
	for j := range tn.Items {
		if it := tn.Item(j); !it.InStock {
			item = it
			break
		}
	}
	if item.ID == "" {
		t.Fatal("the demo catalog has no sold-out item; pick another seed")
	}
	var audience []stack.Customer
	for i := range tn.Customers {
		if c := tn.Customer(i); c.Subscribed && !tn.Suppressed(i) {
			audience = append(audience, c)
		}
	}
	if _, err := client.JSON(ctx, http.MethodPut, "/v1/catalog-triggers/back_in_stock",
		map[string]any{"template": map[string]any{"id": "black-friday"}, "lookback": "72h", "deadline": "1h"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var events bytes.Buffer
	event := func(c stack.Customer, kind string, ago time.Duration) {
		fmt.Fprintf(&events, `{"customer_id":%q,"kind":%q,"item_id":%q,"occurred_at":%q}`+"\n", c.ID, kind, item.ID, now.Add(-ago).Format(time.RFC3339))
	}
	a, b, c, d := audience[0], audience[1], audience[2], audience[3]
	event(a, "view", time.Hour)
	event(b, "add_to_cart", 5*time.Hour)
	event(c, "add_to_cart", 3*time.Hour)
	event(c, "purchase", 2*time.Hour) // bought it after all
	event(d, "view", 100*time.Hour)   // too long ago
	if err := client.Upload(ctx, "/v1/events", &events); err != nil {
		t.Fatal(err)
	}
	item.InStock = true
	line, err := json.Marshal(item)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Upload(ctx, "/v1/catalog/items", bytes.NewReader(append(line, '\n'))); err != nil {
		t.Fatal(err)
	}

	// The job Herald made of the change.
	var job stack.Job
	for job.ID == "" {
		var page struct {
			Jobs []struct {
				ID       string `json:"id"`
				Campaign string `json:"campaign"`
			} `json:"jobs"`
		}
		if _, err := client.Do(ctx, http.MethodGet, "/v1/jobs", "", nil, nil, &page); err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Jobs {
			if j.Campaign != "back_in_stock" {
				t.Fatalf("unexpected job %+v", j)
			}
			job.ID = j.ID
		}
		if len(page.Jobs) > 1 {
			t.Fatalf("%d jobs for one catalog change", len(page.Jobs))
		}
		if job.ID == "" {
			if ctx.Err() != nil {
				t.Fatal("no job for the item coming back in stock")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	job, err = client.WaitJob(ctx, job.ID, 100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{a.Email, b.Email}
	var got []string
	for _, m := range st.Mail.Messages() {
		got = append(got, m.To...)
		if titles := productTitles(textPart(t, m.Path)); !slices.Equal(titles, []string{item.Title}) {
			t.Errorf("%v was shown %q, want only %q", m.To, titles, item.Title)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("emails to %v, want %v", got, want)
	}
	if job.Counts.Sent != 2 || job.Planned != 2 {
		t.Fatalf("job counts %+v, planned %d: want 2 sent", job.Counts, job.Planned)
	}
	t.Logf("item %s back in stock: job %s emailed %s", item.ID, job.ID, strings.Join(got, ", "))
}
