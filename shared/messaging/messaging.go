// Package messaging connects Herald's services through Google Cloud Pub/Sub:
// it creates the topology idempotently, publishes batch messages and runs
// receive loops that ack only after the handler's work is committed.
package messaging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"herald/shared/event"
	"herald/shared/telemetry"
)

// Config says where Pub/Sub is.
type Config struct {
	// Project is the Google Cloud project that owns the topics.
	Project string
	// EmulatorHost, when set, is the host:port of a Pub/Sub emulator (or of
	// pstest); the client then connects without TLS or credentials.
	EmulatorHost string
}

// Connect returns a Pub/Sub client for cfg.
func Connect(ctx context.Context, cfg Config) (*pubsub.Client, error) {
	if cfg.Project == "" {
		return nil, errors.New("pubsub project is empty")
	}
	var opts []option.ClientOption
	if cfg.EmulatorHost != "" {
		opts = append(opts,
			option.WithEndpoint(cfg.EmulatorHost),
			option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
			option.WithTelemetryDisabled(),
		)
	}
	// The client's own tracing adds publish and receive spans to a batch's
	// trace, through the process's tracer provider.
	c, err := pubsub.NewClientWithConfig(ctx, cfg.Project, &pubsub.ClientConfig{EnableOpenTelemetryTracing: true}, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect pubsub: %w", err)
	}
	return c, nil
}

// Stage names a pipeline hop: the topic a stage's input is published to, the
// subscription the stage reads it from, and the dead-letter topic and
// subscription where messages that cannot be processed end up.
type Stage string

// The pipeline's hops, in order.
const (
	Recommend Stage = "recommend"
	Render    Stage = "render"
	Dispatch  Stage = "dispatch"
)

// Topic is the topic ID a stage's input is published to.
func (s Stage) Topic() string { return "herald-" + string(s) }

// Subscription is the subscription ID the stage's workers read from.
func (s Stage) Subscription() string { return "herald-" + string(s) + "-workers" }

// DeadTopic is the topic ID of the stage's dead letters.
func (s Stage) DeadTopic() string { return "herald-" + string(s) + "-dead" }

// DeadSubscription is the subscription that keeps the stage's dead letters
// until an operator looks at them or re-drives them.
func (s Stage) DeadSubscription() string { return "herald-" + string(s) + "-dead" }

// MaxDeliveryAttempts is how often a message is offered before Pub/Sub moves
// it to the stage's dead-letter topic.
const MaxDeliveryAttempts = 10

// EnsureTopology creates, if missing, the topics and subscriptions of the
// given stages: each stage's input topic, its worker subscription with a
// dead-letter policy, and the dead-letter topic with a subscription that keeps
// what lands there. It is safe to run from every replica at start. Publishers
// and receive loops run it again when Pub/Sub no longer knows the topology
// (a broker that lost it), so the pipeline carries on by itself.
func EnsureTopology(ctx context.Context, c *pubsub.Client, stages ...Stage) error {
	for _, s := range stages {
		for _, topic := range []string{s.Topic(), s.DeadTopic()} {
			if err := ensureTopic(ctx, c, topic); err != nil {
				return err
			}
		}
		if err := ensureSubscription(ctx, c, &pubsubpb.Subscription{
			Name:  subName(c, s.DeadSubscription()),
			Topic: topicName(c, s.DeadTopic()),
			// Dead letters wait for a person; keep them as long as Pub/Sub allows.
			MessageRetentionDuration: durationpb.New(7 * 24 * time.Hour),
			AckDeadlineSeconds:       60,
		}); err != nil {
			return err
		}
		if err := ensureSubscription(ctx, c, &pubsubpb.Subscription{
			Name:               subName(c, s.Subscription()),
			Topic:              topicName(c, s.Topic()),
			AckDeadlineSeconds: 30,
			DeadLetterPolicy: &pubsubpb.DeadLetterPolicy{
				DeadLetterTopic:     topicName(c, s.DeadTopic()),
				MaxDeliveryAttempts: MaxDeliveryAttempts,
			},
			RetryPolicy: &pubsubpb.RetryPolicy{
				MinimumBackoff: durationpb.New(time.Second),
				MaximumBackoff: durationpb.New(time.Minute),
			},
		}); err != nil {
			return err
		}
	}
	return nil
}

