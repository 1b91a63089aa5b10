// Package deliver works off dispatch batches: for each chunk of recipients
// it claims the ledger rows (re-checking suppression and the deadline in
// the same statement), sends what it claimed through the provider, records
// every answer, and only then lets the message be acked. A batch whose
// earlier attempt was interrupted is finished, not redone: rows already
// sent are skipped, and rows whose send may have reached the provider are
// reconciled with it rather than sent again.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/dispatch/internal/ledger"
	"herald/dispatch/internal/provider"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

// Config tunes delivery.
type Config struct {
	// Chunk is how many recipients are claimed at a time. It bounds how
	// many sends can be left in doubt when a process dies.
	Chunk int
}

// Dispatcher handles dispatch batches.
type Dispatcher struct {
	ledger    *ledger.Ledger
	send      provider.Sender
	reconcile provider.Reconciler
	log       *slog.Logger
	cfg       Config
	now       func() time.Time
	outcomes  *prometheus.CounterVec
	latency   prometheus.Histogram
	sendTime  prometheus.Histogram
}

// New returns a dispatcher. reconcile may be nil.
func New(l *ledger.Ledger, send provider.Sender, reconcile provider.Reconciler, log *slog.Logger, reg prometheus.Registerer, cfg Config) *Dispatcher {
	f := promauto.With(reg)
	return &Dispatcher{
		ledger: l, send: send, reconcile: reconcile, log: log, cfg: cfg, now: time.Now,
		outcomes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_dispatch_outcomes_total",
			Help: "Recipients by the state dispatch recorded for them.",
		}, []string{"state"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_delivery_latency_seconds",
			Help:    "Time from job submission to the provider accepting the message (the SLA histogram).",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800},
		}),
		sendTime: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_dispatch_send_duration_seconds",
			Help:    "Provider time per message, averaged over each batch of sends.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
}

// errPending nacks a batch that still has deferred recipients, so Pub/Sub
// redelivers it after its retry backoff.
var errPending = errors.New("batch has deferred recipients")

// Handle delivers one batch; nil means every recipient this batch owns has
// a final outcome in the ledger.
func (d *Dispatcher) Handle(ctx context.Context, m *pubsub.Message) error {
	var in eventv1.DispatchBatch
	if err := event.Decode(m.Data, m.Attributes, &in); err != nil {
		return err
	}
	job := in.GetJob()
	jobID, err := uuid.Parse(job.JobId)
	if err != nil {
		return fmt.Errorf("%w: job id %q", event.ErrMalformed, job.JobId)
	}
	b := ledger.Batch{Tenant: job.TenantId, Job: jobID, Channel: job.Channel,
		SubmittedAt: job.SubmittedAt.AsTime(), Deadline: job.Deadline.AsTime(), Seq: job.Seq}
	held, err := d.ledger.Lock(ctx, b)
	if err != nil {
		return err
	}
	defer held.Release(ctx)
	pending := false
	for start := 0; start < len(in.Messages); start += d.cfg.Chunk {
		chunk := in.Messages[start:min(start+d.cfg.Chunk, len(in.Messages))]
		done, err := d.chunk(ctx, held, &in, chunk)
		if err != nil {
			return err
		}
		pending = pending || !done
	}
	if pending {
		return errPending
	}
	return held.Finish(ctx)
}

// chunk claims, sends and records one chunk; it reports whether every
// recipient of the chunk that this batch owns is final.
func (d *Dispatcher) chunk(ctx context.Context, held *ledger.Held, in *eventv1.DispatchBatch, chunk []*eventv1.Rendered) (bool, error) {
	items := make([]ledger.Item, len(chunk))
	byID := make(map[string]*eventv1.Rendered, len(chunk))
	for i, r := range chunk {
		items[i] = ledger.Item{CustomerID: r.CustomerId, Email: r.Email, MessageID: r.MessageId, RenderError: r.Error}
		byID[r.CustomerId] = r
	}
	claims, err := held.Claim(ctx, items)
	if err != nil {
		return false, err
	}
	var send, interrupted []*eventv1.Rendered
	var deferred []string
	for _, c := range claims {
		r := byID[c.CustomerID]
		switch {
		case c.State == ledger.Sending && c.Fresh:
			send = append(send, r)
		case c.State == ledger.Sending:
			interrupted = append(interrupted, r)
		case c.State == ledger.Deferred:
			deferred = append(deferred, c.CustomerID)
		case c.Fresh:
			d.outcomes.WithLabelValues(c.State).Inc()
		}
	}
	var outcomes []ledger.Outcome
	done := true
	if len(interrupted) > 0 {
		again, settled, ok := d.settle(ctx, interrupted, "an earlier attempt was interrupted")
		send = append(send, again...)
		outcomes = append(outcomes, settled...)
		done = done && ok
	}
	if len(deferred) > 0 {
		states, err := held.Retry(ctx, deferred)
		if err != nil {
			return false, err
		}
		for id, s := range states {
			if s == ledger.Sending {
				send = append(send, byID[id])
			} else {
				d.outcomes.WithLabelValues(s).Inc()
			}
		}
	}
	sent, ok := d.sendAll(ctx, in, send)
	outcomes = append(outcomes, sent...)
	done = done && ok
	if err := held.Record(ctx, outcomes); err != nil {
		return false, err
	}
	for _, o := range outcomes {
		d.outcomes.WithLabelValues(o.State).Inc()
		if o.State == ledger.Sent {
			d.latency.Observe(d.now().Sub(in.Job.SubmittedAt.AsTime()).Seconds())
		}
		if o.State == ledger.Deferred {
			done = false
		}
	}
	return done, nil
}

