package stack

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
)

// DemoSenderDomain is the domain the demo retailer sends from.
const DemoSenderDomain = "acme.example"

// DemoTenant is a synthetic retailer: a catalog, customers with names and
// addresses, per-customer recommendations and a few suppressed addresses,
// all derived from a seed so that tests can predict every message.
type DemoTenant struct {
	ID        string
	Customers int
	Items     int
	Seed      uint64
}

//go:embed demo/email.html
var demoHTML string

//go:embed demo/email.txt
var demoText string

var (
	firstNames = []string{"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Tim",
		"Frances", "John", "Katherine", "Dennis", "Hedy", "Linus", "Charlotte", "Niklaus", "Sophie", "Chloé"}
	lastNames = []string{"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Perlman",
		"Berners-Lee", "Allen", "Backus", "Johnson", "Ritchie", "Lamarr", "Torvalds", "O'Brien", "Wirth", "Wilson", "Dupont"}
	domains   = []string{"example.com", "example.org", "example.net", "gmail.example", "outlook.example"}
	adjective = []string{"Merino", "Down", "Trail", "Classic", "Waxed", "Linen", "Fleece", "Cashmere", "Canvas", "Wool"}
	nouns     = []string{"Sweater", "Jacket", "Running Shoes", "Beanie", "Backpack", "Scarf", "Boots", "Shirt", "Parka", "Gloves"}
	brands    = []string{"Acme Outdoor", "Northwind", "Fabrikam", "Contoso Wear", "Tailspin"}
)

// Customer is customer i of the tenant (0-based).
type Customer struct {
	ID         string `json:"id"`
	Email      string `json:"email"`
	FirstName  string `json:"first_name"`
	LastName   string `json:"last_name"`
	Locale     string `json:"locale"`
	Subscribed bool   `json:"subscribed"`
	// Consent is the customer's answer for the other channels: the demo's
	// customers give the same answer for every channel, so an onsite or ad
	// job reaches exactly those an email job does.
	Consent Consent `json:"consent"`
}

// Consent is a customer's consent for the channels besides email.
type Consent struct {
	Onsite bool `json:"onsite"`
	Ads    bool `json:"ads"`
}

// Customer returns customer i.
func (t DemoTenant) Customer(i int) Customer {
	r := t.rng(1, i)
	first, last := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
	local := strings.ToLower(strings.NewReplacer("'", "", "é", "e").Replace(first + "." + last))
	subscribed := r.IntN(100) != 0 // about 1% unsubscribed
	return Customer{
		ID:         fmt.Sprintf("c%08d", i),
		Email:      fmt.Sprintf("%s.%d@%s", local, i, domains[r.IntN(len(domains))]),
		FirstName:  first,
		LastName:   last,
		Locale:     "en",
		Subscribed: subscribed,
		Consent:    Consent{Onsite: subscribed, Ads: subscribed},
	}
}

// Suppressed reports whether customer i's address is on the suppression
// list (a hard bounce from an earlier send): about 0.5%.
func (t DemoTenant) Suppressed(i int) bool { return t.rng(2, i).IntN(200) == 0 }

// Item is catalog item j.
type Item struct {
	ID             string  `json:"id"`
	Title          string  `json:"title"`
	Brand          string  `json:"brand"`
	URL            string  `json:"url"`
	ImageURL       string  `json:"image_url"`
	PriceCents     int64   `json:"price_cents"`
	CompareAtCents int64   `json:"compare_at_cents,omitempty"`
	InStock        bool    `json:"in_stock"`
	Sales30d       int64   `json:"sales_30d"`
	Rating         float32 `json:"rating"`
	Reviews        int32   `json:"reviews"`
}