// ensureTopic creates a topic unless it exists. A service running with
// publish/subscribe roles only may not create: then the topic must exist
// already (created by the deployment), which is checked instead.
func ensureTopic(ctx context.Context, c *pubsub.Client, id string) error {
	name := topicName(c, id)
	_, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name})
	switch status.Code(err) {
	case grpccodes.OK, grpccodes.AlreadyExists:
		return nil
	case grpccodes.PermissionDenied:
		if _, gerr := c.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name}); gerr == nil {
			return nil
		}
	}
	return fmt.Errorf("create topic %s: %w", id, err)
}

func ensureSubscription(ctx context.Context, c *pubsub.Client, sub *pubsubpb.Subscription) error {
	_, err := c.SubscriptionAdminClient.CreateSubscription(ctx, sub)
	switch status.Code(err) {
	case grpccodes.OK, grpccodes.AlreadyExists:
		return nil
	case grpccodes.PermissionDenied:
		if _, gerr := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: sub.Name}); gerr == nil {
			return nil
		}
	}
	return fmt.Errorf("create subscription %s: %w", sub.Name, err)
}

func topicName(c *pubsub.Client, id string) string {
	return "projects/" + c.Project() + "/topics/" + id
}

func subName(c *pubsub.Client, id string) string {
	return "projects/" + c.Project() + "/subscriptions/" + id
}

// Publisher publishes batches to one stage's topic. When a publish finds the
// topic gone, it creates the stage's topology again (see heal).
type Publisher struct {
	p        *pubsub.Publisher
	c        *pubsub.Client
	stage    Stage
	encoding string
	messages prometheus.Counter
	bytes    prometheus.Counter
	rebuilds *prometheus.CounterVec
	// lost tells heal that a publish found the topic gone.
	lost chan struct{}
	// rebuilding is set while heal creates the topology again.
	rebuilding atomic.Bool
	stopHeal   context.CancelFunc
	healed     chan struct{}
}

// ErrRebuilding is returned by Publish while the stage's topology is being
// created again; the caller retries the batch later.
var ErrRebuilding = errors.New("pubsub topology is being created again")

// NewPublisher returns a publisher for stage's topic. Batch messages are large
// and few, so the client's own batching is kept short: a message waits at most
// a few milliseconds for company.
func NewPublisher(c *pubsub.Client, stage Stage, encoding string, reg prometheus.Registerer) *Publisher {
	p := c.Publisher(stage.Topic())
	p.PublishSettings.DelayThreshold = 5 * time.Millisecond
	p.PublishSettings.CountThreshold = 50
	p.PublishSettings.ByteThreshold = 4 << 20
	p.PublishSettings.FlowControlSettings = pubsub.FlowControlSettings{
		MaxOutstandingMessages: 200,
		MaxOutstandingBytes:    256 << 20,
		LimitExceededBehavior:  pubsub.FlowControlBlock,
	}
	labels := prometheus.Labels{"topic": stage.Topic()}
	f := promauto.With(reg)
	ctx, stop := context.WithCancel(context.Background())
	pub := &Publisher{
		p: p, c: c, stage: stage, encoding: encoding,
		messages: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_published_messages_total", Help: "Batch messages published, by topic.", ConstLabels: labels,
		}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "herald_published_bytes_total", Help: "Encoded (compressed) bytes published, by topic.", ConstLabels: labels,
		}),
		rebuilds: newRebuilds(reg, stage, "publisher"),
		lost:     make(chan struct{}, 1),
		stopHeal: stop,
		healed:   make(chan struct{}),
	}
	go pub.heal(ctx)
	return pub
}

