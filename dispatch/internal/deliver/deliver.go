// Package deliver works off dispatch batches: for each chunk of recipients
// it picks the channel's provider (the first whose circuit breaker is
// closed), claims the ledger rows for it (re-checking suppression, the
// deadline, the daily cap and the job's state in the same statement), sends
// what it claimed, records every answer, and only then lets the message be
// acked. A batch whose earlier attempt was interrupted is finished, not
// redone: rows already final are skipped, and rows whose send may have
// reached a provider are settled with that provider rather than sent again.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"herald/dispatch/internal/adsout"
	"herald/dispatch/internal/ledger"
	"herald/dispatch/internal/mailbox"
	"herald/dispatch/internal/provider"
	"herald/dispatch/internal/ratelimit"
	"herald/dispatch/internal/route"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/telemetry"
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
	// TenantTTL is how long a tenant's dispatch settings (send rate,
	// providers) are cached.
	TenantTTL time.Duration
}

// Limits is the shared rate limiter (ratelimit.Limiter in production).
type Limits interface {
	Ensure(ctx context.Context, buckets ...ratelimit.Bucket) error
	Take(ctx context.Context, buckets []string, n int, maxWait time.Duration) (int, error)
	Throttled(ctx context.Context, bucket string) error
}

// Remover takes people out of an ad audience; ad providers implement it, so
// a recipient suppressed since the last sync is removed, not just skipped.
type Remover interface {
	Remove(ctx context.Context, audience string, emails []string) error
}

// Dispatcher handles dispatch batches.
type Dispatcher struct {
	ledger    *ledger.Ledger
	router    *route.Router
	limits    Limits
	receivers *mailbox.Classifier
	tenants   *tenantCache
	log       *slog.Logger
	cfg       Config
	now       func() time.Time
	outcomes  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	sla       *prometheus.CounterVec
	sendTime  prometheus.Histogram
}

// New returns a dispatcher.
func New(l *ledger.Ledger, router *route.Router, limits Limits, receivers *mailbox.Classifier,
	log *slog.Logger, reg prometheus.Registerer, cfg Config) *Dispatcher {
	f := promauto.With(reg)
	return &Dispatcher{
		ledger: l, router: router, limits: limits, receivers: receivers,
		tenants: &tenantCache{ttl: cfg.TenantTTL, loaded: map[string]cachedTenant{}},
		log:     log, cfg: cfg, now: time.Now,
		outcomes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_dispatch_outcomes_total",
			Help: "Recipients by the state dispatch recorded for them and their receiving mailbox provider.",
		}, []string{"state", "receiver"}),
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_delivery_latency_seconds",
			Help:    "Time from job submission to the provider accepting the message (the SLA histogram).",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800},
		}, []string{"tenant", "channel"}),
		sla: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_sla_deliveries_total",
			Help: "Deliveries against their job's deadline: in_time, late (accepted after it) or expired (never sent).",
		}, []string{"tenant", "channel", "result"}),
		sendTime: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_dispatch_send_duration_seconds",
			Help:    "Provider time per message, averaged over each call.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
	}
}

// errPending nacks a batch that still has recipients to retry, so Pub/Sub
// redelivers it after its retry backoff.
var errPending = errors.New("batch has deferred recipients")

