// Package ledger is dispatch's view of the delivery ledger: exactly one row
// per (tenant, job, channel, customer), claimed before the provider is
// called and recorded after it answers. A batch is worked under a
// PostgreSQL advisory lock held on its own connection, so two copies of the
// same Pub/Sub message never work at once, and the lock vanishes with the
// connection if the process dies — its successor can tell "an earlier
// attempt of this very batch was interrupted" from "another batch owns it".
package ledger

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/shared/event"
)

var (
	//go:embed sql/claim.sql
	claimSQL string
	//go:embed sql/retry.sql
	retrySQL string
	//go:embed sql/record.sql
	recordSQL string
	//go:embed sql/finish_batch.sql
	finishBatchSQL string
	//go:embed sql/suppress.sql
	suppressSQL string
	//go:embed sql/tenant.sql
	tenantSQL string
	//go:embed sql/lock.sql
	lockSQL string
	//go:embed sql/unlock.sql
	unlockSQL string
	//go:embed sql/job_state.sql
	jobStateSQL string
	//go:embed sql/park.sql
	parkSQL string
	//go:embed sql/lock_addresses.sql
	lockAddressesSQL string
	//go:embed sql/unlock_addresses.sql
	unlockAddressesSQL string
)

// States of a ledger row.
const (
	Sending    = "sending"
	Deferred   = "deferred"
	Sent       = "sent"
	Failed     = "failed"
	Suppressed = "suppressed"
	Expired    = "expired"
	Ambiguous  = "ambiguous"
	Capped     = "capped"
	Skipped    = "skipped"
)

// Final reports whether a row in state s is done.
func Final(s string) bool { return s != Sending && s != Deferred }

// progressShards spreads a job's counter updates over this many rows.
const progressShards = 8

// Batch identifies the batch being worked.
type Batch struct {
	Tenant      string
	Job         event.JobID
	Channel     event.Channel
	SubmittedAt time.Time
	Deadline    time.Time
	Seq         int64
	// Quiet is the job's quiet hours, nil for none.
	Quiet *Quiet
}

// Quiet hours: minutes after local midnight, and "hold" or "skip".
type Quiet struct {
	StartMinute int
	EndMinute   int
	Mode        string
}

func (b Batch) quiet() (start, end int, mode string) {
	if b.Quiet == nil {
		return -1, -1, ""
	}
	return b.Quiet.StartMinute, b.Quiet.EndMinute, b.Quiet.Mode
}

// Ledger is the ledger on a pool.
type Ledger struct{ db *pgxpool.Pool }

// New returns the ledger on db.
func New(db *pgxpool.Pool) *Ledger { return &Ledger{db: db} }

// Held is a batch whose lock this process holds.
type Held struct {
	conn  *pgxpool.Conn
	key   int64
	b     Batch
	shard int16
	// broken means the session may hold locks it should not: Release
	// closes it instead of returning it to the pool.
	broken bool
}

// Lock waits for b's lock and returns it held. The caller must Release it.
func (l *Ledger) Lock(ctx context.Context, b Batch) (*Held, error) {
	conn, err := l.db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection: %w", err)
	}
	key := event.BatchKey{Job: b.Job, Seq: b.Seq, Channel: b.Channel}.LockKey()
	h := &Held{conn: conn, key: key, b: b, shard: int16(b.Seq % progressShards)}
	// Every ledger statement looks rows up by key. The newest ledger
	// partition usually has no statistics yet, and with none the planner
	// hash-joins a chunk against all of its job's rows: quadratic in the
	// job's size. Held connections therefore plan nested loops only.
	if _, err := conn.Exec(ctx, lockSQL, h.key); err != nil {
		// The lock may or may not have been taken; only closing the
		// connection is sure to drop it.
		_ = conn.Hijack().Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("lock batch: %w", err)
	}
	return h, nil
}

// Release drops the lock and returns the connection.
func (h *Held) Release(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	if h.broken {
		_ = h.conn.Hijack().Close(ctx)
		return
	}
	if _, err := h.conn.Exec(ctx, unlockSQL, h.key); err != nil {
		_ = h.conn.Hijack().Close(ctx)
		return
	}
	h.conn.Release()
}