// heal creates the stage's topology again when a publish finds the topic
// gone, as after a restart of a broker that kept nothing; the caller's next
// try of the batch then goes through. Meanwhile Publish refuses batches
// (ErrRebuilding) rather than have them reach a topic whose subscription
// does not exist yet, which Pub/Sub would drop them from. It keeps trying
// until the topology is back, so where the service may not create it, it
// carries on once the deployment has.
func (p *Publisher) heal(ctx context.Context) {
	defer close(p.healed)
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.lost:
		}
		p.rebuilding.Store(true)
		// The callers log their failed publishes; the metric counts the
		// attempts at the topology.
		if err := ensureUntil(ctx, p.c, p.stage, p.rebuilds, slog.New(slog.DiscardHandler)); err != nil {
			return
		}
		p.rebuilding.Store(false)
	}
}

// Publish queues b and returns a result to wait on; the message is durable in
// Pub/Sub only once the result's Get returns without error. The message
// carries the trace context of ctx's span, or traceparent if ctx has none.
func (p *Publisher) Publish(ctx context.Context, b event.Batch, traceparent string) (*pubsub.PublishResult, error) {
	if p.rebuilding.Load() {
		return nil, fmt.Errorf("publish batch %s/%d: %w", b.GetJob().GetJobId(), b.GetJob().GetSeq(), ErrRebuilding)
	}
	if tp := telemetry.Traceparent(ctx); tp != "" {
		traceparent = tp
	}
	body, attrs, err := event.Encode(b, p.encoding, traceparent)
	if err != nil {
		return nil, err
	}
	if len(body) > MaxMessageBytes {
		return nil, fmt.Errorf("publish batch %s/%d: %w: %d bytes", b.GetJob().GetJobId(), b.GetJob().GetSeq(), ErrTooLarge, len(body))
	}
	p.messages.Inc()
	p.bytes.Add(float64(len(body)))
	res := p.p.Publish(ctx, &pubsub.Message{Data: body, Attributes: attrs})
	// A goroutine per batch message (a few dozen a second at full speed)
	// tells heal when this one finds the topic gone.
	go func() {
		<-res.Ready() // at the latest when Stop has flushed
		if _, err := res.Get(context.Background()); status.Code(err) == grpccodes.NotFound {
			select {
			case p.lost <- struct{}{}:
			default: // heal knows already
			}
		}
	}()
	return res, nil
}

// Stop flushes what is queued and releases the publisher's goroutines.
func (p *Publisher) Stop() {
	p.p.Stop()
	p.stopHeal()
	<-p.healed
}

// newRebuilds counts, for one stage, the times the topology was found gone
// and created again by a publisher or a receive loop ("by"), and the
// attempts that failed.
func newRebuilds(reg prometheus.Registerer, stage Stage, by string) *prometheus.CounterVec {
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, but not exported
	}
	v := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name:        "herald_pubsub_topology_rebuilds_total",
		Help:        "Times Pub/Sub had lost a stage's topics or subscriptions and they were created again, by outcome (rebuilt, failed).",
		ConstLabels: prometheus.Labels{"stage": string(stage), "by": by},
	}, []string{"outcome"})
	v.WithLabelValues("rebuilt")
	v.WithLabelValues("failed")
	return v
}