// Handle delivers one batch; nil means every recipient this batch owns has
// a final outcome in the ledger (or the job is not active).
func (d *Dispatcher) Handle(ctx context.Context, m *pubsub.Message) error {
	var in eventv1.DispatchBatch
	if err := event.Decode(m.Data, m.Attributes, &in); err != nil {
		return err
	}
	job := in.GetJob()
	// Only the canonical spelling: the job id is part of every delivery's
	// key, which a second spelling of the same job would change.
	jobID, err := event.ParseJobID(job.JobId)
	if err != nil {
		return fmt.Errorf("%w: %w", event.ErrMalformed, err)
	}
	b := ledger.Batch{Tenant: job.TenantId, Job: jobID, Channel: event.Channel(job.Channel),
		SubmittedAt: job.SubmittedAt.AsTime(), Deadline: job.Deadline.AsTime(), Seq: job.Seq}
	if q := job.GetQuietHours(); q != nil {
		b.Quiet = &ledger.Quiet{StartMinute: int(q.StartMinute), EndMinute: int(q.EndMinute), Mode: q.Mode}
	}
	tenant, err := d.tenant(ctx, b.Tenant)
	if err != nil {
		return err
	}
	held, err := d.ledger.Lock(ctx, b)
	if err != nil {
		return err
	}
	defer held.Release(ctx)
	// A paused or cancelled job's batch is acked without work and stays
	// not done in the plan: resuming publishes it again.
	switch state, err := held.JobState(ctx); {
	case err != nil:
		return err
	case state != "active":
		d.log.InfoContext(ctx, "batch of a job that is not active left alone", "tenant_id", b.Tenant, "job_id", job.JobId,
			"batch_seq", b.Seq, "job_state", state)
		return nil
	}
	pending := false
	var hold *time.Time // the earliest quiet-hours hold of the batch
	for start := 0; start < len(in.Messages); start += d.cfg.Chunk {
		chunk := in.Messages[start:min(start+d.cfg.Chunk, len(in.Messages))]
		res, err := d.chunk(ctx, held, &in, chunk, tenant.Providers[b.Channel])
		if err != nil {
			return err
		}
		pending = pending || res.pending
		hold = earliest(hold, res.hold)
	}
	switch {
	case pending:
		// Pub/Sub redelivers it after its retry backoff.
		if err := held.Park(ctx, hold); err != nil {
			return err
		}
		return errPending
	case hold != nil:
		// Only quiet-hours holds left: ack, and let the releaser publish
		// the batch again when the first of them may be sent.
		return held.Park(ctx, hold)
	default:
		return held.Finish(ctx)
	}
}

// chunkResult says what is left of a chunk: recipients to retry soon
// (pending), and the earliest quiet-hours hold.
type chunkResult struct {
	pending bool
	hold    *time.Time
}

func earliest(a, b *time.Time) *time.Time {
	if a == nil || (b != nil && b.Before(*a)) {
		return b
	}
	return a
}

// chunk claims, sends and records one chunk through the first available of
// the tenant's providers (prefer; empty: dispatch's order); it reports what
// of it is not final yet. The decisions are classify's and judge's; chunk
// only reads the ledger, calls the provider and writes down what came of it.
func (d *Dispatcher) chunk(ctx context.Context, held *ledger.Held, in *eventv1.DispatchBatch, chunk []*eventv1.Rendered, prefer []string) (chunkResult, error) {
	job := in.GetJob()
	p, pickErr := d.router.Pick(event.Channel(job.Channel), prefer)
	name := ""
	if p != nil {
		name = p.Name()
	}
	emails := make([]string, len(chunk))
	for i, r := range chunk {
		emails[i] = r.Email
	}
	if err := held.LockAddresses(ctx, emails); err != nil {
		return chunkResult{}, err
	}
	defer func() {
		if err := held.UnlockAddresses(ctx, emails); err != nil {
			d.log.WarnContext(ctx, "unlock addresses", "error", err)
		}
	}()
	claims, err := held.Claim(ctx, items(chunk), name)
	if err != nil {
		return chunkResult{}, err
	}
	rendered := make(map[string]*eventv1.Rendered, len(chunk))
	for _, r := range chunk {
		rendered[r.CustomerId] = r
	}
	todo := classify(claims, rendered)
	d.countEnded(job, todo.ended)
	complete, err := d.takeOver(ctx, held, job, p, rendered, &todo)
	if err != nil {
		return chunkResult{}, err
	}
	if len(todo.suppressed) > 0 && p != nil {
		d.removeFromAudience(ctx, p, in, todo.suppressed)
	}
	outcomes, sentOK, sendErr := d.send(ctx, p, pickErr, in, todo.send)
	// What was sent is recorded even if another part of the chunk failed:
	// left in sending, it would be taken for a send in doubt.
	final, err := d.settle(ctx, held, job, rendered, outcomes)
	if err := errors.Join(sendErr, err); err != nil {
		return chunkResult{}, err
	}
	return chunkResult{pending: !(complete && sentOK && final), hold: todo.hold}, nil
}

// items are the ledger's view of a chunk's messages.
func items(chunk []*eventv1.Rendered) []ledger.Item {
	items := make([]ledger.Item, len(chunk))
	for i, r := range chunk {
		pv := r.GetProvenance()
		items[i] = ledger.Item{CustomerID: r.CustomerId, Email: r.Email, MessageID: r.MessageId, RenderError: r.Error,
			SkipReason: r.SkipReason, Strategy: pv.GetStrategy(), ModelVersion: pv.GetModelVersion(),
			CatalogVersion: pv.GetCatalogVersion(), TemplateVersion: pv.GetTemplateVersion()}
	}
	return items
}

