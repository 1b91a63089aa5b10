// Package onsite delivers onsite messages into each customer's inbox in
// PostgreSQL, from where the partner's site fetches them through the
// partner API. Storing is the send: idempotent by ledger key, so a retry
// can never show a message twice.
package onsite

import (
	"context"
	_ "embed"
	"encoding/json"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

//go:embed sql/store.sql
var storeSQL string

// Store is the onsite inbox as a provider.
type Store struct{ db *pgxpool.Pool }

// New returns the inbox on db.
func New(db *pgxpool.Pool) *Store { return &Store{db: db} }

// Name identifies the provider: the inbox is the only provider of its
// kind, so its name is the kind.
func (s *Store) Name() string { return event.ChannelOnsite.ProviderKind() }

// Idempotent is true: a message is stored once per key.
func (s *Store) Idempotent() bool { return true }

// Send stores msgs in one statement.
func (s *Store) Send(ctx context.Context, msgs []*provider.Message) []provider.Result {
	out := make([]provider.Result, len(msgs))
	n := len(msgs)
	tenants, customers, keys, jobs := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	payloads := make([]string, 0, n)
	expires := make([]any, 0, n)
	var index []int
	for i, m := range msgs {
		if !json.Valid(m.Body) {
			out[i] = provider.Result{Outcome: provider.Failed, Reason: "onsite payload is not JSON"}
			continue
		}
		tenants, customers, keys, jobs = append(tenants, m.Tenant), append(customers, m.CustomerID), append(keys, m.Key), append(jobs, m.JobID)
		payloads, expires = append(payloads, string(m.Body)), append(expires, m.ExpiresAt)
		index = append(index, i)
	}
	if len(index) == 0 {
		return out
	}
	res := provider.Result{Outcome: provider.Sent, Reason: "stored in the onsite inbox"}
	if _, err := s.db.Exec(ctx, storeSQL, pgx.StrictNamedArgs{
		"tenants": tenants, "customers": customers, "keys": keys,
		"jobs": jobs, "payloads": payloads, "expires": expires,
	}); err != nil {
		// Nothing was stored (one statement): retrying is safe.
		res = provider.Result{Outcome: provider.Deferred, Reason: "store onsite messages: " + err.Error()}
	}
	for _, i := range index {
		out[i] = res
	}
	return out
}
