package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// A profile reads back as it was put, and putting one replaces it.
func TestProfile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.s.Profile(ctx, "acme"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("before any profile: %v, want ErrNotFound", err)
	}
	for _, p := range []Profile{
		{Name: "Acme", WebsiteURL: "https://acme.example", LogoURL: "https://acme.example/l.png", HeroURL: "https://acme.example/h.png",
			PostalAddress: "1 Road, Town", DefaultDeadline: 6 * time.Hour},
		{Name: "Acme Inc", WebsiteURL: "https://acme.example", PostalAddress: "2 Road, Town", DefaultDeadline: time.Hour},
	} {
		if err := f.s.PutProfile(ctx, "acme", p); err != nil {
			t.Fatal(err)
		}
		got, err := f.s.Profile(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(p, got); diff != "" {
			t.Errorf("profile (-put +read):\n%s", diff)
		}
	}
	if _, err := f.s.Profile(ctx, "globex"); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant's profile: %v, want ErrNotFound", err)
	}
}

// Template versions count up from 1 per tenant and id, even when uploads
// race; a read names a version or takes the latest.
func TestTemplates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first := Template{ID: "bf", FromName: "Acme", FromEmail: "deals@acme.example", Subject: "Hi", Preheader: "Deals", HTML: "<p>1</p>", Text: "1"}
	added, err := f.s.AddTemplate(ctx, "acme", first)
	if err != nil {
		t.Fatal(err)
	}
	if added.Version != 1 || added.CreatedAt.IsZero() {
		t.Fatalf("first version %d created %v, want 1 and a time", added.Version, added.CreatedAt)
	}
	var wg sync.WaitGroup
	versions := make([]int, 5)
	for i := range versions {
		wg.Go(func() {
			tmpl, err := f.s.AddTemplate(ctx, "acme", Template{ID: "bf", FromEmail: "deals@acme.example", Subject: "Hi", HTML: fmt.Sprintf("<p>%d</p>", i+2)})
			if err != nil {
				t.Error(err)
			}
			versions[i] = tmpl.Version
		})
	}
	wg.Wait()
	if diff := cmp.Diff([]int{2, 3, 4, 5, 6}, versions, cmpopts.SortSlices(func(a, b int) bool { return a < b })); diff != "" {
		t.Errorf("racing uploads got versions (-want +got):\n%s", diff)
	}
	if other := f.template("globex", "bf"); other.Version != 1 {
		t.Errorf("another tenant's first version is %d, want 1", other.Version)
	}

	got, err := f.s.Template(ctx, "acme", "bf", 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(added, got, cmpopts.EquateApproxTime(time.Millisecond)); diff != "" {
		t.Errorf("version 1 (-added +read):\n%s", diff)
	}
	if latest, err := f.s.Template(ctx, "acme", "bf", 0); err != nil || latest.Version != 6 {
		t.Errorf("latest: version %d, %v; want 6", latest.Version, err)
	}
	for _, tc := range []struct {
		tenant, id string
		version    int
	}{{"acme", "bf", 7}, {"acme", "nope", 0}, {"initech", "bf", 1}} {
		if _, err := f.s.Template(ctx, tc.tenant, tc.id, tc.version); !errors.Is(err, ErrNotFound) {
			t.Errorf("Template(%+v): %v, want ErrNotFound", tc, err)
		}
	}

	list, err := f.s.TemplateVersions(ctx, "acme", "bf", 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{6, 5, 4}, versionsOf(list)); diff != "" {
		t.Errorf("listed versions (-want +got):\n%s", diff)
	}
	if list, err := f.s.TemplateVersions(ctx, "initech", "bf", 3); err != nil || len(list) != 0 {
		t.Errorf("another tenant's versions: %v, %v; want none", list, err)
	}
}

func versionsOf(vs []TemplateVersion) []int {
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = v.Version
	}
	return out
}

// Customer reads one customer of the tenant as loaded.
func TestCustomer(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.load("acme", Customers, []any{int64(1), "c1", "ada@example.com", "Ada", "Lovelace", "en-GB", "Europe/London", false,
		`{"email": false, "onsite": true}`, `{"tier": "gold"}`})
	got, err := f.s.Customer(ctx, "acme", "c1")
	if err != nil {
		t.Fatal(err)
	}
	want := Customer{ID: "c1", Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace", Locale: "en-GB", Timezone: "Europe/London",
		Consent: []byte(`{"email": false, "onsite": true}`), Attributes: []byte(`{"tier": "gold"}`)}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(Customer{}, "UpdatedAt")); diff != "" {
		t.Errorf("customer (-want +got):\n%s", diff)
	}
	for _, tc := range [][2]string{{"acme", "c2"}, {"globex", "c1"}} {
		if _, err := f.s.Customer(ctx, tc[0], tc[1]); !errors.Is(err, ErrNotFound) {
			t.Errorf("Customer(%s, %s): %v, want ErrNotFound", tc[0], tc[1], err)
		}
	}
}