// plan is what is to be done with a chunk's claimed recipients: whom to
// send to now, what an earlier attempt of the batch left to finish, and
// what only needs counting.
type plan struct {
	// send are the recipients claimed for the chosen provider.
	send []*eventv1.Rendered
	// interrupted are rows an earlier attempt left in sending, by the
	// provider that got them. That provider may have the message, so they
	// are settled with it before anything is sent again.
	interrupted map[string][]*eventv1.Rendered
	// retry are rows an earlier attempt left deferred, to be claimed again
	// through Retry (which re-checks suppression, the deadline and quiet
	// hours).
	retry []string
	// hold is the earliest time a recipient held for quiet hours may be
	// sent, nil if none is held.
	hold *time.Time
	// ended are rows that became final without a send; they are only
	// counted.
	ended []ended
	// suppressed are the ended rows that were suppressed, which an ad job
	// also takes out of its audience.
	suppressed []*eventv1.Rendered
}

// ended is a recipient whose row became final without a send.
type ended struct {
	state string
	r     *eventv1.Rendered
}

// classify sorts a chunk's claims by what is to be done with each
// recipient; rendered are the chunk's messages by customer id. Rows an
// earlier attempt already made final are left out: they were counted then.
func classify(claims []ledger.Claim, rendered map[string]*eventv1.Rendered) plan {
	var todo plan
	for _, c := range claims {
		r := rendered[c.CustomerID]
		switch {
		case c.State == ledger.Sending && c.Fresh:
			todo.send = append(todo.send, r)
		case c.State == ledger.Sending:
			if todo.interrupted == nil {
				todo.interrupted = map[string][]*eventv1.Rendered{}
			}
			todo.interrupted[c.Provider] = append(todo.interrupted[c.Provider], r)
		case c.State == ledger.Deferred && c.Fresh:
			// Claimed straight into a quiet-hours hold.
			todo.hold = earliest(todo.hold, c.NotBefore)
		case c.State == ledger.Deferred:
			todo.retry = append(todo.retry, c.CustomerID)
		case c.Fresh:
			todo.ended = append(todo.ended, ended{c.State, r})
			if c.State == ledger.Suppressed {
				todo.suppressed = append(todo.suppressed, r)
			}
		}
	}
	return todo
}

// classifyRetried sorts the rows Retry decided again (states, by customer
// id) among ids the way classify sorts claims. complete is false if Retry
// left some alone, which it does when the job is no longer active.
func classifyRetried(ids []string, states map[string]ledger.Retried, rendered map[string]*eventv1.Rendered) (todo plan, complete bool) {
	complete = true
	for _, id := range ids {
		st, ok := states[id]
		switch {
		case !ok:
			complete = false
		case st.State == ledger.Sending:
			todo.send = append(todo.send, rendered[id])
		case st.State == ledger.Deferred:
			todo.hold = earliest(todo.hold, st.NotBefore)
		default:
			todo.ended = append(todo.ended, ended{st.State, rendered[id]})
		}
	}
	return todo, complete
}

// takeOver finishes what an earlier attempt of the batch left in todo: it
// settles the interrupted rows with the provider that had them, then claims
// the deferred ones (and those that provider lacks) again for p, adding
// whom to send to and the holds to todo. complete is false if some stay
// undecided for a later attempt: a provider could not be asked, there is no
// provider to retry with, or the job is no longer active.
func (d *Dispatcher) takeOver(ctx context.Context, held *ledger.Held, job *eventv1.Job, p *route.Provider,
	rendered map[string]*eventv1.Rendered, todo *plan) (complete bool, err error) {
	complete = true
	if len(todo.interrupted) > 0 {
		again, ok, err := d.resume(ctx, held, job, rendered, todo.interrupted)
		if err != nil {
			return false, err
		}
		// The ones the provider lacks go out now, through the retry below:
		// finishing the batch must not wait for another copy of its
		// message, which may never come (the emulator loses redeliveries
		// to the streams of a killed process, and re-drives are few).
		todo.retry = append(todo.retry, again...)
		complete = ok
	}
	if len(todo.retry) == 0 {
		return complete, nil
	}
	if p == nil {
		return false, nil
	}
	states, err := held.Retry(ctx, todo.retry, p.Name())
	if err != nil {
		return false, err
	}
	retried, all := classifyRetried(todo.retry, states, rendered)
	d.countEnded(job, retried.ended)
	todo.send = append(todo.send, retried.send...)
	todo.hold = earliest(todo.hold, retried.hold)
	return complete && all, nil
}

