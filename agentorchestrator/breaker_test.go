package agentorchestrator

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

func TestBackoffIsCappedJitteredAndHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	for n := range 40 {
		d := backoff(n, 0)
		ceil := retryCap
		if n < 16 {
			ceil = min(retryBase<<n, retryCap)
		}
		require.GreaterOrEqual(t, d, ceil/2, "retry %d", n)
		require.LessOrEqual(t, d, ceil, "retry %d", n)
	}
	// Retry-After wins over a shorter backoff, even past the cap.
	require.Equal(t, 7*time.Second, backoff(0, 7*time.Second))
	require.GreaterOrEqual(t, backoff(0, 100*time.Millisecond), 100*time.Millisecond)
}

func TestSleepUntilRetryRespectsDeadlineAndCancel(t *testing.T) {
	t.Parallel()
	// A wait that would end past the deadline is not started.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	require.False(t, sleepUntilRetry(ctx, 2*time.Hour, time.Now(), nil))
	require.True(t, sleepUntilRetry(ctx, time.Millisecond, time.Now(), nil))

	// A cancel interrupts a wait under way (an hour, were it not).
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(10 * time.Millisecond); cancel2() }()
	require.False(t, sleepUntilRetry(ctx2, time.Hour, time.Now(), nil))

	// The breaker closing ends a wait early: the retry happens now.
	b := newBreaker(time.Now, nil)
	recordN(b, breakerThreshold, unavailable("down"))
	wake := b.closedSignal()
	go func() { time.Sleep(10 * time.Millisecond); b.record(nil) }()
	require.True(t, sleepUntilRetry(ctx, 30*time.Minute, time.Now(), wake))
}

type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }
func newFakeClock() *fakeClock               { c := &fakeClock{}; c.t.Store(time.Now().UnixNano()); return c }
func unavailable(msg string) error           { return errs.E(errs.DependencyUnavailable, "%s", msg) }
func requireOpen(t *testing.T, b *breaker) {
	t.Helper()
	require.False(t, b.allowLease())
	require.NotEmpty(t, b.openReason())
}
func requireClosed(t *testing.T, b *breaker) {
	t.Helper()
	require.True(t, b.allowLease())
	require.Empty(t, b.openReason())
}
func recordN(b *breaker, n int, err error) {
	for range n {
		b.record(err)
	}
}

func TestBreakerOpensHalfOpensAndCloses(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	var changes []bool
	b := newBreaker(clk.now, func(open bool, _ string) { changes = append(changes, open) })
	requireClosed(t, b)

	// Answers about the request (invalid, throttled) are not outages and
	// reset the count of consecutive failures.
	invalid := errs.E(errs.InvalidRequest, "bad")
	require.False(t, dependencyFailure(invalid))
	require.False(t, dependencyFailure(&errs.Error{Code: errs.RateLimited, Message: "slow down"}))
	recordN(b, breakerThreshold-1, unavailable("down"))
	b.record(invalid)
	recordN(b, breakerThreshold-1, unavailable("down"))
	requireClosed(t, b)

	b.record(unavailable("connection refused"))
	requireOpen(t, b)
	require.Contains(t, b.openReason(), "connection refused")
	require.Equal(t, []bool{true}, changes)

	// Cooling down: no probe yet.
	require.False(t, b.probeDue())
	clk.advance(breakerCooldown)
	require.True(t, b.probeDue())
	require.False(t, b.probeDue(), "one probe at a time")
	requireOpen(t, b) // half-open still leases nothing

	// The probe fails: open again, for twice as long.
	b.record(unavailable("still down"))
	requireOpen(t, b)
	clk.advance(breakerCooldown)
	require.False(t, b.probeDue())
	clk.advance(breakerCooldown)
	require.True(t, b.probeDue())

	// The probe succeeds: closed, leasing again.
	b.record(nil)
	requireClosed(t, b)
	require.Equal(t, []bool{true, true, false}, changes)

	// Cooldowns are capped.
	for range 20 {
		recordN(b, breakerThreshold, unavailable("down"))
		clk.advance(breakerMaxCooldown)
		require.True(t, b.probeDue())
	}
}

// While model-policy is down, runs already executing wait in backoff
// (model_retries 0: no cap but the deadline) instead of failing, the
// scheduler leases no queued run, and /readyz names model-policy; once it
// is back, everything completes.
func TestModelPolicyOutageBreakerHoldsRunsAndRecovers(t *testing.T) {
	t.Parallel()
	m := &scriptedModel{}
	m.fail.Store(errs.E(errs.DependencyUnavailable, "model-policy unreachable"))
	var probes atomic.Int64
	var up atomic.Bool
	probe := func(context.Context) error {
		probes.Add(1)
		if up.Load() {
			return nil
		}
		return errors.New("connection refused")
	}
	b := setup(t, bundleOpts{model: m, modelProbe: probe})
	first := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "first"})
	doomed := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "canceled while waiting"})
	b.waitStatus("tnt_a", doomed, store.RunRunning)
	require.Eventually(t, func() bool { return !b.srv.breaker.allowLease() }, 30*time.Second, 5*time.Millisecond)

	// A cancel ends a run waiting in backoff.
	resp, out := b.do("POST", "/v1/runs/"+doomed+":cancel", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	b.waitStatus("tnt_a", doomed, store.RunCanceled)

	resp, body := b.do("GET", "/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, body["error"].(map[string]any)["message"], "model-policy")

	// Queued while open: not leased, through several failed probes.
	second := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "second"})
	require.Eventually(t, func() bool { return probes.Load() >= 2 }, 30*time.Second, 10*time.Millisecond)
	run, err := b.db.GetRun(context.Background(), "tnt_a", second)
	require.NoError(t, err)
	require.Equal(t, store.RunQueued, run.Status)
	run, err = b.db.GetRun(context.Background(), "tnt_a", first)
	require.NoError(t, err)
	require.Equal(t, store.RunRunning, run.Status, "the executing run waits in backoff")

	m.fail.Store(nil)
	up.Store(true)
	b.waitStatus("tnt_a", first, store.RunCompleted)
	b.waitStatus("tnt_a", second, store.RunCompleted)
	resp, _ = b.do("GET", "/readyz", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