// Item returns catalog item j.
func (t DemoTenant) Item(j int) Item {
	r := t.rng(3, j)
	title := adjective[r.IntN(len(adjective))] + " " + nouns[r.IntN(len(nouns))] + fmt.Sprintf(" No. %d", j)
	price := int64(1999 + r.IntN(20000))
	it := Item{
		ID:         fmt.Sprintf("SKU-%05d", j),
		Title:      title,
		Brand:      brands[r.IntN(len(brands))],
		URL:        fmt.Sprintf("https://shop.acme.example/p/sku-%05d", j),
		ImageURL:   fmt.Sprintf("https://cdn.acme.example/img/sku-%05d.jpg", j),
		PriceCents: price,
		InStock:    r.IntN(10) != 0, // about 10% out of stock
		Sales30d:   int64(r.IntN(5000)),
		Rating:     float32(20+r.IntN(31)) / 10,
		Reviews:    int32(r.IntN(900)),
	}
	if r.IntN(2) == 0 {
		it.CompareAtCents = price + price*int64(10+r.IntN(50))/100
	}
	return it
}

// Recommended is customer i's ranked list of item ids; about 10% of
// customers have none and get best sellers.
func (t DemoTenant) Recommended(i int) []string {
	r := t.rng(4, i)
	if r.IntN(10) == 0 {
		return nil
	}
	ids := make([]string, 10)
	for k := range ids {
		ids[k] = fmt.Sprintf("SKU-%05d", r.IntN(t.Items))
	}
	return ids
}

func (t DemoTenant) rng(stream, i int) *rand.Rand {
	return rand.New(rand.NewPCG(t.Seed^uint64(stream)<<56, uint64(i)))
}

// Load creates the tenant through the operator API, unless it exists, and
// loads it through the partner API: profile, catalog, customers,
// recommendations, suppressions and the "black-friday" template. Uploads
// are streamed, so a million customers need no memory to speak of.
func (t DemoTenant) Load(ctx context.Context, c *Client) error {
	ops, err := OpsClient(c.BaseURL, c.HTTP)
	if err != nil {
		return err
	}
	if err := ops.EnsureTenant(ctx, t.ID); err != nil {
		return err
	}
	profile := map[string]string{
		"name": "Acme Outfitters & Co.", "website_url": "https://shop.acme.example",
		"logo_url": "https://cdn.acme.example/logo.png", "hero_url": "https://cdn.acme.example/bf-hero.jpg",
		"postal_address": "123 Market Street, San Francisco, CA 94105",
	}
	if _, err := c.JSON(ctx, http.MethodPut, "/v1/profile", profile, nil, nil); err != nil {
		return fmt.Errorf("put profile: %w", err)
	}
	uploads := []struct {
		path string
		n    int
		line func(int) any
	}{
		{"/v1/catalog/items", t.Items, func(j int) any { return t.Item(j) }},
		{"/v1/customers", t.Customers, func(i int) any { return t.Customer(i) }},
		{"/v1/recommendations", t.Customers, func(i int) any {
			ids := t.Recommended(i)
			if ids == nil {
				return nil
			}
			return map[string]any{"customer_id": t.Customer(i).ID, "item_ids": ids, "model_version": "demo-1"}
		}},
		{"/v1/suppressions", t.Customers, func(i int) any {
			if !t.Suppressed(i) {
				return nil
			}
			return map[string]string{"email": t.Customer(i).Email, "reason": "hard bounce"}
		}},
	}
	for _, u := range uploads {
		if err := c.Upload(ctx, u.path, ndjsonStream(u.n, u.line)); err != nil {
			return fmt.Errorf("upload %s: %w", u.path, err)
		}
	}
	tmpl := map[string]string{
		"from_name": "Acme Outfitters", "from_email": "deals@" + DemoSenderDomain,
		"subject":   "{{.Customer.FirstName}}, your Black Friday picks are here",
		"preheader": "Up to 60% off the things you have been eyeing, today only.",
		"html":      demoHTML, "text": demoText,
	}
	if _, err := c.JSON(ctx, http.MethodPost, "/v1/templates/black-friday/versions", tmpl, nil, nil); err != nil {
		return fmt.Errorf("add template: %w", err)
	}
	return nil
}

// ndjsonStream encodes line(0..n-1) as NDJSON on the fly; nil lines are skipped.
func ndjsonStream(n int, line func(int) any) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 256<<10)
		enc := json.NewEncoder(w)
		for i := range n {
			v := line(i)
			if v == nil {
				continue
			}
			if err := enc.Encode(v); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(w.Flush())
	}()
	return pr
}