// send hands the recipients claimed for p to it and returns what became of
// them; ok is false if some sends stay in doubt. Claimed while no provider
// was available (p nil, for the reason pickErr), they are deferred unsent.
func (d *Dispatcher) send(ctx context.Context, p *route.Provider, pickErr error, in *eventv1.DispatchBatch,
	rs []*eventv1.Rendered) (outcomes []ledger.Outcome, ok bool, err error) {
	switch {
	case len(rs) == 0:
		return nil, true, nil
	case p == nil:
		return deferAll(rs, pickErr.Error()), true, nil
	}
	return d.sendByReceiver(ctx, p, in, rs)
}

// deferAll defers rs unsent, for reason.
func deferAll(rs []*eventv1.Rendered, reason string) []ledger.Outcome {
	outcomes := make([]ledger.Outcome, len(rs))
	for i, r := range rs {
		outcomes[i] = ledger.Outcome{CustomerID: r.CustomerId, State: ledger.Deferred, Reason: reason}
	}
	return outcomes
}

// settle records what became of a chunk's sends in the ledger and counts
// it; final is false if some recipients were deferred.
func (d *Dispatcher) settle(ctx context.Context, held *ledger.Held, job *eventv1.Job, rendered map[string]*eventv1.Rendered,
	outcomes []ledger.Outcome) (final bool, err error) {
	if err := held.Record(ctx, outcomes); err != nil {
		return false, err
	}
	final = true
	for _, o := range outcomes {
		d.count(job, o.State, rendered[o.CustomerID])
		final = final && o.State != ledger.Deferred
	}
	return final, nil
}

// resume settles the rows an interrupted attempt of this batch left in
// sending, each with the provider that had it, and records what it decided.
// It returns the recipients that provider does not have, recorded deferred
// so that the retry takes them back for the provider now chosen (re-checking
// suppression, the deadline and quiet hours). ok is false if a provider could
// not be asked: its rows stay in sending for a later attempt.
func (d *Dispatcher) resume(ctx context.Context, held *ledger.Held, job *eventv1.Job, byID map[string]*eventv1.Rendered,
	interrupted map[string][]*eventv1.Rendered) (again []string, ok bool, err error) {
	ok = true
	var outcomes []ledger.Outcome
	for prov, rs := range interrupted {
		lacking, settled, asked := d.reconcile(ctx, prov, rs, "an earlier attempt was interrupted")
		outcomes = append(outcomes, settled...)
		outcomes = append(outcomes, deferAll(lacking, "an earlier attempt was interrupted and "+prov+" does not have the message")...)
		ok = ok && asked
		for _, r := range lacking {
			again = append(again, r.CustomerId)
		}
	}
	if err := held.Record(ctx, outcomes); err != nil {
		return nil, false, err
	}
	for _, o := range outcomes {
		if o.State != ledger.Deferred {
			d.count(job, o.State, byID[o.CustomerID])
		}
	}
	return again, ok, nil
}

// countEnded counts rows that became final without a send.
func (d *Dispatcher) countEnded(job *eventv1.Job, rows []ended) {
	for _, e := range rows {
		d.count(job, e.state, e.r)
	}
}

// count records one final (or deferred) outcome in the metrics.
func (d *Dispatcher) count(job *eventv1.Job, state string, r *eventv1.Rendered) {
	d.outcomes.WithLabelValues(state, d.receiver(job.Channel, r.Email)).Inc()
	switch state {
	case ledger.Sent:
		now := d.now()
		d.latency.WithLabelValues(job.TenantId, job.Channel).Observe(now.Sub(job.SubmittedAt.AsTime()).Seconds())
		result := "in_time"
		if now.After(job.Deadline.AsTime()) {
			result = "late"
		}
		d.sla.WithLabelValues(job.TenantId, job.Channel, result).Inc()
	case ledger.Expired:
		d.sla.WithLabelValues(job.TenantId, job.Channel, "expired").Inc()
	}
}

// receiver is the queue a recipient waits in: their mailbox provider for
// email, the channel itself otherwise.
func (d *Dispatcher) receiver(channel, email string) string {
	if event.Channel(channel) != event.ChannelEmail {
		return channel
	}
	return d.receivers.Of(email)
}

