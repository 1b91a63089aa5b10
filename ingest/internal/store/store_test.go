package store

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"herald/devtools/testenv"
)

// fixture is a Store on a database of its own, with helpers that put the
// data a test needs in place through the Store itself.
type fixture struct {
	t  *testing.T
	s  *Store
	db *pgxpool.Pool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := testenv.DB(t)
	return &fixture{t: t, s: New(db), db: db}
}

// template adds a version of template id for tenant and returns it.
func (f *fixture) template(tenant, id string) Template {
	f.t.Helper()
	tmpl, err := f.s.AddTemplate(context.Background(), tenant, Template{ID: id, FromEmail: "deals@acme.example", Subject: "Hi", HTML: "<p>Hi</p>"})
	if err != nil {
		f.t.Fatal(err)
	}
	return tmpl
}

// load stages rows of d for tenant and loads them.
func (f *fixture) load(tenant string, d Dataset, rows ...[]any) {
	f.t.Helper()
	staged := NewStaging(d, f.t.TempDir())
	defer staged.Close()
	for _, row := range rows {
		if err := staged.Add(row...); err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := f.s.Load(context.Background(), tenant, staged); err != nil {
		f.t.Fatal(err)
	}
}

// customers loads subscribed customers of tenant with these ids.
func (f *fixture) customers(tenant string, ids ...string) {
	f.t.Helper()
	rows := make([][]any, len(ids))
	for i, id := range ids {
		rows[i] = []any{int64(i + 1), id, id + "@example.com", "", "", "en", "UTC", true, `{}`, `{}`}
	}
	f.load(tenant, Customers, rows...)
}

// count runs a count(*) query.
func (f *fixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.db.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// exec runs a statement that sets up or inspects what a test needs.
func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.db.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// testNow is the real now, to the microsecond PostgreSQL keeps: jobs are
// submitted at it, so the database's now() and the store's checks agree
// about which deadlines have passed.
func testNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
