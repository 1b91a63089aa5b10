package messaging_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/testing/protocmp"

	"herald/devtools/devpubsub"
	"herald/devtools/testenv"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/messaging"
	"herald/shared/telemetry"
)

const project = "herald-test"

// broker is a Pub/Sub server that can lose everything: Restart stops it and
// starts an empty one on the same port.
type broker struct {
	t   *testing.T
	srv *devpubsub.Server
}

func startBroker(ctx context.Context, t *testing.T) *broker {
	b := &broker{t: t}
	b.start(ctx, 0)
	t.Cleanup(func() { _ = b.srv.Stop() })
	return b
}

func (b *broker) start(ctx context.Context, port int) {
	b.t.Helper()
	srv, err := devpubsub.Start(ctx, devpubsub.Options{RequireEmulator: os.Getenv("CI") == "true", Port: port, Log: slog.New(slog.NewTextHandler(b.t.Output(), nil))})
	if err != nil {
		b.t.Fatal(err)
	}
	b.srv = srv
}

func (b *broker) Restart(ctx context.Context) {
	b.t.Helper()
	_, port, _ := net.SplitHostPort(b.srv.Host())
	p, _ := strconv.Atoi(port)
	if err := b.srv.Stop(); err != nil {
		b.t.Fatal(err)
	}
	b.start(ctx, p)
}

func (b *broker) Client(ctx context.Context) *pubsub.Client {
	b.t.Helper()
	c, err := messaging.Connect(ctx, messaging.Config{Project: project, EmulatorHost: b.srv.Host()})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = c.Close() })
	return c
}

func batch(job string) event.Batch {
	return &eventv1.RecommendBatch{Job: &eventv1.Job{TenantId: "acme", JobId: job}}
}

