// Package limitertest is the conformance suite of tenancy.RateLimiter:
// every implementation (the in-process tenancy.Limiter, the shared
// tenancy.SharedLimiter over PostgreSQL) must pass Run.
package limitertest

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/tenancy"
)

// Run checks the limiter newLimiter returns. Tenant IDs are fresh per call,
// so implementations sharing state between calls do not interfere.
func Run(t *testing.T, newLimiter func(t *testing.T) tenancy.RateLimiter) {
	t.Run("BurstThenRefused", func(t *testing.T) {
		t.Parallel()
		l, ten := newLimiter(t), tenant()
		// 1 token per 1000 s: nothing refills during the test.
		for i := range 3 {
			ok, _ := l.Allow(ten, "x", 0.001, 3)
			require.True(t, ok, "call %d of the burst", i+1)
		}
		ok, retry := l.Allow(ten, "x", 0.001, 3)
		require.False(t, ok, "burst spent")
		require.Greater(t, retry, 900*time.Second, "retry_after is about one token's refill time")
		require.LessOrEqual(t, retry, 1000*time.Second)
	})
	t.Run("RefillsAtRate", func(t *testing.T) {
		t.Parallel()
		l, ten := newLimiter(t), tenant()
		ok, _ := l.Allow(ten, "x", 1, 1)
		require.True(t, ok)
		ok, retry := l.Allow(ten, "x", 1, 1)
		require.False(t, ok, "burst of 1 spent")
		require.Greater(t, retry, time.Duration(0))
		require.LessOrEqual(t, retry, time.Second)
		// Waiting out retry_after always finds a token.
		time.Sleep(retry + 50*time.Millisecond)
		ok, _ = l.Allow(ten, "x", 1, 1)
		require.True(t, ok, "a token refilled after retry_after")
	})
	t.Run("DefaultBurst", func(t *testing.T) {
		t.Parallel()
		l, ten := newLimiter(t), tenant()
		// rate 2.5/s, burst 0: burst max(1, ceil(2.5)) = 3.
		admitted := 0
		for range 6 {
			if ok, _ := l.Allow(ten, "x", 2.5, 0); ok {
				admitted++
			}
		}
		require.GreaterOrEqual(t, admitted, 3)
		require.LessOrEqual(t, admitted, 4, "at most one refill token in the test's time")
	})
	t.Run("Unlimited", func(t *testing.T) {
		t.Parallel()
		l, ten := newLimiter(t), tenant()
		for range 50 {
			ok, _ := l.Allow(ten, "x", 0, 1)
			require.True(t, ok)
			ok, _ = l.AllowPerMinute(ten, "y", 0)
			require.True(t, ok)
		}
	})
	t.Run("TenantsAndNamesIndependent", func(t *testing.T) {
		t.Parallel()
		l, a, b := newLimiter(t), tenant(), tenant()
		ok, _ := l.Allow(a, "x", 0.001, 1)
		require.True(t, ok)
		ok, _ = l.Allow(a, "x", 0.001, 1)
		require.False(t, ok, "tenant a spent its burst")
		ok, _ = l.Allow(b, "x", 0.001, 1)
		require.True(t, ok, "tenant b has its own bucket")
		ok, _ = l.Allow(a, "y", 0.001, 1)
		require.True(t, ok, "another limit of tenant a has its own bucket")
	})
	t.Run("QuotaChangeNoFreeRefill", func(t *testing.T) {
		t.Parallel()
		l, ten := newLimiter(t), tenant()
		for range 2 {
			ok, _ := l.Allow(ten, "x", 0.001, 2)
			require.True(t, ok)
		}
		// Raising the burst keeps the tokens already spent.
		ok, _ := l.Allow(ten, "x", 0.001, 10)
		require.False(t, ok, "a raised burst is no free refill")
		// Raising the rate applies in place: the bucket now refills at
		// 1000/s, so a token is back within a few milliseconds.
		admitted := false
		for range 200 {
			if ok, _ := l.Allow(ten, "x", 1000, 10); ok {
				admitted = true
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		require.True(t, admitted, "the raised rate applies to the existing bucket")
	})
	t.Run("LoweredBurstCaps", func(t *testing.T) {
		t.Parallel()
		l, ten := newLimiter(t), tenant()
		ok, _ := l.Allow(ten, "x", 0.001, 10) // 9 tokens left
		require.True(t, ok)
		admitted := 0
		for range 5 {
			if ok, _ := l.Allow(ten, "x", 0.001, 2); ok {
				admitted++
			}
		}
		require.Equal(t, 2, admitted, "a lowered burst caps the tokens left")
	})
	t.Run("PerMinute", func(t *testing.T) {
		t.Parallel()
		l, ten := newLimiter(t), tenant()
		for range 3 {
			ok, _ := l.AllowPerMinute(ten, "x", 3)
			require.True(t, ok)
		}
		ok, retry := l.AllowPerMinute(ten, "x", 3)
		require.False(t, ok)
		require.Greater(t, retry, 10*time.Second)
		require.LessOrEqual(t, retry, 20*time.Second)
	})
}

func tenant() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "ten_" + hex.EncodeToString(b[:])
}