// ensureUntil runs EnsureTopology for stage until it succeeds, waiting
// longer after each failure, or until ctx ends. It returns the last error
// when ctx ends first.
func ensureUntil(ctx context.Context, c *pubsub.Client, stage Stage, rebuilds *prometheus.CounterVec, log *slog.Logger) error {
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := EnsureTopology(ctx, c, stage)
		if err == nil {
			rebuilds.WithLabelValues("rebuilt").Inc()
			return nil
		}
		rebuilds.WithLabelValues("failed").Inc()
		log.ErrorContext(ctx, "create stage topology again", "stage", stage, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// MaxMessageBytes keeps every message well under Pub/Sub's 10 MB limit.
const MaxMessageBytes = 8 << 20

// ErrTooLarge is returned by Publish for a batch that encodes to more than
// MaxMessageBytes; the caller splits it.
var ErrTooLarge = errors.New("batch too large for one message")

// ReceiveConfig tunes a receive loop for throughput.
type ReceiveConfig struct {
	// Streams is the number of StreamingPull streams. One stream on the
	// emulator delivers only about 1.8k messages/s; several streams with
	// per-stream flow control scale nearly linearly.
	Streams int
	// MaxInFlight bounds the batches a process handles at once per stream.
	MaxInFlight int
	// Grace is how long shutdown waits for in-flight batches before nacking.
	Grace time.Duration
	// LeaseStep is how far each ack-deadline extension reaches (10s-600s);
	// it bounds how long a crashed worker's batches stay invisible.
	LeaseStep time.Duration
	// Registry, if set, receives the stage's throughput, lag and in-flight
	// metrics.
	Registry prometheus.Registerer
}

// stageMetrics describe one stage's consumption.
type stageMetrics struct {
	messages *prometheus.CounterVec
	lag      prometheus.Gauge
	wait     prometheus.Histogram
	handle   prometheus.Histogram
	inFlight prometheus.Gauge
}

func newStageMetrics(reg prometheus.Registerer, stage Stage) *stageMetrics {
	if reg == nil {
		reg = prometheus.NewRegistry() // counted, but not exported
	}
	f := promauto.With(reg)
	labels := prometheus.Labels{"stage": string(stage)}
	m := &stageMetrics{
		messages: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_stage_messages_total", ConstLabels: labels,
			Help: "Batch messages a stage finished, by outcome: acked, nacked (redelivered later), dead_lettered.",
		}, []string{"outcome"}),
		lag: f.NewGauge(prometheus.GaugeOpts{
			Name: "herald_stage_lag_seconds", ConstLabels: labels,
			Help: "How long the message the stage most recently started on had waited since it was published.",
		}),
		wait: f.NewHistogram(prometheus.HistogramOpts{
			Name: "herald_stage_wait_seconds", ConstLabels: labels,
			Help:    "Time from publish to the start of handling, per message.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 12),
		}),
		handle: f.NewHistogram(prometheus.HistogramOpts{
			Name: "herald_stage_handle_seconds", ConstLabels: labels,
			Help:    "Time to handle one batch message.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
		}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "herald_stage_in_flight", ConstLabels: labels,
			Help: "Batch messages being handled now.",
		}),
	}
	// Every outcome exists from the start at 0, so that the first dead
	// letter is an increase an alert can see.
	for _, outcome := range []string{"acked", "nacked", "dead_lettered"} {
		m.messages.WithLabelValues(outcome)
	}
	return m
}

// Handler processes one message. It returns nil once the stage's result is
// committed, so the message can be acked. An error wrapping event.ErrMalformed
// sends the message straight to dead letters; any other error nacks it for
// redelivery.
type Handler func(ctx context.Context, m *pubsub.Message) error