// Item is one recipient of the batch as render produced it.
type Item struct {
	CustomerID  string
	Email       string
	MessageID   string
	RenderError string
	// SkipReason is set when the job's picking rules chose not to message
	// the recipient.
	SkipReason string
	// Provenance answers "why did this customer get this message".
	Strategy        string
	ModelVersion    string
	CatalogVersion  int64
	TemplateVersion int32
}

// Claim is a recipient's ledger state after claiming. Fresh rows were
// created by this claim; others were left by an earlier attempt of this
// batch. Recipients whose rows belong to another batch are not returned.
type Claim struct {
	CustomerID string
	State      string
	Fresh      bool
	// Provider is the provider the row was handed to ("" if none yet).
	Provider string
	// NotBefore, for a row deferred to the recipient's quiet hours, is
	// when it may be sent.
	NotBefore *time.Time
}

// Claim claims items for provider (see sql/claim.sql).
func (h *Held) Claim(ctx context.Context, items []Item, provider string) ([]Claim, error) {
	n := len(items)
	ids, emails, msgIDs, errs, skips := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	strategies, models := make([]string, n), make([]string, n)
	catalogs, templates := make([]int64, n), make([]int32, n)
	for i, it := range items {
		ids[i], emails[i], msgIDs[i], errs[i], skips[i] = it.CustomerID, it.Email, it.MessageID, it.RenderError, it.SkipReason
		strategies[i], models[i], catalogs[i], templates[i] = it.Strategy, it.ModelVersion, it.CatalogVersion, it.TemplateVersion
	}
	args := h.args(h.deciding())
	args["customer_ids"], args["emails"], args["message_ids"], args["render_errors"], args["skip_reasons"] = ids, emails, msgIDs, errs, skips
	args["strategies"], args["model_versions"], args["catalog_versions"], args["template_versions"] = strategies, models, catalogs, templates
	args["provider"] = provider
	rows, _ := h.conn.Query(ctx, claimSQL, args)
	claims, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Claim, error) {
		var c Claim
		err := r.Scan(&c.CustomerID, &c.State, &c.Fresh, &c.Provider, &c.NotBefore)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return claims, nil
}

// args are the named parameters that say which batch a statement is
// about (@tenant, @job, @channel, @submitted_at, @seq), with the
// statement's own. They are strict both ways: a name the statement lacks
// or does not use is an error, never a NULL.
func (h *Held) args(own pgx.StrictNamedArgs) pgx.StrictNamedArgs {
	a := pgx.StrictNamedArgs{
		"tenant": h.b.Tenant, "job": h.b.Job, "channel": h.b.Channel, "submitted_at": h.b.SubmittedAt, "seq": h.b.Seq,
	}
	maps.Copy(a, own)
	return a
}

// deciding are the parameters of the statements that decide who may be
// sent to now (claim and retry): the deadline, the progress shard and the
// job's quiet hours.
func (h *Held) deciding() pgx.StrictNamedArgs {
	start, end, mode := h.b.quiet()
	return pgx.StrictNamedArgs{
		"deadline": h.b.Deadline, "shard": h.shard, "quiet_start": start, "quiet_end": end, "quiet_mode": mode,
	}
}

// Retried is a deferred row after Retry.
type Retried struct {
	State string
	// NotBefore is set while the row is held for quiet hours.
	NotBefore *time.Time
}

