package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"herald/devtools/testenv"
	"herald/dispatch/internal/ratelimit"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestRateHoldsAcrossReplicas runs three limiters — three dispatch
// replicas — against one bucket as hard as they can, and checks that
// together they never get more than the rate allows.
func TestRateHoldsAcrossReplicas(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	const rate = 1000.0
	var replicas []*ratelimit.Limiter
	for range 3 {
		l := ratelimit.New(db, time.Minute, prometheus.NewRegistry())
		if err := l.Ensure(ctx, ratelimit.Bucket{Name: "tenant:acme", Rate: rate}); err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, l)
	}
	var total atomic.Int64
	start := time.Now()
	run := 3 * time.Second
	var wg sync.WaitGroup
	for _, l := range replicas {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < run {
					n, err := l.Take(ctx, []string{"tenant:acme", "unlimited:bucket"}, 25, 200*time.Millisecond)
					if err != nil {
						t.Error(err)
						return
					}
					total.Add(int64(n))
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	allowed := rate*elapsed + 2*ratelimit.Burst(rate) // the initial full bucket plus one burst of slack
	got := float64(total.Load())
	t.Logf("three replicas got %.0f tokens in %.2fs: %.0f/s against a limit of %.0f/s", got, elapsed, got/elapsed, rate)
	if got > allowed {
		t.Fatalf("replicas together got %.0f tokens, more than the %.0f the rate allows", got, allowed)
	}
	if got < 0.5*rate*elapsed {
		t.Fatalf("replicas together got only %.0f tokens in %.2fs: the limiter starves them", got, elapsed)
	}
}

func TestThrottleHalvesAndRecovers(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	l := ratelimit.New(db, 200*time.Millisecond, prometheus.NewRegistry())
	if err := l.Ensure(ctx, ratelimit.Bucket{Name: "mailbox:gmail", Rate: 400}); err != nil {
		t.Fatal(err)
	}
	rate := func() float64 {
		var r float64
		if err := db.QueryRow(ctx, `SELECT rate FROM rate_buckets WHERE name = 'mailbox:gmail'`).Scan(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if err := l.Throttled(ctx, "mailbox:gmail"); err != nil {
		t.Fatal(err)
	}
	// A second refusal in the same second is the same signal, not another cut.
	if err := l.Throttled(ctx, "mailbox:gmail"); err != nil {
		t.Fatal(err)
	}
	if r := rate(); r != 200 {
		t.Fatalf("rate after throttling %.1f, want 200", r)
	}
	time.Sleep(600 * time.Millisecond)
	if _, err := l.Take(ctx, []string{"mailbox:gmail"}, 1, time.Second); err != nil {
		t.Fatal(err)
	}
	if r := rate(); r <= 200 || r > 400 {
		t.Fatalf("rate after the cooldown %.1f, want it growing back above 200 and at most 400", r)
	}
}