// reconcile decides recipients whose send may have reached provider prov: if
// prov is idempotent they may simply be sent again (by it); with a
// reconciler, the ones prov has are sent and the rest may be sent again;
// otherwise they are ambiguous — counted, never re-sent blindly. If prov
// cannot be asked right now, nothing is decided: the rows stay in sending,
// ok is false, and a later attempt asks again.
func (d *Dispatcher) reconcile(ctx context.Context, prov string, rs []*eventv1.Rendered, why string) (again []*eventv1.Rendered, outcomes []ledger.Outcome, ok bool) {
	p := d.router.Find(prov)
	switch {
	case p != nil && p.Idempotent():
		return rs, nil, true
	case p == nil || p.Reconciler == nil:
		for _, r := range rs {
			outcomes = append(outcomes, ledger.Outcome{CustomerID: r.CustomerId, State: ledger.Ambiguous,
				Reason: why + "; " + prov + " cannot be asked whether it accepted the message"})
		}
		return nil, outcomes, true
	}
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.MessageId
	}
	found, err := p.Reconciler.Found(ctx, ids)
	if err != nil {
		d.log.WarnContext(ctx, "reconcile with provider", "provider", prov, "error", err)
		return nil, nil, false
	}
	for _, r := range rs {
		if found[r.MessageId] {
			outcomes = append(outcomes, ledger.Outcome{CustomerID: r.CustomerId, State: ledger.Sent,
				Reason: why + "; " + prov + " confirmed it has the message"})
		} else {
			again = append(again, r)
		}
	}
	return again, outcomes, true
}

// sendByReceiver sends rs through p grouped by receiver, each group paced
// by its buckets (tenant, provider account, receiver) and all groups at
// once. Recipients whose receiver has no tokens within MaxWait are deferred
// without being sent, so a receiver that slowed us down holds back only its
// own recipients.
func (d *Dispatcher) sendByReceiver(ctx context.Context, p *route.Provider, in *eventv1.DispatchBatch, rs []*eventv1.Rendered) ([]ledger.Outcome, bool, error) {
	groups := map[string][]*eventv1.Rendered{}
	for _, r := range rs {
		recv := d.receiver(in.Job.Channel, r.Email)
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
			outcomes, ok, err := d.sendGroup(ctx, p, in, recv, group)
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

func (d *Dispatcher) sendGroup(ctx context.Context, p *route.Provider, in *eventv1.DispatchBatch, recv string, rs []*eventv1.Rendered) ([]ledger.Outcome, bool, error) {
	account := "account:" + p.Name()
	receiver := "mailbox:" + p.Name() + ":" + recv
	n, err := d.limits.Take(ctx, []string{"tenant:" + in.Job.TenantId, account, receiver}, len(rs), d.cfg.MaxWait)
	if err != nil {
		// None of the group was sent: it waits for the next copy.
		return deferAll(rs, "take send rate: "+err.Error()), false, err
	}
	outcomes, ok, throttle := d.sendAll(ctx, p, in, rs[:n])
	outcomes = append(outcomes, deferAll(rs[n:], "waiting for the send rate of "+recv)...)
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

// sendAll sends rs through p and returns the outcomes it could decide; ok
// is false if some sends stay in doubt. throttle is the status of the first
// throttling answer (421, 429), 0 if there was none.
func (d *Dispatcher) sendAll(ctx context.Context, p *route.Provider, in *eventv1.DispatchBatch, rs []*eventv1.Rendered) (outcomes []ledger.Outcome, ok bool, throttle int) {
	if len(rs) == 0 {
		return nil, true, 0
	}
	msgs := messages(in, rs)
	ctx, span := telemetry.Tracer().Start(ctx, "provider send", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("herald.provider", p.Name()), attribute.Int("herald.messages", len(msgs))))
	defer span.End()
	start := d.now()
	results := p.Send(ctx, msgs)
	d.sendTime.Observe(d.now().Sub(start).Seconds() / float64(len(rs)))
	d.router.Report(p, results)
	outcomes, doubtful, throttle := judge(rs, results, p.Idempotent())
	if len(doubtful) == 0 {
		return outcomes, true, throttle
	}
	again, settled, ok := d.reconcile(ctx, p.Name(), doubtful, "no reply after the message was sent")
	outcomes = append(outcomes, settled...)
	// The provider does not have them, so sending them again is safe.
	outcomes = append(outcomes, deferAll(again, "no reply after the message was sent; the provider does not have it")...)
	return outcomes, ok, throttle
}

// messages are what the provider is handed for rs.
func messages(in *eventv1.DispatchBatch, rs []*eventv1.Rendered) []*provider.Message {
	job := in.GetJob()
	msgs := make([]*provider.Message, len(rs))
	for i, r := range rs {
		msgs[i] = &provider.Message{
			Key: event.DeliveryKey{Tenant: job.TenantId, Job: job.JobId, Channel: event.Channel(job.Channel),
				Customer: r.CustomerId}.String(),
			MessageID: r.MessageId, From: in.From, To: r.Email, Body: body(job, r),
			Tenant: job.TenantId, CustomerID: r.CustomerId, JobID: job.JobId, ExpiresAt: job.Deadline.AsTime(),
		}
	}
	return msgs
}

// judge turns a provider's answers to rs (results, in order) into ledger
// outcomes. doubtful are the recipients whose message a provider that is
// not idempotent may or may not have accepted: judge cannot decide them,
// only the provider's reconciler can. throttle is the status of the first
// throttling answer (421, 429; 1 if it gave none), 0 if there was none.
func judge(rs []*eventv1.Rendered, results []provider.Result, idempotent bool) (outcomes []ledger.Outcome, doubtful []*eventv1.Rendered, throttle int) {
	outcomes = make([]ledger.Outcome, 0, len(rs))
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
			if !idempotent {
				doubtful = append(doubtful, r)
				continue
			}
			// The provider drops a repeat of the same key: retrying is safe.
			o.State = ledger.Deferred
		}
		outcomes = append(outcomes, o)
	}
	return outcomes, doubtful, throttle
}