// Retry decides this batch's deferred rows among ids again (see
// sql/retry.sql) and returns their states; rows it leaves alone (the job is
// not active) are missing.
func (h *Held) Retry(ctx context.Context, ids []string, provider string) (map[string]Retried, error) {
	args := h.args(h.deciding())
	args["customer_ids"], args["provider"] = ids, provider
	rows, _ := h.conn.Query(ctx, retrySQL, args)
	out := map[string]Retried{}
	var id string
	var r Retried
	_, err := pgx.ForEachRow(rows, []any{&id, &r.State, &r.NotBefore}, func() error {
		out[id] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("retry deferred deliveries: %w", err)
	}
	return out, nil
}

// Outcome is what became of one recipient held in sending.
type Outcome struct {
	CustomerID string
	State      string // Sent, Failed, Deferred or Ambiguous
	Reason     string
	// Suppress, set on a hard bounce, is the address to suppress.
	Suppress string
}

// Record stores outcomes and advances the job's progress.
func (h *Held) Record(ctx context.Context, outcomes []Outcome) error {
	if len(outcomes) == 0 {
		return nil
	}
	ids := make([]string, len(outcomes))
	states := make([]string, len(outcomes))
	reasons := make([]string, len(outcomes))
	for i, o := range outcomes {
		ids[i], states[i], reasons[i] = o.CustomerID, o.State, o.Reason
	}
	args := h.args(pgx.StrictNamedArgs{"shard": h.shard, "customer_ids": ids, "states": states, "reasons": reasons})
	if _, err := h.conn.Exec(ctx, recordSQL, args); err != nil {
		return fmt.Errorf("record outcomes: %w", err)
	}
	var emails, why []string
	for _, o := range outcomes {
		if o.Suppress != "" {
			emails = append(emails, o.Suppress)
			why = append(why, "hard bounce: "+o.Reason)
		}
	}
	if len(emails) > 0 {
		if _, err := h.conn.Exec(ctx, suppressSQL, h.b.Tenant, emails, why); err != nil {
			return fmt.Errorf("suppress hard bounces: %w", err)
		}
	}
	return nil
}

// Finish marks the batch done in the job's plan if all its recipients are
// final, so it is never published again.
func (h *Held) Finish(ctx context.Context) error {
	if _, err := h.conn.Exec(ctx, finishBatchSQL, h.args(nil)); err != nil {
		return fmt.Errorf("finish batch: %w", err)
	}
	return nil
}

// Tenant is a tenant's dispatch settings.
type Tenant struct {
	// Rate is its send rate per second, 0 if unlimited.
	Rate float64
	// Providers lists, per channel, the kinds of provider it sends through
	// in order of preference; a channel it does not name uses dispatch's.
	Providers map[event.Channel][]string
}

// Tenant returns the tenant's dispatch settings; a tenant without a row has
// the defaults.
func (l *Ledger) Tenant(ctx context.Context, tenant string) (Tenant, error) {
	var t Tenant
	var rate *float64
	err := l.db.QueryRow(ctx, tenantSQL, tenant).Scan(&rate, &t.Providers)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("read tenant %s: %w", tenant, err)
	}
	if rate != nil {
		t.Rate = *rate
	}
	return t, nil
}

// JobState says whether the batch's job may send: "active", "paused" or
// "cancelled" (see the claim, which re-checks it for every chunk).
func (h *Held) JobState(ctx context.Context) (string, error) {
	var state string
	if err := h.conn.QueryRow(ctx, jobStateSQL, h.b.Tenant, h.b.Job).Scan(&state); err != nil {
		return "", fmt.Errorf("read job state: %w", err)
	}
	return state, nil
}

// LockAddresses marks sends to emails as under way until UnlockAddresses
// (see sql/lock_addresses.sql). Call it before claiming them.
func (h *Held) LockAddresses(ctx context.Context, emails []string) error {
	if _, err := h.conn.Exec(ctx, lockAddressesSQL, h.b.Tenant, emails); err != nil {
		return fmt.Errorf("lock addresses: %w", err)
	}
	return nil
}

// UnlockAddresses ends what LockAddresses began. If it fails, the
// connection is closed on Release, which drops the locks with it.
func (h *Held) UnlockAddresses(ctx context.Context, emails []string) error {
	if _, err := h.conn.Exec(context.WithoutCancel(ctx), unlockAddressesSQL, h.b.Tenant, emails); err != nil {
		h.broken = true
		return fmt.Errorf("unlock addresses: %w", err)
	}
	return nil
}

// Park sets the batch aside while only retries are left in it, so it does
// not hold a place in the window of batches in flight. If resume is set,
// the releaser publishes the batch again at that time (recipients held for
// their quiet hours).
func (h *Held) Park(ctx context.Context, resume *time.Time) error {
	if _, err := h.conn.Exec(ctx, parkSQL, h.b.Tenant, h.b.Job, h.b.Seq, resume); err != nil {
		return fmt.Errorf("park batch: %w", err)
	}
	return nil
}
