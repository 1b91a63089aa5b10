// Package ratelimit enforces send rates that hold across every dispatch
// replica. Each limit is a token bucket row in PostgreSQL; a replica takes
// tokens from it in small amounts (at most the bucket's burst, about 1% of
// its rate) and keeps what it took in a local reservoir, so the total sent by
// all replicas over any window is at most rate × window + burst. A bucket's
// rate adapts: halved when the provider throttles, grown back additively once
// the throttling stops.
package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	//go:embed sql/ensure.sql
	ensureSQL string
	//go:embed sql/take.sql
	takeSQL string
	//go:embed sql/throttle.sql
	throttleSQL string
)

// Bucket is a configured limit.
type Bucket struct {
	Name string
	// Rate is the ceiling in sends per second.
	Rate float64
}

// Limiter takes tokens from shared buckets.
type Limiter struct {
	db       *pgxpool.Pool
	cooldown time.Duration
	mu       sync.Mutex
	known    map[string]*reservoir
	waited   *prometheus.CounterVec
	rate     *prometheus.GaugeVec
	cuts     *prometheus.CounterVec
}

// reservoir holds tokens this replica took but has not used yet.
type reservoir struct {
	mu     sync.Mutex
	tokens float64
	rate   float64
	burst  float64
}

// New returns a limiter; after a throttle, a bucket grows back only once
// cooldown has passed without another.
func New(db *pgxpool.Pool, cooldown time.Duration, reg prometheus.Registerer) *Limiter {
	f := promauto.With(reg)
	return &Limiter{
		db: db, cooldown: cooldown, known: map[string]*reservoir{},
		waited: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ratelimit_wait_seconds_total", Help: "Time spent waiting for send tokens, by bucket.",
		}, []string{"bucket"}),
		rate: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_ratelimit_rate", Help: "Current rate of each bucket in sends per second (headroom is this against the configured ceiling).",
		}, []string{"bucket"}),
		cuts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ratelimit_throttles_total", Help: "Times a bucket's rate was cut because the provider throttled.",
		}, []string{"bucket"}),
	}
}

// Burst is the bucket size used for a rate: about 1% of it, at least 1.
func Burst(rate float64) float64 { return math.Max(1, math.Round(rate/100)) }

// Ensure creates or updates the buckets; only buckets ensured by this
// process are enforced by it, others are treated as unlimited.
func (l *Limiter) Ensure(ctx context.Context, buckets ...Bucket) error {
	for _, b := range buckets {
		if b.Rate <= 0 {
			return fmt.Errorf("bucket %s: rate must be positive", b.Name)
		}
		burst := Burst(b.Rate)
		if _, err := l.db.Exec(ctx, ensureSQL, b.Name, b.Rate, math.Max(b.Rate/100, 0.1), burst); err != nil {
			return fmt.Errorf("ensure rate bucket %s: %w", b.Name, err)
		}
		l.mu.Lock()
		if r, ok := l.known[b.Name]; ok {
			r.mu.Lock()
			r.rate, r.burst = b.Rate, burst
			r.mu.Unlock()
		} else {
			l.known[b.Name] = &reservoir{rate: b.Rate, burst: burst}
		}
		l.mu.Unlock()
		l.rate.WithLabelValues(b.Name).Set(b.Rate)
	}
	return nil
}

// Known reports whether bucket is enforced.
func (l *Limiter) Known(bucket string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.known[bucket]
	return ok
}

// Take obtains the same number of tokens, up to n, from every enforced
// bucket in names, waiting at most maxWait, and returns that number. If one
// bucket gives fewer than another, the surplus goes back to this replica's
// reservoir of the more generous one for the next call.
func (l *Limiter) Take(ctx context.Context, names []string, n int, maxWait time.Duration) (int, error) {
	deadline := time.Now().Add(maxWait)
	type taken struct {
		r *reservoir
		k int
	}
	var held []taken
	giveBack := func(keep int) {
		for _, t := range held {
			t.r.mu.Lock()
			t.r.tokens += float64(t.k - keep)
			t.r.mu.Unlock()
		}
	}
	got := n
	for _, name := range names {
		l.mu.Lock()
		r := l.known[name]
		l.mu.Unlock()
		if r == nil {
			continue
		}
		k, err := l.reserve(ctx, name, r, got, deadline)
		if err != nil {
			giveBack(0)
			return 0, err
		}
		held = append(held, taken{r, k})
		got = min(got, k)
	}
	giveBack(got)
	return got, nil
}

// reserve tops r up from the database until it holds want tokens or the
// deadline passes, then takes up to want of them out and returns how many.
func (l *Limiter) reserve(ctx context.Context, name string, r *reservoir, want int, deadline time.Time) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > time.Millisecond {
			l.waited.WithLabelValues(name).Add(d.Seconds())
		}
	}()
	take := func(k int) int {
		r.tokens -= float64(k)
		return k
	}
	for {
		if r.tokens >= float64(want) {
			return take(want), nil
		}
		// Ask for what is missing, but never more than the burst: what a
		// replica holds unused is capacity the others cannot have.
		ask := math.Min(float64(want)-r.tokens, r.burst)
		var granted, rate float64
		if err := l.db.QueryRow(ctx, takeSQL, name, ask, l.cooldown.Seconds()).Scan(&granted, &rate); err != nil {
			return 0, fmt.Errorf("take tokens from %s: %w", name, err)
		}
		r.tokens += granted
		if !math.IsInf(rate, 0) {
			r.rate = rate
			l.rate.WithLabelValues(name).Set(rate)
		}
		if r.tokens >= float64(want) {
			return take(want), nil
		}
		now := time.Now()
		if !now.Before(deadline) {
			return take(max(int(r.tokens), 0)), nil
		}
		// Wait about as long as the missing tokens take to refill, in
		// slices short enough to share the bucket fairly.
		missing := math.Min(float64(want)-r.tokens, r.burst)
		wait := time.Duration(missing / math.Max(r.rate, 0.1) * float64(time.Second))
		wait = min(max(wait, time.Millisecond), 50*time.Millisecond, deadline.Sub(now))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// Throttled tells the limiter the provider asked to slow down on bucket:
// its shared rate is halved and this replica drops the tokens it holds.
func (l *Limiter) Throttled(ctx context.Context, bucket string) error {
	l.mu.Lock()
	r := l.known[bucket]
	l.mu.Unlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	r.tokens = math.Min(r.tokens, 0)
	r.mu.Unlock()
	var rate float64
	err := l.db.QueryRow(ctx, throttleSQL, bucket).Scan(&rate)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil // cut less than a second ago
	case err != nil:
		return fmt.Errorf("throttle %s: %w", bucket, err)
	}
	l.cuts.WithLabelValues(bucket).Inc()
	l.rate.WithLabelValues(bucket).Set(rate)
	return nil
}
