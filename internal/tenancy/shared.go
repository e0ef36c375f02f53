package tenancy

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"
)

// RateLimiter is the port the services rate-limit through. Limiter (in
// process, the embedded default) and SharedLimiter (buckets in the shared
// PostgreSQL store, exact across replicas) implement it.
type RateLimiter interface {
	// Allow takes one token from the (tenantID, name) bucket refilling at
	// ratePerSec up to burst; see Limiter.Allow.
	Allow(tenantID, name string, ratePerSec float64, burst int) (ok bool, retryAfter time.Duration)
	// AllowPerMinute is Allow with perMinute per minute and a burst of
	// perMinute.
	AllowPerMinute(tenantID, name string, perMinute int) (ok bool, retryAfter time.Duration)
}

var (
	_ RateLimiter = (*Limiter)(nil)
	_ RateLimiter = (*SharedLimiter)(nil)
)

// TokenBuckets is a store of token buckets shared by replicas
// (internal/store/postgres.DB.TakeToken). ratePerSec and burst are > 0.
type TokenBuckets interface {
	TakeToken(ctx context.Context, tenantID, name string, ratePerSec float64, burst int) (ok bool, retryAfter time.Duration, err error)
}

// sharedTimeout bounds one bucket round trip. The limiter sits on request
// paths that have no context of their own to pass down.
const sharedTimeout = 2 * time.Second

// SharedLimiter keeps its buckets in a TokenBuckets store, so N replicas on
// one store admit a tenant's rate once, not N times. When the store cannot
// be reached it falls back to an in-process Limiter (the limit then holds
// per replica, as with the embedded store) rather than refusing every
// request or admitting all of them; each fallback is logged.
type SharedLimiter struct {
	buckets  TokenBuckets
	fallback *Limiter
	log      *slog.Logger
	// Fallbacks counts calls answered by the in-process fallback.
	Fallbacks atomic.Int64
}

// NewSharedLimiter returns a limiter over buckets; log may be nil.
func NewSharedLimiter(buckets TokenBuckets, log *slog.Logger) *SharedLimiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SharedLimiter{buckets: buckets, fallback: NewLimiter(), log: log}
}

// Allow has Limiter.Allow's semantics: ratePerSec <= 0 means unlimited,
// burst <= 0 defaults to max(1, ceil(ratePerSec)).
func (l *SharedLimiter) Allow(tenantID, name string, ratePerSec float64, burst int) (bool, time.Duration) {
	if ratePerSec <= 0 || math.IsNaN(ratePerSec) || math.IsInf(ratePerSec, 1) {
		return true, 0
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(ratePerSec)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	ok, retry, err := l.buckets.TakeToken(ctx, tenantID, name, ratePerSec, burst)
	if err != nil {
		l.Fallbacks.Add(1)
		l.log.Warn("shared rate limit unavailable, limiting in process", "tenant_id", tenantID, "limit", name, "err", err)
		return l.fallback.Allow(tenantID, name, ratePerSec, burst)
	}
	return ok, retry
}

// AllowPerMinute is Allow with a limit of perMinute per minute and a burst
// of perMinute. perMinute <= 0 means unlimited.
func (l *SharedLimiter) AllowPerMinute(tenantID, name string, perMinute int) (bool, time.Duration) {
	if perMinute <= 0 {
		return true, 0
	}
	return l.Allow(tenantID, name, float64(perMinute)/60, perMinute)
}