// settle decides recipients whose send may have reached the provider: with
// a reconciler, the ones the provider has are sent and the rest may be sent
// again; without one they are ambiguous — counted, never re-sent blindly.
// If the provider cannot be asked right now, nothing is decided: the rows
// stay in sending, ok is false, and a later attempt asks again.
func (d *Dispatcher) settle(ctx context.Context, rs []*eventv1.Rendered, why string) (again []*eventv1.Rendered, outcomes []ledger.Outcome, ok bool) {
	if d.reconcile == nil {
		for _, r := range rs {
			outcomes = append(outcomes, ledger.Outcome{CustomerID: r.CustomerId, State: ledger.Ambiguous,
				Reason: why + "; the provider cannot be asked whether it accepted the message"})
		}
		return nil, outcomes, true
	}
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.MessageId
	}
	found, err := d.reconcile.Found(ctx, ids)
	if err != nil {
		d.log.WarnContext(ctx, "reconcile with provider", "error", err)
		return nil, nil, false
	}
	for _, r := range rs {
		if found[r.MessageId] {
			outcomes = append(outcomes, ledger.Outcome{CustomerID: r.CustomerId, State: ledger.Sent,
				Reason: why + "; the provider confirmed it has the message"})
		} else {
			again = append(again, r)
		}
	}
	return again, outcomes, true
}

// sendAll sends rs through the provider and returns the outcomes it could
// decide; ok is false if some sends stay in doubt.
func (d *Dispatcher) sendAll(ctx context.Context, in *eventv1.DispatchBatch, rs []*eventv1.Rendered) ([]ledger.Outcome, bool) {
	if len(rs) == 0 {
		return nil, true
	}
	job := in.GetJob()
	msgs := make([]*provider.Message, len(rs))
	for i, r := range rs {
		msgs[i] = &provider.Message{
			Key:       job.TenantId + "/" + job.JobId + "/" + job.Channel + "/" + r.CustomerId,
			MessageID: r.MessageId, From: in.From, To: r.Email, Body: r.Mime,
		}
	}
	start := d.now()
	results := d.send.Send(ctx, msgs)
	d.sendTime.Observe(d.now().Sub(start).Seconds() / float64(len(rs)))
	outcomes := make([]ledger.Outcome, 0, len(rs))
	var doubtful []*eventv1.Rendered
	for i, res := range results {
		r := rs[i]
		o := ledger.Outcome{CustomerID: r.CustomerId, Reason: res.Reason}
		switch res.Outcome {
		case provider.Sent:
			o.State = ledger.Sent
		case provider.Failed:
			o.State = ledger.Failed
			if res.HardBounce {
				o.Suppress = r.Email
			}
		case provider.Deferred, provider.Throttled:
			o.State = ledger.Deferred
		case provider.Unknown:
			if d.send.Idempotent() {
				// The provider drops a repeat of the same key: retrying is safe.
				o.State = ledger.Deferred
			} else {
				doubtful = append(doubtful, r)
				continue
			}
		}
		outcomes = append(outcomes, o)
	}
	if len(doubtful) == 0 {
		return outcomes, true
	}
	again, settled, ok := d.settle(ctx, doubtful, "no reply after the message was sent")
	outcomes = append(outcomes, settled...)
	for _, r := range again {
		// The provider does not have it, so sending it again is safe.
		outcomes = append(outcomes, ledger.Outcome{CustomerID: r.CustomerId, State: ledger.Deferred,
			Reason: "no reply after the message was sent; the provider does not have it"})
	}
	return outcomes, ok
}