// Erasure removes the customer with their recommendations and events,
// scrubs their address from finished deliveries, and keeps the
// suppression of their address; the second time there is nothing to erase.
func TestEraseCustomer(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.customers("acme", "c1", "c2")
	f.customers("globex", "c1")
	f.load("acme", Recommendations, []any{int64(1), "c1", []string{"i1"}, []float32{1}, "m1"}, []any{int64(2), "c2", []string{"i1"}, []float32{1}, "m1"})
	now := testNow()
	f.load("acme", Events, []any{int64(1), "c1", "view", "i1", int32(1), now.Add(-time.Hour)}, []any{int64(2), "c2", "view", "i1", int32(1), now.Add(-time.Hour)})
	f.load("acme", Suppressions, []any{int64(1), "c1@example.com", "partner"})
	if err := f.s.EnsurePartitions(ctx, now); err != nil {
		t.Fatal(err)
	}
	job := newJob("k1", "")
	f.exec(`INSERT INTO deliveries (tenant_id, job_id, channel, customer_id, job_submitted_at, batch_seq, state, email, done_at)
		VALUES ('acme', gen_random_uuid(), 'email', 'c1', $1, 0, 'sent', 'c1@example.com', now()),
		       ('acme', gen_random_uuid(), 'email', 'c2', $1, 0, 'sent', 'c2@example.com', now())`, job.SubmittedAt)

	if err := f.s.EraseCustomer(ctx, "acme", "c1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		sql  string
		want int
	}{
		{"acme customers", `SELECT count(*) FROM customers WHERE tenant_id = 'acme'`, 1},
		{"globex's c1", `SELECT count(*) FROM customers WHERE tenant_id = 'globex' AND id = 'c1'`, 1},
		{"c1's recommendations", `SELECT count(*) FROM recommendations WHERE customer_id = 'c1'`, 0},
		{"c2's recommendations", `SELECT count(*) FROM recommendations WHERE customer_id = 'c2'`, 1},
		{"c1's events", `SELECT count(*) FROM events WHERE customer_id = 'c1'`, 0},
		{"c2's events", `SELECT count(*) FROM events WHERE customer_id = 'c2'`, 1},
		{"c1's addresses in the ledger", `SELECT count(*) FROM deliveries WHERE email = 'c1@example.com'`, 0},
		{"c1's deliveries", `SELECT count(*) FROM deliveries WHERE customer_id = 'c1'`, 1},
		{"c2's addresses in the ledger", `SELECT count(*) FROM deliveries WHERE email = 'c2@example.com'`, 1},
		{"the suppression", `SELECT count(*) FROM suppressions WHERE email = 'c1@example.com'`, 1},
	} {
		if got := f.count(tc.sql); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, got, tc.want)
		}
	}
	if err := f.s.EraseCustomer(ctx, "acme", "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("erasing again: %v, want ErrNotFound", err)
	}
}

func TestDeleteCatalogItem(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	item := func(id string) []any {
		return []any{int64(1), id, "Shoe", "Acme", "https://acme.example/" + id, "", int64(1000), int64(0), "EUR", true, int64(0), float32(0), int32(0), []string{}}
	}
	f.load("acme", CatalogItems, item("i1"))
	f.load("globex", CatalogItems, item("i1"))
	if err := f.s.DeleteCatalogItem(ctx, "acme", "i1"); err != nil {
		t.Fatal(err)
	}
	if n := f.count(`SELECT count(*) FROM catalog_items WHERE id = 'i1'`); n != 1 {
		t.Errorf("%d items i1 left, want globex's", n)
	}
	if err := f.s.DeleteCatalogItem(ctx, "acme", "i1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting again: %v, want ErrNotFound", err)
	}
}

// The suppression list's rules: a partner lifts only what the partner
// added; the recipient's word (an unsubscribe, a complaint) replaces a
// partner's reason and is never replaced; addresses match regardless of
// case; repeating a suppression changes nothing.
func TestSuppressions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.load("acme", Suppressions, []any{int64(1), "partner@example.com", "partner"}, []any{int64(2), "later@example.com", "partner"})
	reason := func(email string) string {
		t.Helper()
		var r string
		if err := f.db.QueryRow(ctx, `SELECT coalesce((SELECT reason FROM suppressions WHERE tenant_id = 'acme' AND email = lower($1)), '')`, email).Scan(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}

	for range 2 {
		if err := f.s.Suppress(ctx, "acme", "Ada@Example.com", "unsubscribed"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.s.Suppress(ctx, "acme", "ada@example.com", "bounce"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Suppress(ctx, "acme", "later@example.com", "complaint"); err != nil {
		t.Fatal(err)
	}
	for email, want := range map[string]string{"ada@example.com": "unsubscribed", "later@example.com": "complaint", "partner@example.com": "partner"} {
		if got := reason(email); got != want {
			t.Errorf("%s suppressed for %q, want %q", email, got, want)
		}
	}
	if n := f.count(`SELECT count(*) FROM suppressions WHERE tenant_id = 'acme'`); n != 3 {
		t.Errorf("%d suppressions, want 3", n)
	}

	for _, tc := range []struct {
		email string
		want  error
		left  string
	}{
		{"PARTNER@example.com", nil, ""},
		{"partner@example.com", ErrNotFound, ""},
		{"ada@example.com", ErrProtected, "unsubscribed"},
		{"later@example.com", ErrProtected, "complaint"},
		{"nobody@example.com", ErrNotFound, ""},
	} {
		if err := f.s.DeleteSuppression(ctx, "acme", tc.email); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("lift %s: %v, want %v", tc.email, err, tc.want)
		}
		if got := reason(tc.email); got != tc.left {
			t.Errorf("after lifting %s: reason %q, want %q", tc.email, got, tc.left)
		}
	}
}