// publish publishes until Pub/Sub takes the batch, as ingest's planner
// retries a batch, and fails the test if it never does.
func publish(ctx context.Context, t *testing.T, pub *messaging.Publisher, job string) {
	t.Helper()
	for {
		res, err := pub.Publish(ctx, batch(job), "")
		if err == nil {
			_, err = res.Get(ctx)
		}
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("publish of %s never went through: %v", job, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReceiveCarriesOnWhenTheBrokerLosesItsTopology runs a stage's workers
// while the broker restarts empty: they create the stage's topology again
// and receive what is published next, instead of giving up.
func TestReceiveCarriesOnWhenTheBrokerLosesItsTopology(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := startBroker(ctx, t)
	c := b.Client(ctx)
	if err := messaging.EnsureTopology(ctx, c, messaging.Recommend); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	received := make(chan error, 1)
	recvCtx, stop := context.WithCancel(ctx)
	defer stop()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	go func() {
		received <- messaging.Receive(recvCtx, recvCtx, c, messaging.Recommend,
			messaging.ReceiveConfig{Streams: 1, MaxInFlight: 1, Grace: time.Second, LeaseStep: 10 * time.Second}, log,
			func(_ context.Context, m *pubsub.Message) error {
				got <- m.Attributes[event.AttrJob]
				return nil
			})
	}()
	// A plain client's publisher, which creates nothing: the workers alone
	// must bring the topology back.
	raw := c.Publisher(messaging.Recommend.Topic())
	defer raw.Stop()
	publish := func(job string) {
		t.Helper()
		if _, err := raw.Publish(ctx, &pubsub.Message{Attributes: map[string]string{event.AttrJob: job}}).Get(ctx); err != nil {
			t.Fatalf("publish %s: %v", job, err)
		}
	}
	expect := func(job string) {
		t.Helper()
		select {
		case j := <-got:
			if j != job {
				t.Fatalf("received job %q, want %q", j, job)
			}
		case err := <-received:
			t.Fatalf("receive ended while waiting for %s: %v", job, err)
		case <-ctx.Done():
			t.Fatalf("%s never arrived", job)
		}
	}
	publish("before")
	expect("before")

	b.Restart(ctx)
	// Published before the subscription is back, a message would be dropped.
	name := "projects/" + project + "/subscriptions/" + messaging.Recommend.Subscription()
	for {
		_, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name})
		if err == nil {
			break
		}
		select {
		case rerr := <-received:
			t.Fatalf("receive ended after the restart: %v", rerr)
		case <-ctx.Done():
			t.Fatalf("subscription never came back: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	publish("after")
	expect("after")

	stop()
	if err := <-received; err != nil {
		t.Fatalf("receive: %v", err)
	}
}

// TestPublisherCreatesItsTopologyAgain publishes to a stage no worker reads
// while the broker restarts empty: the publisher creates the topic and the
// workers' subscription again, so the batch waits there for them.
func TestPublisherCreatesItsTopologyAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	b := startBroker(ctx, t)
	c := b.Client(ctx)
	if err := messaging.EnsureTopology(ctx, c, messaging.Render); err != nil {
		t.Fatal(err)
	}
	pub := messaging.NewPublisher(c, messaging.Render, event.Identity, prometheus.NewRegistry())
	defer pub.Stop()
	publish(ctx, t, pub, "before")

	b.Restart(ctx)
	publish(ctx, t, pub, "after")

	recvCtx, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	var jobs []string
	err := c.Subscriber(messaging.Render.Subscription()).Receive(recvCtx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		jobs = append(jobs, m.Attributes[event.AttrJob])
		stop()
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("receive: %v", err)
	}
	if len(jobs) != 1 || jobs[0] != "after" {
		t.Fatalf("the workers' subscription holds %v, want the batch published after the restart", jobs)
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }

// TestStageNames pins the names the deployment creates topics and
// subscriptions by.
func TestStageNames(t *testing.T) {
	type names struct{ Topic, Subscription, DeadTopic, DeadSubscription string }
	for stage, want := range map[messaging.Stage]names{
		messaging.Recommend: {"herald-recommend", "herald-recommend-workers", "herald-recommend-dead", "herald-recommend-dead"},
		messaging.Render:    {"herald-render", "herald-render-workers", "herald-render-dead", "herald-render-dead"},
		messaging.Dispatch:  {"herald-dispatch", "herald-dispatch-workers", "herald-dispatch-dead", "herald-dispatch-dead"},
	} {
		got := names{stage.Topic(), stage.Subscription(), stage.DeadTopic(), stage.DeadSubscription()}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", stage, diff)
		}
	}
}

func TestConnectNeedsAProject(t *testing.T) {
	if _, err := messaging.Connect(t.Context(), messaging.Config{EmulatorHost: "localhost:1"}); err == nil {
		t.Fatal("Connect without a project succeeded")
	}
}

// stageClient returns a client on the emulator, in a project of the test's
// own, with stage's topology created.
func stageClient(ctx context.Context, t *testing.T, stage messaging.Stage) *pubsub.Client {
	t.Helper()
	c, err := messaging.Connect(ctx, testenv.Pubsub(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := messaging.EnsureTopology(ctx, c, stage); err != nil {
		t.Fatal(err)
	}
	return c
}

// receive runs messaging.Receive on stage until the returned stop is
// called; stop returns what Receive returned.
func receive(ctx context.Context, t *testing.T, c *pubsub.Client, stage messaging.Stage, cfg messaging.ReceiveConfig, h messaging.Handler) (stop func() error) {
	t.Helper()
	recvCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	go func() { done <- messaging.Receive(recvCtx, ctx, c, stage, cfg, log, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// value is the value of the metric name with labels in reg, 0 if absent.
func value(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// wait returns the next value from ch, or fails the test when ctx ends
// first.
func wait[T any](ctx context.Context, t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-ctx.Done():
		t.Fatalf("%s never happened", what)
		var zero T
		return zero
	}
}

// TestEnsureTopologyIsIdempotent: every replica runs it at start, so a
// second run succeeds and leaves the subscriptions as the first made them:
// the workers' with a dead-letter policy, the dead letters' kept a week.
func TestEnsureTopologyIsIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := stageClient(ctx, t, messaging.Dispatch)
	if err := messaging.EnsureTopology(ctx, c, messaging.Dispatch); err != nil {
		t.Fatalf("second run: %v", err)
	}
	name := func(kind, id string) string { return "projects/" + c.Project() + "/" + kind + "/" + id }
	workers, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name("subscriptions", messaging.Dispatch.Subscription())})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := workers.GetTopic(), name("topics", messaging.Dispatch.Topic()); got != want {
		t.Errorf("workers read %s, want %s", got, want)
	}
	if got, want := workers.GetDeadLetterPolicy().GetDeadLetterTopic(), name("topics", messaging.Dispatch.DeadTopic()); got != want {
		t.Errorf("workers' dead letters go to %q, want %s", got, want)
	}
	if got := workers.GetDeadLetterPolicy().GetMaxDeliveryAttempts(); got != messaging.MaxDeliveryAttempts {
		t.Errorf("workers' messages are dead-lettered after %d attempts, want %d", got, messaging.MaxDeliveryAttempts)
	}
	dead, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: name("subscriptions", messaging.Dispatch.DeadSubscription())})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dead.GetTopic(), name("topics", messaging.Dispatch.DeadTopic()); got != want {
		t.Errorf("dead letters are kept from %s, want %s", got, want)
	}
	if got := dead.GetMessageRetentionDuration().AsDuration(); got != 7*24*time.Hour {
		t.Errorf("dead letters are kept %v, want a week", got)
	}
}

// TestPublishedBatchReachesTheStage: a batch published in either encoding
// arrives whole at the stage's handler, with the attributes that name it
// and the trace it belongs to, and is counted.
func TestPublishedBatchReachesTheStage(t *testing.T) {
	for _, encoding := range []string{event.Identity, event.Zstd} {
		t.Run(encoding, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			c := stageClient(ctx, t, messaging.Dispatch)
			reg := prometheus.NewRegistry()
			pub := messaging.NewPublisher(c, messaging.Dispatch, encoding, reg)
			defer pub.Stop()
			sent := &eventv1.DispatchBatch{From: "shop@acme.example", Job: &eventv1.Job{TenantId: "acme", JobId: "0d3c1a52-8d2e-4f43-9b61-4c5a0f6e2a11", Seq: 4, Channel: "email"},
				Messages: []*eventv1.Rendered{{CustomerId: "c1", Email: "c1@example.com", Mime: []byte(strings.Repeat("Hello. ", 200))}}}
			const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			res, err := pub.Publish(ctx, sent, traceparent)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := res.Get(ctx); err != nil {
				t.Fatalf("publish: %v", err)
			}

			type arrival struct {
				batch       *eventv1.DispatchBatch
				attrs       map[string]string
				bytes       int
				traceparent string
			}
			got := make(chan arrival, 1)
			stop := receive(ctx, t, c, messaging.Dispatch, messaging.ReceiveConfig{Streams: 1, MaxInFlight: 1, Grace: time.Second, LeaseStep: 10 * time.Second, Registry: reg},
				func(ctx context.Context, m *pubsub.Message) error {
					var b eventv1.DispatchBatch
					if err := event.Decode(m.Data, m.Attributes, &b); err != nil {
						return err
					}
					got <- arrival{&b, m.Attributes, len(m.Data), telemetry.Traceparent(ctx)}
					return nil
				})
			a := wait(ctx, t, got, "the batch's arrival")
			if err := stop(); err != nil {
				t.Fatalf("receive: %v", err)
			}
			if diff := cmp.Diff(sent, a.batch, protocmp.Transform()); diff != "" {
				t.Errorf("batch received (-sent +received):\n%s", diff)
			}
			for k, want := range map[string]string{event.AttrTenant: "acme", event.AttrJob: sent.Job.JobId, event.AttrSeq: "4",
				event.AttrEncoding: encoding, event.AttrTraceparent: traceparent} {
				if a.attrs[k] != want {
					t.Errorf("attribute %s = %q, want %q", k, a.attrs[k], want)
				}
			}
			// The handler's span is a child in the batch's trace.
			if !strings.HasPrefix(a.traceparent, traceparent[:36]) {
				t.Errorf("handler's trace context %q is not in the trace of %q", a.traceparent, traceparent)
			}
			topic := map[string]string{"topic": messaging.Dispatch.Topic()}
			if got := value(t, reg, "herald_published_messages_total", topic); got != 1 {
				t.Errorf("published messages counted %v, want 1", got)
			}
			if got := value(t, reg, "herald_published_bytes_total", topic); got != float64(a.bytes) {
				t.Errorf("published bytes counted %v, want the message's %d", got, a.bytes)
			}
			if got := value(t, reg, "herald_stage_messages_total", map[string]string{"outcome": "acked"}); got != 1 {
				t.Errorf("acked messages counted %v, want 1", got)
			}
		})
	}
}

// TestPublishRefusesABatchTooLargeForOneMessage: the caller is told to
// split the batch, and nothing is published.
func TestPublishRefusesABatchTooLargeForOneMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := stageClient(ctx, t, messaging.Dispatch)
	reg := prometheus.NewRegistry()
	pub := messaging.NewPublisher(c, messaging.Dispatch, event.Identity, reg)
	defer pub.Stop()
	noise := make([]byte, messaging.MaxMessageBytes+1)
	_, _ = rand.Read(noise)
	b := &eventv1.DispatchBatch{Job: &eventv1.Job{TenantId: "acme", JobId: "j"}, Messages: []*eventv1.Rendered{{CustomerId: "c1", Mime: noise}}}
	if _, err := pub.Publish(ctx, b, ""); !errors.Is(err, messaging.ErrTooLarge) {
		t.Fatalf("publish of %d bytes: %v, want %v", len(noise), err, messaging.ErrTooLarge)
	}
	if got := value(t, reg, "herald_published_messages_total", nil); got != 0 {
		t.Errorf("published messages counted %v, want 0", got)
	}
}

// TestHandlerDecidesAckNackOrDeadLetter: a message whose handler succeeds
// is acked; one whose handler fails is redelivered until it succeeds; a
// malformed one goes straight to the stage's dead letters, whole and with
// the reason, and is not redelivered.
func TestHandlerDecidesAckNackOrDeadLetter(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := stageClient(ctx, t, messaging.Render)
	reg := prometheus.NewRegistry()
	var mu sync.Mutex
	attempts := map[string]int{}
	handled := make(chan string, 10)
	stop := receive(ctx, t, c, messaging.Render, messaging.ReceiveConfig{Streams: 1, MaxInFlight: 4, Grace: time.Second, LeaseStep: 10 * time.Second, Registry: reg},
		func(_ context.Context, m *pubsub.Message) error {
			job := m.Attributes[event.AttrJob]
			mu.Lock()
			attempts[job]++
			n := attempts[job]
			mu.Unlock()
			defer func() { handled <- job }()
			switch {
			case job == "malformed":
				return fmt.Errorf("%w: schema %q", event.ErrMalformed, m.Attributes[event.AttrSchema])
			case job == "flaky" && n == 1:
				return errors.New("database unavailable")
			}
			return nil
		})
	raw := c.Publisher(messaging.Render.Topic())
	defer raw.Stop()
	for _, job := range []string{"fine", "flaky", "malformed"} {
		m := &pubsub.Message{Data: []byte("body of " + job), Attributes: map[string]string{event.AttrJob: job, event.AttrSchema: "herald.v1.RenderBatch"}}
		if _, err := raw.Publish(ctx, m).Get(ctx); err != nil {
			t.Fatalf("publish %s: %v", job, err)
		}
	}
	// fine once, flaky twice, malformed once.
	for range 4 {
		wait(ctx, t, handled, "every message's handling")
	}

	deadCtx, gotDead := context.WithCancel(ctx)
	var dead []*pubsub.Message
	err := c.Subscriber(messaging.Render.DeadSubscription()).Receive(deadCtx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		dead = append(dead, m)
		mu.Unlock()
		gotDead()
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("receive dead letters: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("no dead letter arrived")
	}
	if err := stop(); err != nil {
		t.Fatalf("receive: %v", err)
	}
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	if got := string(dead[0].Data); got != "body of malformed" {
		t.Errorf("dead letter holds %q, want the malformed message's body", got)
	}
	if got := dead[0].Attributes[event.AttrJob]; got != "malformed" {
		t.Errorf("dead letter's job attribute %q, want the original's", got)
	}
	if got := dead[0].Attributes["dead_letter_reason"]; !strings.Contains(got, event.ErrMalformed.Error()) {
		t.Errorf("dead letter's reason %q does not say it is malformed", got)
	}
	mu.Lock()
	if diff := cmp.Diff(map[string]int{"fine": 1, "flaky": 2, "malformed": 1}, attempts); diff != "" {
		t.Errorf("handler calls by message (-want +got):\n%s", diff)
	}
	mu.Unlock()
	for outcome, want := range map[string]float64{"acked": 2, "nacked": 1, "dead_lettered": 1} {
		if got := value(t, reg, "herald_stage_messages_total", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("%s messages counted %v, want %v", outcome, got, want)
		}
	}
}

// TestReceiveBoundsBatchesInFlight: a stream hands the handler no more
// than MaxInFlight batches at once, however many wait.
func TestReceiveBoundsBatchesInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c := stageClient(ctx, t, messaging.Recommend)
	raw := c.Publisher(messaging.Recommend.Topic())
	defer raw.Stop()
	const messages, limit = 12, 2
	for i := range messages {
		if _, err := raw.Publish(ctx, &pubsub.Message{Attributes: map[string]string{event.AttrJob: strconv.Itoa(i)}}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var inFlight, most atomic.Int32
	handled := make(chan struct{}, messages)
	stop := receive(ctx, t, c, messaging.Recommend, messaging.ReceiveConfig{Streams: 1, MaxInFlight: limit, Grace: time.Second, LeaseStep: 10 * time.Second},
		func(context.Context, *pubsub.Message) error {
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(50 * time.Millisecond) // long enough for more to arrive if the bound did not hold
			inFlight.Add(-1)
			handled <- struct{}{}
			return nil
		})
	for range messages {
		wait(ctx, t, handled, "every message's handling")
	}
	if err := stop(); err != nil {
		t.Fatalf("receive: %v", err)
	}
	if got := most.Load(); got > limit {
		t.Errorf("%d batches in flight at once, want at most %d", got, limit)
	}
}

// TestSoftShutdownFinishesInFlightBatches: once its context ends, Receive
// stops pulling but lets the handler that is running finish on the work
// context, acks what it finished, and only then returns.
//
// That the ack reaches Pub/Sub is not asserted, because it does not: with
// a shutdown timeout, the client (pubsub/v2 v2.9.0) cancels the pull
// stream first, and the stream's end stops the goroutine that would send
// acks made after it. A batch finished in the grace period therefore comes
// back after its ack deadline; the ledger makes the repeat a no-op.
func TestSoftShutdownFinishesInFlightBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := stageClient(ctx, t, messaging.Dispatch)
	raw := c.Publisher(messaging.Dispatch.Topic())
	defer raw.Stop()
	if _, err := raw.Publish(ctx, &pubsub.Message{Attributes: map[string]string{event.AttrJob: "j"}}).Get(ctx); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	started, release := make(chan struct{}), make(chan struct{})
	var finished atomic.Bool
	var workErr error
	var once sync.Once
	stop := receive(ctx, t, c, messaging.Dispatch, messaging.ReceiveConfig{Streams: 1, MaxInFlight: 1, Grace: time.Minute, LeaseStep: 10 * time.Second, Registry: reg},
		func(ctx context.Context, _ *pubsub.Message) error {
			once.Do(func() { close(started) })
			<-release
			time.Sleep(200 * time.Millisecond) // the commit
			workErr = ctx.Err()
			finished.Store(true)
			return nil
		})
	wait(ctx, t, started, "the handler's start")
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	close(release)
	if err := wait(ctx, t, stopped, "the end of Receive"); err != nil {
		t.Fatalf("receive: %v", err)
	}
	if !finished.Load() {
		t.Fatal("Receive returned before the in-flight handler finished")
	}
	if workErr != nil {
		t.Errorf("the in-flight handler's context ended with the soft shutdown: %v", workErr)
	}
	if got := value(t, reg, "herald_stage_messages_total", map[string]string{"outcome": "acked"}); got != 1 {
		t.Errorf("acked messages counted %v, want the finished one", got)
	}
}