// body is what the provider gets: the MIME message for email, the
// audience for ads, the rendered payload for onsite.
func body(job *eventv1.Job, r *eventv1.Rendered) []byte {
	switch event.Channel(job.Channel) {
	case event.ChannelEmail:
		return r.Mime
	case event.ChannelAd:
		return adsout.Body(adsout.Payload{Audience: Audience(job)})
	default:
		return r.Payload
	}
}

// removeFromAudience takes suppressed recipients of an ad job out of the
// job's audience at the ad platform.
func (d *Dispatcher) removeFromAudience(ctx context.Context, p *route.Provider, in *eventv1.DispatchBatch, rs []*eventv1.Rendered) {
	rm, ok := p.Sender.(Remover)
	if !ok || event.Channel(in.Job.Channel) != event.ChannelAd {
		return
	}
	emails := make([]string, len(rs))
	for i, r := range rs {
		emails[i] = r.Email
	}
	if err := rm.Remove(ctx, Audience(in.Job), emails); err != nil {
		d.log.WarnContext(ctx, "remove suppressed people from the ad audience", "job_id", in.Job.JobId, "error", err)
	}
}

// Audience names the ad platform audience of a job: one per tenant and
// campaign, so a campaign's jobs build one audience.
func Audience(job *eventv1.Job) string {
	campaign := job.Campaign
	if campaign == "" {
		campaign = job.JobId
	}
	return "herald-" + job.TenantId + "-" + campaign
}

// tenantCache keeps tenants' dispatch settings for a while, so that a
// batch does not read them again.
type tenantCache struct {
	mu     sync.Mutex
	ttl    time.Duration
	loaded map[string]cachedTenant
}

type cachedTenant struct {
	at       time.Time
	settings ledger.Tenant
}

// tenant returns the tenant's dispatch settings, read at most once per TTL;
// reading them loads its send rate into the shared limiter.
func (d *Dispatcher) tenant(ctx context.Context, tenant string) (ledger.Tenant, error) {
	d.tenants.mu.Lock()
	c, ok := d.tenants.loaded[tenant]
	d.tenants.mu.Unlock()
	if ok && d.now().Sub(c.at) < d.tenants.ttl {
		return c.settings, nil
	}
	t, err := d.ledger.Tenant(ctx, tenant)
	if err != nil {
		return ledger.Tenant{}, err
	}
	if t.Rate > 0 {
		if err := d.limits.Ensure(ctx, ratelimit.Bucket{Name: "tenant:" + tenant, Rate: t.Rate}); err != nil {
			return ledger.Tenant{}, err
		}
	}
	d.tenants.mu.Lock()
	d.tenants.loaded[tenant] = cachedTenant{at: d.now(), settings: t}
	d.tenants.mu.Unlock()
	return t, nil
}
