package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// tenantLimiter keeps one token bucket per tenant. Buckets idle for long
// are dropped so the map does not grow with every tenant ever seen.
type tenantLimiter struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	byID  map[string]*tenantBucket
	swept time.Time
}

type tenantBucket struct {
	lim  *rate.Limiter
	used time.Time
}

func newTenantLimiter(perSecond float64, burst int) *tenantLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &tenantLimiter{rate: rate.Limit(perSecond), burst: max(burst, 1), byID: map[string]*tenantBucket{}}
}

// allow takes a token for tenant, or says how long until one is free.
func (l *tenantLimiter) allow(tenant string, now time.Time) (time.Duration, bool) {
	if l == nil {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for id, b := range l.byID {
			if now.Sub(b.used) > 10*time.Minute {
				delete(l.byID, id)
			}
		}
		l.swept = now
	}
	b := l.byID[tenant]
	if b == nil {
		b = &tenantBucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.byID[tenant] = b
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// tenantSlots bounds how many requests of one kind each tenant has in
// progress at once (per replica), whatever their rate: a slow request
// costs for as long as it lasts, which a rate limit does not see.
type tenantSlots struct {
	max  int
	mu   sync.Mutex
	used map[string]int
}

func newTenantSlots(max int) *tenantSlots {
	if max <= 0 {
		return nil
	}
	return &tenantSlots{max: max, used: map[string]int{}}
}

// acquire takes a slot for tenant if one is free; release gives it back.
func (s *tenantSlots) acquire(tenant string) bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[tenant] >= s.max {
		return false
	}
	s.used[tenant]++
	return true
}

func (s *tenantSlots) release(tenant string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.used[tenant]--; s.used[tenant] <= 0 {
		delete(s.used, tenant)
	}
}
