package messaging_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/devpubsub"
	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
	"herald/shared/messaging"
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
