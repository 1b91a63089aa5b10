package store

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"herald/devtools/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// awkward is text that COPY's text format and array literals must escape.
const awkward = "tab\there, new\nline, cr\r, back\\slash, \\N, \\., quote \" and 'apostrophe', {braces}, a,b, NULL, café 😀"

// Staged rows reach the tables exactly as they were given, whatever they
// hold, from memory and from the file a large upload spills to.
func TestStagedRowsLoadExactly(t *testing.T) {
	db := testenv.DB(t)
	s := New(db)
	ctx := context.Background()
	occurred := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond).Add(789 * time.Nanosecond)
	load := func(t *testing.T, d Dataset, rows [][]any) int64 {
		t.Helper()
		staged := NewStaging(d, t.TempDir())
		defer staged.Close()
		for _, row := range rows {
			if err := staged.Add(row...); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.Load(ctx, "acme", staged)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	query := func(t *testing.T, sql string) [][]any {
		t.Helper()
		rows, err := db.Query(ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	t.Run("customers", func(t *testing.T) {
		load(t, Customers, [][]any{
			{int64(1), "c1", "a@example.com", awkward, "", "en", "Europe/Paris", true, `{"email":true}`, `{"note":"` + "tab\\t and \\\\ and \\\"" + `","n":1.5}`},
			{int64(2), "c2", "b@example.com", "Bo", "\\", "fr-CA", "UTC", false, `{}`, `{}`},
		})
		got := query(t, `SELECT id, first_name, last_name, subscribed, consent->>'email', attributes->>'note', (attributes->>'n')::float8 FROM customers ORDER BY id`)
		want := [][]any{{"c1", awkward, "", true, "true", "tab\t and \\ and \"", 1.5}, {"c2", "Bo", "\\", false, nil, nil, nil}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("customers (-want +got):\n%s", diff)
		}
	})
	t.Run("catalog items", func(t *testing.T) {
		load(t, CatalogItems, [][]any{
			{int64(1), "i1", awkward, "B", "https://s.example/i1", "", int64(1 << 40), int64(0), "EUR", true, int64(-1), float32(4.7), int32(12),
				[]string{"NULL", "", "a,b", "{x}", `q"uote`, `back\slash`, "tab\tnew\nline", " padded "}},
			{int64(2), "i2", "T", "", "https://s.example/i2", "", int64(0), int64(5), "USD", false, int64(0), float32(1e-7), int32(0), []string{}},
		})
		got := query(t, `SELECT id, title, price_cents, in_stock, rating, reviews, categories FROM catalog_items ORDER BY id`)
		want := [][]any{
			{"i1", awkward, int64(1 << 40), true, float32(4.7), int32(12), []any{"NULL", "", "a,b", "{x}", `q"uote`, `back\slash`, "tab\tnew\nline", " padded "}},
			{"i2", "T", int64(0), false, float32(1e-7), int32(0), []any{}},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("catalog items (-want +got):\n%s", diff)
		}
	})
	t.Run("recommendations", func(t *testing.T) {
		load(t, Recommendations, [][]any{
			{int64(1), "c1", []string{"i2", "i1"}, []float32{0.25, 1e-20}, "m\\1"},
			{int64(2), "c2", []string{}, []float32{}, ""},
		})
		got := query(t, `SELECT customer_id, item_ids, scores, model_version FROM recommendations ORDER BY customer_id`)
		want := [][]any{{"c1", []any{"i2", "i1"}, []any{float32(0.25), float32(1e-20)}, "m\\1"}, {"c2", []any{}, []any{}, ""}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("recommendations (-want +got):\n%s", diff)
		}
	})
	t.Run("events", func(t *testing.T) {
		load(t, Events, [][]any{{int64(1), "c1", "purchase", "i1", int32(3), occurred}})
		got := query(t, `SELECT customer_id, quantity, occurred_at FROM events`)
		want := [][]any{{"c1", int32(3), occurred.Truncate(time.Microsecond)}}
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Fatalf("events (-want +got):\n%s", diff)
		}
	})
	t.Run("a large upload spills to a file", func(t *testing.T) {
		const n = 30_000 // well over stagingMemory
		dir := t.TempDir()
		staged := NewStaging(Suppressions, dir)
		defer staged.Close()
		for i := range n {
			if err := staged.Add(int64(i+1), fmt.Sprintf("s%06d@example.com", i), awkward); err != nil {
				t.Fatal(err)
			}
		}
		if staged.file == nil {
			t.Fatalf("%d rows were kept in memory", n)
		}
		if left, _ := os.ReadDir(dir); len(left) != 0 {
			t.Errorf("the staging file is visible in %s: %v", dir, left)
		}
		merged, err := s.Load(ctx, "acme", staged)
		if err != nil {
			t.Fatal(err)
		}
		var count int
		var reasons int
		if err := db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE reason = $1) FROM suppressions`, awkward).Scan(&count, &reasons); err != nil {
			t.Fatal(err)
		}
		if merged != n || count != n || reasons != n {
			t.Fatalf("merged %d, stored %d (%d with the reason intact), want %d", merged, count, reasons, n)
		}
	})
}
