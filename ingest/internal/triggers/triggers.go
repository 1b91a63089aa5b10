// Package triggers turns catalog changes into jobs: when an item comes back
// in stock or drops in price, the customers who viewed or carted it (and
// have not bought it since) get a message about that item, through the
// tenant's catalog trigger of that kind. PostgreSQL records the changes as
// the catalog is written (catalog_changes); this package works them off.
package triggers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/protobuf/encoding/protojson"

	"herald/ingest/internal/store"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

// Config sets how often changes are looked for and how large a job gets.
type Config struct {
	// Poll is how often the worker looks for changes when it found none.
	Poll time.Duration
	// MaxAudience is the most recipients of one job; a larger audience is
	// split over several jobs.
	MaxAudience int
	// Attempts is how often acting on a change may fail before it is
	// parked; an error that will recur parks it at once.
	Attempts int
}

// maxRetryDelay bounds the wait before a failed change is taken again.
const maxRetryDelay = 10 * time.Minute

// Worker creates the jobs of catalog changes.
type Worker struct {
	store    *store.Store
	log      *slog.Logger
	cfg      Config
	now      func() time.Time
	outcomes *prometheus.CounterVec
}

// New returns a worker.
func New(s *store.Store, log *slog.Logger, reg prometheus.Registerer, cfg Config) *Worker {
	return &Worker{store: s, log: log, cfg: cfg, now: time.Now,
		outcomes: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "herald_catalog_changes_total",
			Help: "Catalog changes acted on, by kind and outcome (job, no_trigger, no_audience, template_missing, retried, parked).",
		}, []string{"kind", "outcome"}),
	}
}

// Run works changes off until ctx ends; a change in hand finishes under
// workCtx.
func (w *Worker) Run(ctx, workCtx context.Context) error {
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	for {
		if err := w.Drain(workCtx); err != nil {
			w.log.ErrorContext(ctx, "catalog triggers", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Drain acts on every change that is due, taking the tenants in turn: the
// oldest change of each, then the next of each, and so on. So neither one
// tenant's backlog nor a change that fails holds up another tenant's; a
// failed change waits for its retry or is parked (see setback).
func (w *Worker) Drain(ctx context.Context) error {
	after := ""
	for ctx.Err() == nil {
		c, found, err := w.store.HandleCatalogChange(ctx, after, w.act, w.setback)
		switch {
		case err != nil:
			return err
		case found:
			after = c.Tenant
		case after == "":
			return nil // nothing due at all
		default:
			after = "" // past the last tenant: the next round
		}
	}
	return nil
}

// setback logs why acting on c failed and what becomes of it.
func (w *Worker) setback(ctx context.Context, c store.CatalogChange, err error) store.Setback {
	sb := setback(c.Attempts+1, err, w.now(), w.cfg)
	log := w.log.With("tenant_id", c.Tenant, "catalog_change", c.ID, "item_id", c.ItemID, "kind", c.Kind,
		"attempts", c.Attempts+1, "error", err)
	if sb.Park {
		log.ErrorContext(ctx, "catalog change parked: no job for it until an operator clears parked_at")
		w.outcomes.WithLabelValues(c.Kind, "parked").Inc()
	} else {
		log.WarnContext(ctx, "catalog change failed, will be retried", "retry_at", sb.RetryAt)
		w.outcomes.WithLabelValues(c.Kind, "retried").Inc()
	}
	return sb
}

// setback decides what becomes of a change whose attempts-th attempt
// failed with err: parked if err will recur or attempts reach cfg.Attempts,
// otherwise retried after a wait that doubles from cfg.Poll with every
// attempt, up to maxRetryDelay.
func setback(attempts int, err error, now time.Time, cfg Config) store.Setback {
	if recurs(err) || attempts >= cfg.Attempts {
		return store.Setback{Park: true}
	}
	return store.Setback{RetryAt: now.Add(min(cfg.Poll<<min(attempts-1, 16), maxRetryDelay))}
}

// recurs reports whether err will come again however often the change is
// retried: PostgreSQL refusing the data (class 22, data exception) or the
// row (class 23, integrity constraint violation) the change makes.
func recurs(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	class := pgErr.Code[:min(2, len(pgErr.Code))]
	return class == "22" || class == "23"
}

// act creates the change's job (several, for an audience over MaxAudience)
// and returns the first one's id. Each job's idempotency key is the
// change's, so acting on a change again makes no second job; it has spaces,
// which no partner's key has, so no partner's job can hold it.
func (w *Worker) act(ctx context.Context, c store.CatalogChange, audience []string) (*uuid.UUID, error) {
	log := w.log.With("tenant_id", c.Tenant, "catalog_change", c.ID, "item_id", c.ItemID, "kind", c.Kind)
	switch {
	case c.Trigger == nil:
		w.outcomes.WithLabelValues(c.Kind, "no_trigger").Inc()
		return nil, nil
	case len(audience) == 0:
		w.outcomes.WithLabelValues(c.Kind, "no_audience").Inc()
		return nil, nil
	}
	tr := c.Trigger
	picking, err := protojson.Marshal(&eventv1.Picking{
		Strategies: []*eventv1.Strategy{{Name: c.Kind, LookbackHours: int32(tr.Lookback.Hours())}},
		ItemIds:    []string{c.ItemID},
		OnShort:    event.OnShortSkip, // the item went again: nothing to say
	})
	if err != nil {
		return nil, err
	}
	now := w.now().UTC()
	due := tr.Deadline
	if due == 0 {
		if due, err = w.store.DefaultDeadline(ctx, c.Tenant); err != nil {
			return nil, err
		}
	}
	var first *uuid.UUID
	for part := 0; part*w.cfg.MaxAudience < len(audience); part++ {
		ids := audience[part*w.cfg.MaxAudience : min((part+1)*w.cfg.MaxAudience, len(audience))]
		key := "catalog change " + strconv.FormatInt(c.ID, 10)
		if part > 0 {
			key += " part " + strconv.Itoa(part)
		}
		hash := sha256.Sum256([]byte(key))
		acc, err := w.store.CreateJob(ctx, c.Tenant, store.NewJob{
			Origin: store.OriginCatalogChange, IdempotencyKey: key, RequestHash: hash[:], Channel: tr.Channel,
			TemplateID: tr.TemplateID, TemplateVersion: tr.TemplateVersion,
			Audience:           store.Audience{CustomerIDs: ids},
			ProductsPerMessage: 1, Picking: picking, Campaign: c.Kind,
			SubmittedAt: now, Deadline: now.Add(due),
		}, func(j store.JobStatus) ([]byte, error) {
			return json.Marshal(map[string]string{"id": j.ID.String(), "catalog_change": strconv.FormatInt(c.ID, 10)})
		})
		if errors.Is(err, store.ErrUnknownTemplate) {
			// The trigger names a template that is gone: say so, and do not
			// hold up the changes behind this one.
			log.ErrorContext(ctx, "catalog trigger's template does not exist: no job for this change",
				"template_id", tr.TemplateID, "template_version", tr.TemplateVersion)
			w.outcomes.WithLabelValues(c.Kind, "template_missing").Inc()
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("job of catalog change %d: %w", c.ID, err)
		}
		if first == nil {
			first = &acc.ID
		}
		if !acc.Replayed {
			log.InfoContext(ctx, "catalog change job accepted", "job_id", acc.ID, "recipients", len(ids))
		}
	}
	w.outcomes.WithLabelValues(c.Kind, "job").Inc()
	return first, nil
}
