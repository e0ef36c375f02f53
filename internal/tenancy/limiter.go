package tenancy

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter names used by the services (any string works; these keep them
// consistent across packages).
const (
	LimitRunCreate     = "runs.create"
	LimitToolCalls     = "tools.calls"
	LimitModelRequests = "models.requests"
	LimitModelInvoke   = "models.invoke"
)

// DefaultIdleTTL is how long an unused limiter entry is kept.
const DefaultIdleTTL = 10 * time.Minute

// sweepEvery is how many Allow calls pass between idle sweeps.
const sweepEvery = 1024

// Limiter holds token buckets keyed by (tenant, name). Limits are passed on
// every call, so a tenant's changed quota takes effect on its next request.
// Entries idle long enough to have refilled are evicted, which bounds
// memory without ever granting more than the limit. Safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	buckets map[limiterKey]*bucket
	calls   int
	now     func() time.Time
	idleTTL time.Duration
}

type limiterKey struct{ tenant, name string }

type bucket struct {
	lim      *rate.Limiter
	rps      float64
	burst    int
	lastUsed time.Time
}

// NewLimiter returns an empty Limiter.
func NewLimiter() *Limiter {
	return &Limiter{buckets: map[limiterKey]*bucket{}, now: time.Now, idleTTL: DefaultIdleTTL}
}

// Allow takes one token from the (tenantID, name) bucket refilling at
// ratePerSec up to burst. ratePerSec <= 0 means unlimited. burst <= 0
// defaults to max(1, ceil(ratePerSec)). When refused, retryAfter is how long
// until a token is available.
func (l *Limiter) Allow(tenantID, name string, ratePerSec float64, burst int) (ok bool, retryAfter time.Duration) {
	if ratePerSec <= 0 || math.IsNaN(ratePerSec) || math.IsInf(ratePerSec, 1) {
		return true, 0
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(ratePerSec)))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.calls++
	if l.calls%sweepEvery == 0 {
		l.sweepLocked(now)
	}
	k := limiterKey{tenantID, name}
	b := l.buckets[k]
	switch {
	case b == nil:
		b = &bucket{lim: rate.NewLimiter(rate.Limit(ratePerSec), burst), rps: ratePerSec, burst: burst}
		l.buckets[k] = b
	case b.rps != ratePerSec || b.burst != burst:
		// The quota changed: adjust in place, keeping the tokens already
		// spent (a raised burst does not hand out a free refill).
		b.lim.SetLimitAt(now, rate.Limit(ratePerSec))
		b.lim.SetBurstAt(now, burst)
		b.rps, b.burst = ratePerSec, burst
	}
	b.lastUsed = now
	r := b.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Duration(float64(time.Second) / ratePerSec)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// AllowPerMinute is Allow with a limit of perMinute per minute and a burst
// of perMinute. perMinute <= 0 means unlimited.
func (l *Limiter) AllowPerMinute(tenantID, name string, perMinute int) (ok bool, retryAfter time.Duration) {
	if perMinute <= 0 {
		return true, 0
	}
	return l.Allow(tenantID, name, float64(perMinute)/60, perMinute)
}

// Forget drops every bucket of a tenant (e.g. when it is deleted).
func (l *Limiter) Forget(tenantID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.buckets {
		if k.tenant == tenantID {
			delete(l.buckets, k)
		}
	}
}

// Len returns the number of live buckets.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// sweepLocked evicts buckets idle for longer than the idle TTL and than
// their own refill time (so eviction never hands out extra tokens).
func (l *Limiter) sweepLocked(now time.Time) {
	for k, b := range l.buckets {
		refill := time.Duration(float64(b.burst) / b.rps * float64(time.Second))
		if idle := now.Sub(b.lastUsed); idle > l.idleTTL && idle > refill {
			delete(l.buckets, k)
		}
	}
}