// Receive runs handler on stage's subscription until ctx is done. It then
// stops pulling and waits up to cfg.Grace for in-flight handlers, which run on
// workCtx so that a soft shutdown lets them finish their commits; workCtx
// should be cancelled only when the grace period is over.
func Receive(ctx, workCtx context.Context, c *pubsub.Client, stage Stage, cfg ReceiveConfig, log *slog.Logger, handler Handler) error {
	sub := c.Subscriber(stage.Subscription())
	sub.ReceiveSettings.NumGoroutines = max(cfg.Streams, 1)
	sub.ReceiveSettings.MaxOutstandingMessages = max(cfg.MaxInFlight, 1)
	sub.ReceiveSettings.MaxOutstandingBytes = 512 << 20
	sub.ReceiveSettings.EnablePerStreamFlowControl = true
	// Leases are extended in short steps, so the batches a crashed worker
	// held come back to the others within that step, not minutes later.
	sub.ReceiveSettings.MaxDurationPerAckExtension = cfg.LeaseStep
	sub.ReceiveSettings.MinDurationPerAckExtension = cfg.LeaseStep
	sub.ReceiveSettings.ShutdownOptions = &pubsub.ShutdownOptions{
		Timeout:  cfg.Grace,
		Behavior: pubsub.ShutdownBehaviorWaitForProcessing,
	}
	dead := c.Publisher(stage.DeadTopic())
	defer dead.Stop()
	metrics := newStageMetrics(cfg.Registry, stage)
	rebuilds := newRebuilds(cfg.Registry, stage, "receiver")
	tracer := telemetry.Tracer()
	handle := func(_ context.Context, m *pubsub.Message) {
		start := time.Now()
		// The batch's span joins its job's trace, carried in the message.
		deadline, _ := time.Parse(time.RFC3339Nano, m.Attributes[event.AttrDeadline])
		spanCtx, span := tracer.Start(telemetry.WithTraceparent(workCtx, m.Attributes[event.AttrTraceparent]),
			string(stage)+" batch", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(append(telemetry.JobAttributes(m.Attributes[event.AttrTenant], m.Attributes[event.AttrJob], deadline),
				attribute.String("herald.batch_seq", m.Attributes[event.AttrSeq]),
				attribute.String("messaging.message.id", m.ID))...))
		defer span.End()
		if !m.PublishTime.IsZero() {
			waited := start.Sub(m.PublishTime).Seconds()
			metrics.lag.Set(waited)
			metrics.wait.Observe(waited)
		}
		metrics.inFlight.Inc()
		err := handler(spanCtx, m)
		metrics.inFlight.Dec()
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		metrics.handle.Observe(time.Since(start).Seconds())
		switch {
		case err == nil:
			metrics.messages.WithLabelValues("acked").Inc()
			m.Ack()
		case errors.Is(err, event.ErrMalformed):
			log.ErrorContext(workCtx, "dead-lettering malformed message", "stage", stage, "message_id", m.ID, "error", err)
			attrs := make(map[string]string, len(m.Attributes)+1)
			for k, v := range m.Attributes {
				attrs[k] = v
			}
			attrs["dead_letter_reason"] = err.Error()
			if _, perr := dead.Publish(workCtx, &pubsub.Message{Data: m.Data, Attributes: attrs}).Get(workCtx); perr != nil {
				log.ErrorContext(workCtx, "dead-letter publish failed", "stage", stage, "message_id", m.ID, "error", perr)
				m.Nack()
				return
			}
			metrics.messages.WithLabelValues("dead_lettered").Inc()
			m.Ack()
		default:
			outcome := "nacked"
			if m.DeliveryAttempt != nil && *m.DeliveryAttempt >= MaxDeliveryAttempts {
				// Pub/Sub moves it to the dead-letter topic now.
				outcome = "dead_lettered"
			}
			log.WarnContext(workCtx, "batch failed, will be redelivered", "stage", stage, "message_id", m.ID,
				"tenant_id", m.Attributes[event.AttrTenant], "job_id", m.Attributes[event.AttrJob],
				"batch_seq", m.Attributes[event.AttrSeq], "outcome", outcome, "error", err)
			metrics.messages.WithLabelValues(outcome).Inc()
			m.Nack()
		}
	}
	for {
		err := sub.Receive(ctx, handle)
		if status.Code(err) != grpccodes.NotFound || ctx.Err() != nil {
			if err != nil {
				return fmt.Errorf("receive %s: %w", stage.Subscription(), err)
			}
			return nil
		}
		// The broker no longer knows the subscription: it lost the topology
		// (restarted empty, or someone deleted it). What it held is gone
		// too; ingest publishes the batches of stalled jobs again.
		log.ErrorContext(ctx, "subscription not found, creating the stage's topology again", "stage", stage, "error", err)
		if err := ensureUntil(ctx, c, stage, rebuilds, log); err != nil {
			return nil // ctx ended
		}
		log.InfoContext(ctx, "stage topology created again, receiving", "stage", stage)
	}
}
