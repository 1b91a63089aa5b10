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
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/dispatch/internal/ledger"
	"herald/dispatch/internal/mailbox"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/ratelimit"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

// Config tunes delivery.
type Config struct {
	// Chunk is how many recipients are claimed at a time. It bounds how
	// many sends can be left in doubt when a process dies.
	Chunk int
	// MaxWait is how long recipients wait for their receiver's rate before
	// they are deferred, so that one slow receiver does not hold the
	// batch's other recipients (or other batches) back.
	MaxWait time.Duration
	// TenantRateTTL is how long a tenant's configured rate is cached.
	TenantRateTTL time.Duration
}

// Limits is the shared rate limiter (ratelimit.Limiter in production).
type Limits interface {
	Known(bucket string) bool
	Ensure(ctx context.Context, buckets ...ratelimit.Bucket) error
	Take(ctx context.Context, buckets []string, n int, maxWait time.Duration) (int, error)
	Throttled(ctx context.Context, bucket string) error
}

// Dispatcher handles dispatch batches.
type Dispatcher struct {
	ledger    *ledger.Ledger
	send      provider.Sender
	reconcile provider.Reconciler
	limits    Limits
	receivers *mailbox.Classifier
	tenants   *tenantRates
	log       *slog.Logger
	cfg       Config
	now       func() time.Time
	outcomes  *prometheus.CounterVec
	latency   prometheus.Histogram
	sendTime  prometheus.Histogram
}

// New returns a dispatcher. reconcile may be nil.
func New(l *ledger.Ledger, send provider.Sender, reconcile provider.Reconciler, limits Limits, receivers *mailbox.Classifier,
	log *slog.Logger, reg prometheus.Registerer, cfg Config) *Dispatcher {
	f := promauto.With(reg)
	return &Dispatcher{
		ledger: l, send: send, reconcile: reconcile, limits: limits, receivers: receivers,
		tenants: &tenantRates{ttl: cfg.TenantRateTTL, seen: map[string]time.Time{}},
		log:     log, cfg: cfg, now: time.Now,
		outcomes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_dispatch_outcomes_total",
			Help: "Recipients by the state dispatch recorded for them and their receiving mailbox provider.",
		}, []string{"state", "receiver"}),
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
	if err := d.tenantLimit(ctx, b.Tenant); err != nil {
		return err
	}
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
			d.outcomes.WithLabelValues(c.State, d.receivers.Of(r.Email)).Inc()
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
				d.outcomes.WithLabelValues(s, d.receivers.Of(byID[id].Email)).Inc()
			}
		}
	}
	sent, ok, err := d.sendByReceiver(ctx, in, send)
	if err != nil {
		return false, err
	}
	outcomes = append(outcomes, sent...)
	done = done && ok
	if err := held.Record(ctx, outcomes); err != nil {
		return false, err
	}
	for _, o := range outcomes {
		d.outcomes.WithLabelValues(o.State, d.receivers.Of(byID[o.CustomerID].Email)).Inc()
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

// sendByReceiver sends rs grouped by receiving mailbox provider, each group
// paced by its buckets (tenant, provider account, receiver) and all groups at
// once. Recipients whose receiver has no tokens within MaxWait are deferred
// without being sent, so a receiver that slowed us down holds back only its
// own recipients.
func (d *Dispatcher) sendByReceiver(ctx context.Context, in *eventv1.DispatchBatch, rs []*eventv1.Rendered) ([]ledger.Outcome, bool, error) {
	groups := map[string][]*eventv1.Rendered{}
	for _, r := range rs {
		recv := d.receivers.Of(r.Email)
		groups[recv] = append(groups[recv], r)
	}
	type result struct {
		outcomes []ledger.Outcome
		ok       bool
		err      error
	}
	results := make(chan result, len(groups))
	for recv, group := range groups {
		go func() {
			outcomes, ok, err := d.sendGroup(ctx, in, recv, group)
			results <- result{outcomes, ok, err}
		}()
	}
	var all []ledger.Outcome
	allOK := true
	var errs []error
	for range groups {
		r := <-results
		all = append(all, r.outcomes...)
		allOK = allOK && r.ok
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	// Outcomes of groups that did send are recorded even if another failed.
	return all, allOK, errors.Join(errs...)
}

func (d *Dispatcher) sendGroup(ctx context.Context, in *eventv1.DispatchBatch, recv string, rs []*eventv1.Rendered) ([]ledger.Outcome, bool, error) {
	account := "account:" + d.send.Name()
	receiver := "mailbox:" + d.send.Name() + ":" + recv
	n, err := d.limits.Take(ctx, []string{"tenant:" + in.Job.TenantId, account, receiver}, len(rs), d.cfg.MaxWait)
	if err != nil {
		return nil, false, err
	}
	outcomes, ok, throttle := d.sendAll(ctx, in, rs[:n])
	for _, r := range rs[n:] {
		outcomes = append(outcomes, ledger.Outcome{CustomerID: r.CustomerId, State: ledger.Deferred,
			Reason: "waiting for the send rate of " + recv})
	}
	if throttle != 0 {
		bucket := receiver
		if throttle == 429 {
			bucket = account // an HTTP provider limits the account as a whole
		}
		if err := d.limits.Throttled(ctx, bucket); err != nil {
			d.log.WarnContext(ctx, "record throttling", "bucket", bucket, "error", err)
		}
	}
	return outcomes, ok && n == len(rs), nil
}

// sendAll sends rs through the provider and returns the outcomes it could
// decide; ok is false if some sends stay in doubt. throttle is the status
// of the first throttling answer (421, 429), 0 if there was none.
func (d *Dispatcher) sendAll(ctx context.Context, in *eventv1.DispatchBatch, rs []*eventv1.Rendered) (outcomes []ledger.Outcome, ok bool, throttle int) {
	if len(rs) == 0 {
		return nil, true, 0
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
	outcomes = make([]ledger.Outcome, 0, len(rs))
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
		case provider.Deferred:
			o.State = ledger.Deferred
		case provider.Throttled:
			o.State = ledger.Deferred
			if throttle == 0 {
				throttle = max(res.Code, 1)
			}
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
		return outcomes, true, throttle
	}
	again, settled, ok := d.settle(ctx, doubtful, "no reply after the message was sent")
	outcomes = append(outcomes, settled...)
	for _, r := range again {
		// The provider does not have it, so sending it again is safe.
		outcomes = append(outcomes, ledger.Outcome{CustomerID: r.CustomerId, State: ledger.Deferred,
			Reason: "no reply after the message was sent; the provider does not have it"})
	}
	return outcomes, ok, throttle
}

// tenantRates remembers which tenants' configured send rates were loaded
// into the limiter recently.
type tenantRates struct {
	mu   sync.Mutex
	ttl  time.Duration
	seen map[string]time.Time
}

// tenantLimit loads the tenant's configured send rate into the limiter,
// at most once per TTL.
func (d *Dispatcher) tenantLimit(ctx context.Context, tenant string) error {
	d.tenants.mu.Lock()
	fresh := d.now().Sub(d.tenants.seen[tenant]) < d.tenants.ttl
	d.tenants.mu.Unlock()
	if fresh {
		return nil
	}
	rate, err := d.ledger.TenantRate(ctx, tenant)
	if err != nil {
		return err
	}
	if rate > 0 {
		if err := d.limits.Ensure(ctx, ratelimit.Bucket{Name: "tenant:" + tenant, Rate: rate}); err != nil {
			return err
		}
	}
	d.tenants.mu.Lock()
	d.tenants.seen[tenant] = d.now()
	d.tenants.mu.Unlock()
	return nil
}
