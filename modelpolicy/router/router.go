// Package router holds model-policy's routing state: a circuit breaker per
// backend, stable canary bucketing by tenant or agent, and an observed
// latency per backend. Which models form a chain is decided by the
// catalogue (package modelpolicy); this package decides how to walk it.
package router

import (
	"hash/fnv"
	"sync"
	"time"
)

// Breaker states.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half_open"
)

// BreakerConfig configures every backend's breaker.
type BreakerConfig struct {
	// FailureThreshold is how many consecutive retryable failures open the
	// breaker (default 5).
	FailureThreshold int
	// Cooldown is how long an open breaker refuses calls before letting one
	// trial call through (default 30s).
	Cooldown time.Duration
}

type breaker struct {
	state    string
	failures int
	openedAt time.Time
	trial    bool // a half-open trial call is in flight
}

// Breakers is a set of per-backend circuit breakers. Safe for concurrent use.
type Breakers struct {
	cfg BreakerConfig
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*breaker
}

// NewBreakers returns breakers with cfg (zero fields take defaults). now
// may be nil (time.Now).
func NewBreakers(cfg BreakerConfig, now func() time.Time) *Breakers {
	if cfg.FailureThreshold <= 0 {
		cfg.FailureThreshold = 5
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 30 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &Breakers{cfg: cfg, now: now, m: map[string]*breaker{}}
}

func (b *Breakers) get(backend string) *breaker {
	br, ok := b.m[backend]
	if !ok {
		br = &breaker{state: StateClosed}
		b.m[backend] = br
	}
	return br
}

// Allow reports whether a call to backend may proceed. An open breaker
// whose cooldown passed becomes half-open and lets exactly one trial call
// through until that call reports back.
func (b *Breakers) Allow(backend string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(backend)
	switch br.state {
	case StateOpen:
		if b.now().Sub(br.openedAt) < b.cfg.Cooldown {
			return false
		}
		br.state, br.trial = StateHalfOpen, true
		return true
	case StateHalfOpen:
		if br.trial {
			return false
		}
		br.trial = true
		return true
	}
	return true
}

// Success records a successful call: the breaker closes.
func (b *Breakers) Success(backend string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(backend)
	br.state, br.failures, br.trial = StateClosed, 0, false
}

// Failure records a retryable failure; it opens the breaker at the
// threshold, or at once when the call was a half-open trial.
func (b *Breakers) Failure(backend string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(backend)
	br.failures++
	if br.state == StateHalfOpen || br.failures >= b.cfg.FailureThreshold {
		br.state, br.openedAt, br.trial = StateOpen, b.now(), false
	}
}

// Release ends a call that neither succeeded nor failed retryably (for
// example the request was invalid): a half-open trial slot is freed.
func (b *Breakers) Release(backend string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(backend)
	br.trial = false
}

// State returns backend's breaker state.
func (b *Breakers) State(backend string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	br := b.get(backend)
	if br.state == StateOpen && b.now().Sub(br.openedAt) >= b.cfg.Cooldown {
		return StateHalfOpen
	}
	return br.state
}

// Bucket maps key to a stable bucket in [0, 100): the same tenant or agent
// always lands in the same canary bucket.
func Bucket(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % 100)
}

// InCanary reports whether key falls in a canary of percent (0..100)
// named name; different canaries bucket independently.
func InCanary(name, key string, percent float64) bool {
	if percent <= 0 {
		return false
	}
	if percent >= 100 {
		return true
	}
	return float64(Bucket(name+"\x00"+key)) < percent
}

// Latencies tracks an exponentially weighted moving average of observed
// call latency per backend. Safe for concurrent use.
type Latencies struct {
	mu sync.Mutex
	m  map[string]float64
}

// NewLatencies returns an empty tracker.
func NewLatencies() *Latencies { return &Latencies{m: map[string]float64{}} }

// Observe records one call's latency.
func (l *Latencies) Observe(backend string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ms := float64(d.Milliseconds())
	if old, ok := l.m[backend]; ok {
		l.m[backend] = 0.8*old + 0.2*ms
	} else {
		l.m[backend] = ms
	}
}

// Get returns the average in milliseconds and whether any call was observed.
func (l *Latencies) Get(backend string) (float64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.m[backend]
	return v, ok
}
