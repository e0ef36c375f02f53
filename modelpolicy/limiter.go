package modelpolicy

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter is the per-tenant rate limiting model-policy needs;
// internal/tenancy.Limiter satisfies it. Both methods report whether the
// call may proceed and, if not, how long to wait.
type RateLimiter interface {
	Allow(tenantID, name string, ratePerSec float64, burst int) (bool, time.Duration)
	AllowPerMinute(tenantID, name string, perMinute int) (bool, time.Duration)
}

// LocalLimiter is an in-process RateLimiter of token buckets keyed by
// tenant and name. A bucket is rebuilt when its rate or burst changes.
type LocalLimiter struct {
	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	lim   *rate.Limiter
	r     rate.Limit
	burst int
}

var _ RateLimiter = (*LocalLimiter)(nil)

// NewLocalLimiter returns an empty limiter.
func NewLocalLimiter() *LocalLimiter { return &LocalLimiter{m: map[string]*bucket{}} }

func (l *LocalLimiter) allow(key string, r rate.Limit, burst int) (bool, time.Duration) {
	if burst < 1 {
		burst = 1
	}
	l.mu.Lock()
	b, ok := l.m[key]
	if !ok || b.r != r || b.burst != burst {
		b = &bucket{lim: rate.NewLimiter(r, burst), r: r, burst: burst}
		l.m[key] = b
	}
	l.mu.Unlock()
	now := time.Now()
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// Allow takes one token from a bucket of ratePerSec with burst. A rate <= 0 always allows.
func (l *LocalLimiter) Allow(tenantID, name string, ratePerSec float64, burst int) (bool, time.Duration) {
	if ratePerSec <= 0 {
		return true, 0
	}
	return l.allow(tenantID+"\x00"+name, rate.Limit(ratePerSec), burst)
}

// AllowPerMinute allows perMinute calls per minute (burst perMinute). 0 always allows.
func (l *LocalLimiter) AllowPerMinute(tenantID, name string, perMinute int) (bool, time.Duration) {
	if perMinute <= 0 {
		return true, 0
	}
	return l.allow(tenantID+"\x00"+name+"\x00pm", rate.Every(time.Minute/time.Duration(perMinute)), perMinute)
}
