package tenancy

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTestLimiter() (*Limiter, *clock) {
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewLimiter()
	l.now = c.now
	return l, c
}

func TestLimiterBurstAndRefill(t *testing.T) {
	t.Parallel()
	l, c := newTestLimiter()
	for i := 0; i < 4; i++ {
		ok, _ := l.Allow("tnt_a", LimitRunCreate, 2, 4)
		require.True(t, ok, "request %d within burst", i)
	}
	ok, retry := l.Allow("tnt_a", LimitRunCreate, 2, 4)
	require.False(t, ok)
	require.Equal(t, 500*time.Millisecond, retry)

	// Another tenant and another name have their own buckets.
	ok, _ = l.Allow("tnt_b", LimitRunCreate, 2, 4)
	require.True(t, ok)
	ok, _ = l.Allow("tnt_a", LimitToolCalls, 2, 4)
	require.True(t, ok)

	c.advance(500 * time.Millisecond)
	ok, _ = l.Allow("tnt_a", LimitRunCreate, 2, 4)
	require.True(t, ok)
	ok, _ = l.Allow("tnt_a", LimitRunCreate, 2, 4)
	require.False(t, ok)
}

func TestLimiterUnlimitedAndDefaults(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter()
	for i := 0; i < 1000; i++ {
		ok, _ := l.Allow("tnt_a", "x", 0, 0)
		require.True(t, ok)
		ok, _ = l.AllowPerMinute("tnt_a", "y", 0)
		require.True(t, ok)
	}
	require.Equal(t, 0, l.Len(), "unlimited calls keep no state")

	// burst <= 0 defaults to ceil(rate).
	ok, _ := l.Allow("tnt_a", "z", 1.5, 0)
	require.True(t, ok)
	ok, _ = l.Allow("tnt_a", "z", 1.5, 0)
	require.True(t, ok)
	ok, _ = l.Allow("tnt_a", "z", 1.5, 0)
	require.False(t, ok)
}

func TestLimiterPerMinute(t *testing.T) {
	t.Parallel()
	l, c := newTestLimiter()
	for i := 0; i < 3; i++ {
		ok, _ := l.AllowPerMinute("tnt_a", LimitModelRequests, 3)
		require.True(t, ok)
	}
	ok, retry := l.AllowPerMinute("tnt_a", LimitModelRequests, 3)
	require.False(t, ok)
	require.Equal(t, 20*time.Second, retry)
	c.advance(20 * time.Second)
	ok, _ = l.AllowPerMinute("tnt_a", LimitModelRequests, 3)
	require.True(t, ok)
}

func TestLimiterLimitChangesTakeEffect(t *testing.T) {
	t.Parallel()
	l, c := newTestLimiter()
	ok, _ := l.Allow("tnt_a", LimitRunCreate, 1, 1)
	require.True(t, ok)
	ok, _ = l.Allow("tnt_a", LimitRunCreate, 1, 1)
	require.False(t, ok)

	// Raising the rate applies at once: at 100/s the next token is at most
	// 10ms away, not a second.
	ok, retry := l.Allow("tnt_a", LimitRunCreate, 100, 1)
	require.False(t, ok)
	require.LessOrEqual(t, retry, 10*time.Millisecond)
	c.advance(10 * time.Millisecond)
	ok, _ = l.Allow("tnt_a", LimitRunCreate, 100, 1)
	require.True(t, ok)

	// Lowering the limit applies at once too.
	c.advance(time.Second)
	ok, _ = l.Allow("tnt_a", LimitRunCreate, 0.1, 1)
	require.True(t, ok)
	ok, retry = l.Allow("tnt_a", LimitRunCreate, 0.1, 1)
	require.False(t, ok)
	require.Equal(t, 10*time.Second, retry)

	// A raised burst does not refill spent tokens.
	ok, _ = l.Allow("tnt_a", LimitRunCreate, 0.1, 5)
	require.False(t, ok)
}

// TestLimiterQuotaChangeNoRefill: changing a quota keeps the tokens
// already spent; only the refill rate and the cap change.
func TestLimiterQuotaChangeNoRefill(t *testing.T) {
	t.Parallel()
	l, c := newTestLimiter()
	for range 2 {
		ok, _ := l.AllowPerMinute("tnt_a", LimitModelRequests, 2)
		require.True(t, ok)
	}
	// Raised from 2 to 600 a minute: the bucket is empty, so the next call
	// waits for one token at the new rate (100 ms), not for nothing.
	ok, retry := l.AllowPerMinute("tnt_a", LimitModelRequests, 600)
	require.False(t, ok, "a raised quota handed out a free refill")
	require.Equal(t, 100*time.Millisecond, retry)
	c.advance(100 * time.Millisecond)
	ok, _ = l.AllowPerMinute("tnt_a", LimitModelRequests, 600)
	require.True(t, ok)
	ok, _ = l.AllowPerMinute("tnt_a", LimitModelRequests, 600)
	require.False(t, ok)

	// Lowered from a full bucket of 10 to 3: at most 3 pass.
	for range 10 {
		l.Allow("tnt_b", "x", 1, 10)
	}
	c.advance(time.Minute)
	granted := 0
	for range 10 {
		if ok, _ := l.Allow("tnt_b", "x", 1, 3); ok {
			granted++
		}
	}
	require.Equal(t, 3, granted)
	require.Equal(t, 2, l.Len(), "a quota change keeps one bucket per key")
}

func TestLimiterEvictsIdle(t *testing.T) {
	t.Parallel()
	l, c := newTestLimiter()
	ok, _ := l.Allow("tnt_old", "x", 1, 1)
	require.True(t, ok)
	// A slow bucket whose refill takes longer than the idle TTL is kept.
	ok, _ = l.Allow("tnt_slow", "x", 0.001, 1)
	require.True(t, ok)
	c.advance(DefaultIdleTTL + time.Second)
	for i := 0; i < sweepEvery; i++ {
		l.Allow("tnt_new", "x", 1e9, 1e9)
	}
	require.Equal(t, 2, l.Len())
	ok, _ = l.Allow("tnt_slow", "x", 0.001, 1)
	require.False(t, ok, "evicting would have granted a token early")

	l.Forget("tnt_slow")
	require.Equal(t, 1, l.Len())
}

func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter() // frozen clock: exactly burst grants
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if ok, _ := l.Allow("tnt_a", "x", 5, 40); ok {
					mu.Lock()
					granted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 40, granted)
}
