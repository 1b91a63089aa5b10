package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// A catalog trigger needs its template, is replaced by the next put of its
// kind, and is deleted once.
func TestCatalogTriggers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.template("acme", "bis")
	f.template("acme", "drop")
	if err := f.s.PutCatalogTrigger(ctx, "acme", CatalogTrigger{Kind: "back_in_stock", Channel: "email", TemplateID: "nope", Lookback: time.Hour}); !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf("unknown template: %v, want ErrUnknownTemplate", err)
	}
	if err := f.s.PutCatalogTrigger(ctx, "acme", CatalogTrigger{Kind: "back_in_stock", Channel: "email", TemplateID: "bis", TemplateVersion: 2, Lookback: time.Hour}); !errors.Is(err, ErrUnknownTemplate) {
		t.Fatalf("unknown template version: %v, want ErrUnknownTemplate", err)
	}
	if n := f.count(`SELECT count(*) FROM catalog_triggers`); n != 0 {
		t.Fatalf("%d triggers after refusals, want none", n)
	}
	put := []CatalogTrigger{
		{Kind: "price_drop", Channel: "onsite", TemplateID: "drop", TemplateVersion: 1, Lookback: 48 * time.Hour, MinDropPercent: 10, Deadline: 2 * time.Hour},
		{Kind: "back_in_stock", Channel: "email", TemplateID: "bis", Lookback: 720 * time.Hour},
		{Kind: "price_drop", Channel: "email", TemplateID: "drop", Lookback: 24 * time.Hour, MinDropPercent: 25},
	}
	for _, tr := range put {
		if err := f.s.PutCatalogTrigger(ctx, "acme", tr); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.s.CatalogTriggers(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]CatalogTrigger{put[1], put[2]}, got); diff != "" {
		t.Errorf("triggers (-want +got):\n%s", diff)
	}
	if other, err := f.s.CatalogTriggers(ctx, "globex"); err != nil || len(other) != 0 {
		t.Errorf("another tenant's triggers: %v, %v; want none", other, err)
	}
	if err := f.s.DeleteCatalogTrigger(ctx, "globex", "price_drop"); !errors.Is(err, ErrNotFound) {
		t.Errorf("another tenant deletes: %v, want ErrNotFound", err)
	}
	if err := f.s.DeleteCatalogTrigger(ctx, "acme", "price_drop"); err != nil {
		t.Fatal(err)
	}
	if err := f.s.DeleteCatalogTrigger(ctx, "acme", "price_drop"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting again: %v, want ErrNotFound", err)
	}
}

// HandleCatalogChange takes each due change once, with its trigger and
// audience, and records what act made of it; a failed act is set back, to
// be retried later or parked, without an error.
func TestHandleCatalogChange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	change := func(tenant, item string) int64 {
		t.Helper()
		var id int64
		if err := f.db.QueryRow(ctx, `INSERT INTO catalog_changes (tenant_id, item_id, kind, old_price_cents, new_price_cents, catalog_version)
			VALUES ($1, $2, 'back_in_stock', 100, 100, 1) RETURNING id`, tenant, item).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	noSetback := func(_ context.Context, c CatalogChange, err error) Setback {
		t.Errorf("change %d set back: %v", c.ID, err)
		return Setback{Park: true}
	}
	take := func(after string, act func(context.Context, CatalogChange, []string) (*uuid.UUID, error),
		setback func(context.Context, CatalogChange, error) Setback) (CatalogChange, bool) {
		t.Helper()
		c, found, err := f.s.HandleCatalogChange(ctx, after, act, setback)
		if err != nil {
			t.Fatal(err)
		}
		return c, found
	}
	never := func(_ context.Context, c CatalogChange, _ []string) (*uuid.UUID, error) {
		t.Errorf("act called for change %d", c.ID)
		return nil, nil
	}
	if _, found := take("", never, noSetback); found {
		t.Fatal("a change found in an empty table")
	}

	handled := change("acme", "i1")
	job := uuid.New()
	c, found := take("", func(_ context.Context, c CatalogChange, audience []string) (*uuid.UUID, error) {
		if c.Trigger != nil || audience != nil {
			t.Errorf("change without a trigger acted on with trigger %v and audience %v", c.Trigger, audience)
		}
		return &job, nil
	}, noSetback)
	if !found || c.ID != handled || c.Tenant != "acme" || c.ItemID != "i1" || c.Kind != "back_in_stock" {
		t.Fatalf("took %+v (found %v), want change %d", c, found, handled)
	}
	if n := f.count(`SELECT count(*) FROM catalog_changes WHERE id = $1 AND handled_at IS NOT NULL AND job_id = $2`, handled, job); n != 1 {
		t.Errorf("change not marked handled with its job")
	}
	if _, found := take("", never, noSetback); found {
		t.Fatal("a handled change was taken again")
	}

	// Tenants take turns: after acme, globex's change comes first.
	acme2, globex := change("acme", "i2"), change("globex", "i1")
	boom := errors.New("boom")
	retryAt := time.Now().Add(time.Hour)
	c, _ = take("acme", func(context.Context, CatalogChange, []string) (*uuid.UUID, error) { return nil, boom },
		func(_ context.Context, c CatalogChange, err error) Setback {
			if !errors.Is(err, boom) || c.Attempts != 0 {
				t.Errorf("setback of %+v with %v", c, err)
			}
			return Setback{RetryAt: retryAt}
		})
	if c.ID != globex {
		t.Fatalf("after acme took change %d, want globex's %d", c.ID, globex)
	}
	if n := f.count(`SELECT count(*) FROM catalog_changes WHERE id = $1 AND attempts = 1 AND last_error = 'boom'
		AND retry_at IS NOT NULL AND parked_at IS NULL AND handled_at IS NULL`, globex); n != 1 {
		t.Errorf("the failed change was not set back for a retry")
	}
	// globex's is not due yet: from the first tenant on, acme's second
	// change is next; parked, it is taken no more.
	c, _ = take("", func(context.Context, CatalogChange, []string) (*uuid.UUID, error) { return nil, boom },
		func(context.Context, CatalogChange, error) Setback { return Setback{Park: true} })
	if c.ID != acme2 {
		t.Fatalf("took change %d, want acme's %d (globex's waits for its retry)", c.ID, acme2)
	}
	if n := f.count(`SELECT count(*) FROM catalog_changes WHERE id = $1 AND parked_at IS NOT NULL AND handled_at IS NULL`, acme2); n != 1 {
		t.Errorf("the change was not parked")
	}
	if _, found := take("", never, noSetback); found {
		t.Fatal("a parked or not yet due change was taken")
	}
}
