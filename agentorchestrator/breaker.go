package agentorchestrator

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nexixai/agentos/internal/errs"
)

// Circuit breaker settings for model-policy. A few consecutive dependency
// failures are enough: 128 executors hitting a dead model-policy produce
// them within milliseconds, and a false open only delays leasing by one
// cooldown (runs already executing keep retrying on their own).
const (
	breakerThreshold   = 3
	breakerCooldown    = 500 * time.Millisecond
	breakerMaxCooldown = 5 * time.Second
)

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

// breaker tracks whether model-policy is known down. The scheduler leases
// no runs while it is open (a queued run started then would only wait in
// backoff, or fail), /readyz reports it, and executors feed it the outcome
// of every model call. After a cooldown it goes half-open: one probe (the
// scheduler's, see probeDue) decides whether it closes or opens again
// with a doubled cooldown.
type breaker struct {
	now func() time.Time

	mu       sync.Mutex
	state    breakerState
	failures int // consecutive
	openedAt time.Time
	cooldown time.Duration
	lastErr  string
	// closed is closed (and replaced) each time the breaker closes: runs
	// waiting in backoff retry at once instead of sleeping out a wait
	// chosen while model-policy was down.
	closed   chan struct{}
	onChange func(open bool, reason string)
}

func newBreaker(now func() time.Time, onChange func(open bool, reason string)) *breaker {
	return &breaker{now: now, cooldown: breakerCooldown, closed: make(chan struct{}), onChange: onChange}
}

// dependencyFailure says whether err means model-policy (or a provider
// behind it) is unavailable, as opposed to an answer about this request.
func dependencyFailure(err error) bool {
	e := errs.As(err)
	return e.Code.Retryable() && e.Code != errs.RateLimited
}

// record feeds the breaker the outcome of one call to the dependency.
func (b *breaker) record(err error) {
	if err != nil && !dependencyFailure(err) {
		err = nil // the dependency answered
	}
	b.mu.Lock()
	var changed, open bool
	var reason string
	switch {
	case err == nil:
		b.failures = 0
		b.cooldown = breakerCooldown
		if b.state != breakerClosed {
			b.state, changed, reason = breakerClosed, true, "model-policy answered"
			close(b.closed)
			b.closed = make(chan struct{})
		}
	default:
		b.failures++
		b.lastErr = err.Error()
		switch {
		case b.state == breakerHalfOpen:
			b.cooldown = min(2*b.cooldown, breakerMaxCooldown)
			b.state, b.openedAt, changed, open, reason = breakerOpen, b.now(), true, true, b.lastErr
		case b.state == breakerClosed && b.failures >= breakerThreshold:
			b.state, b.openedAt, changed, open, reason = breakerOpen, b.now(), true, true, b.lastErr
		}
	}
	b.mu.Unlock()
	if changed && b.onChange != nil {
		b.onChange(open, reason)
	}
}

// allowLease says whether the scheduler may lease runs now.
func (b *breaker) allowLease() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == breakerClosed
}

// closedSignal is closed when the breaker next closes.
func (b *breaker) closedSignal() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// probeDue moves an open breaker whose cooldown has passed to half-open
// and returns true: the caller probes the dependency and records the
// outcome. It returns false otherwise (closed, cooling down, or a probe
// already under way).
func (b *breaker) probeDue() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state != breakerOpen || b.now().Sub(b.openedAt) < b.cooldown {
		return false
	}
	b.state = breakerHalfOpen
	return true
}

// openReason is why the breaker is open ("" when closed), for /readyz.
func (b *breaker) openReason() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == breakerClosed {
		return ""
	}
	return "circuit open after consecutive failures: " + b.lastErr
}

// Retry backoff of a run's calls to a dependency.
const (
	retryBase = 200 * time.Millisecond
	retryCap  = 5 * time.Second
)

// backoff is how long to wait before retry number n+1 (n retries made so
// far): exponential from retryBase, capped at retryCap, with jitter over
// the upper half (so a crowd of runs failing together does not retry in
// lockstep), and never shorter than the dependency's Retry-After.
func backoff(n int, retryAfter time.Duration) time.Duration {
	d := retryCap
	if n < 16 {
		d = min(retryBase<<n, retryCap)
	}
	d = d/2 + rand.N(d/2+1)
	return max(d, retryAfter)
}

// sleepUntilRetry waits d unless ctx ends first (cancel, lease lost, the
// run's timeout), or until wakeEarly is closed (the dependency is back:
// retry now). It returns false, without waiting, when the wait would
// end past ctx's deadline: the retry could not happen, so the caller fails
// with the error it has now rather than a timeout later.
func sleepUntilRetry(ctx context.Context, d time.Duration, now time.Time, wakeEarly <-chan struct{}) bool {
	if dl, ok := ctx.Deadline(); ok && !now.Add(d).Before(dl) {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wakeEarly:
		return true
	}
}
