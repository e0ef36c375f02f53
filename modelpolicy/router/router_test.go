package router

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

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestBreakerLifecycle(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(0, 0)}
	b := NewBreakers(BreakerConfig{FailureThreshold: 2, Cooldown: time.Minute}, c.now)
	require.True(t, b.Allow("x"))
	b.Failure("x")
	require.Equal(t, StateClosed, b.State("x"))
	b.Failure("x")
	require.Equal(t, StateOpen, b.State("x"))
	require.False(t, b.Allow("x"))
	require.True(t, b.Allow("y"), "breakers are per backend")
	c.add(time.Minute)
	require.True(t, b.Allow("x"), "one trial after the cooldown")
	require.False(t, b.Allow("x"), "only one trial at a time")
	b.Failure("x")
	require.Equal(t, StateOpen, b.State("x"), "a failed trial reopens")
	c.add(time.Minute)
	require.True(t, b.Allow("x"))
	b.Success("x")
	require.Equal(t, StateClosed, b.State("x"))
	require.True(t, b.Allow("x"))
	// Release frees a half-open slot without changing state.
	b.Failure("x")
	b.Failure("x")
	c.add(time.Minute)
	require.True(t, b.Allow("x"))
	b.Release("x")
	require.True(t, b.Allow("x"))
}

func TestCanaryStableAndProportional(t *testing.T) {
	t.Parallel()
	require.Equal(t, Bucket("tnt_a"), Bucket("tnt_a"))
	in := 0
	for i := 0; i < 2000; i++ {
		key := "tnt_" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		if InCanary("c", key, 25) {
			in++
		}
		require.Equal(t, InCanary("c", key, 25), InCanary("c", key, 25))
	}
	require.InDelta(t, 500, in, 150)
	require.False(t, InCanary("c", "k", 0))
	require.True(t, InCanary("c", "k", 100))
}

func TestLatencies(t *testing.T) {
	t.Parallel()
	l := NewLatencies()
	_, ok := l.Get("x")
	require.False(t, ok)
	l.Observe("x", 100*time.Millisecond)
	l.Observe("x", 200*time.Millisecond)
	v, ok := l.Get("x")
	require.True(t, ok)
	require.InDelta(t, 120, v, 0.001)
}
