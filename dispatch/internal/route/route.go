// Package route chooses which provider delivers a channel's messages: the
// channel's providers in order of preference — dispatch's configured order,
// or the tenant's own where it names one — each behind a circuit breaker, so
// that when the primary fails, the fallback takes over and the primary is
// probed again after a cool-off.
package route

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"herald/dispatch/internal/provider"
	"herald/shared/event"
)

// Breaker states, as exported in herald_provider_breaker_state.
const (
	Closed   = 0
	HalfOpen = 1
	Open     = 2
)

// Provider is a sender behind a breaker, with the reconciler that settles
// its unknown outcomes (nil if none).
type Provider struct {
	provider.Sender
	Reconciler provider.Reconciler
	// Kind is the name configuration uses for the provider, and tenants in
	// their order of preference: "smtp" or "esp" for email, the channel's
	// event.Channel.ProviderKind for the others.
	Kind    string
	breaker *breaker
}

// BreakerConfig sets when a breaker opens and how long it stays open.
type BreakerConfig struct {
	// Failures is how many consecutive failed calls open the breaker. A
	// call fails when the provider answered none of its messages
	// (connection errors, 5xx for the whole request); refusals of single
	// recipients are the recipients' business, not the provider's.
	Failures int
	// Cooloff is how long an open breaker waits before letting one probe
	// call through.
	Cooloff time.Duration
}

type breaker struct {
	cfg      BreakerConfig
	mu       sync.Mutex
	state    int
	failures int
	openedAt time.Time
	probing  bool
	gauge    prometheus.Gauge
}

// Router holds each channel's providers.
type Router struct {
	channels map[event.Channel][]*Provider
	now      func() time.Time
	errs     *prometheus.CounterVec
}

// New returns a router; add channels with Add.
func New(reg prometheus.Registerer) *Router {
	return &Router{
		channels: map[event.Channel][]*Provider{}, now: time.Now,
		errs: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "herald_provider_errors_total",
			Help: "Provider answers that were not a send, by provider and kind (deferred, throttled, unknown, failed).",
		}, []string{"provider", "kind"}),
	}
}

// Add appends a provider of the given kind to channel's list, after those
// added before.
func (r *Router) Add(channel event.Channel, kind string, s provider.Sender, rec provider.Reconciler, cfg BreakerConfig, reg prometheus.Registerer) {
	g := promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "herald_provider_breaker_state", Help: "Circuit breaker of each provider: 0 closed, 1 half-open, 2 open.",
		ConstLabels: prometheus.Labels{"provider": s.Name(), "channel": string(channel)},
	})
	r.channels[channel] = append(r.channels[channel], &Provider{Sender: s, Reconciler: rec, Kind: kind, breaker: &breaker{cfg: cfg, gauge: g}})
}

// ErrNoProvider means a channel has no provider configured, or all of its
// providers' breakers are open.
var ErrNoProvider = errors.New("no provider available")

// Pick returns the first provider of channel whose breaker lets a call
// through. With prefer, the tenant's providers of that kind in its order,
// only those: a tenant that names its providers is never sent through
// another (kinds this dispatch does not run are passed over).
func (r *Router) Pick(channel event.Channel, prefer []string) (*Provider, error) {
	ps := r.channels[channel]
	if len(ps) == 0 {
		return nil, fmt.Errorf("%w for channel %q", ErrNoProvider, channel)
	}
	if len(prefer) == 0 {
		for _, p := range ps {
			if p.breaker.allow(r.now()) {
				return p, nil
			}
		}
		return nil, fmt.Errorf("%w for channel %q: every provider's breaker is open", ErrNoProvider, channel)
	}
	configured := false
	for _, kind := range prefer {
		for _, p := range ps {
			if p.Kind != kind {
				continue
			}
			configured = true
			if p.breaker.allow(r.now()) {
				return p, nil
			}
		}
	}
	if !configured {
		return nil, fmt.Errorf("%w for channel %q: the tenant's providers %v are not configured here", ErrNoProvider, channel, prefer)
	}
	return nil, fmt.Errorf("%w for channel %q: the breaker of each of the tenant's providers %v is open", ErrNoProvider, channel, prefer)
}

// Report tells the router how a call to p went.
func (r *Router) Report(p *Provider, results []provider.Result) {
	answered := false
	for _, res := range results {
		switch res.Outcome {
		case provider.Sent:
			answered = true
			continue
		case provider.Failed, provider.Throttled:
			answered = true // the provider answered, about this message
		}
		r.errs.WithLabelValues(p.Name(), res.Outcome.String()).Inc()
	}
	p.breaker.record(answered || len(results) == 0, r.now())
}

func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case Closed:
		return true
	case Open:
		if now.Sub(b.openedAt) < b.cfg.Cooloff {
			return false
		}
		b.set(HalfOpen)
		fallthrough
	default: // half-open: one probe at a time
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
}

func (b *breaker) record(ok bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	if ok {
		b.failures = 0
		b.set(Closed)
		return
	}
	b.failures++
	if b.state == HalfOpen || b.failures >= b.cfg.Failures {
		b.openedAt = now
		b.set(Open)
	}
}

func (b *breaker) set(state int) {
	b.state = state
	b.gauge.Set(float64(state))
}

// Find returns the provider named name, on any channel, or nil.
func (r *Router) Find(name string) *Provider {
	for _, ps := range r.channels {
		for _, p := range ps {
			if p.Name() == name {
				return p
			}
		}
	}
	return nil
}
