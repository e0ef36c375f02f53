package queuesqlite_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/queue"
	"github.com/nexixai/agentos/internal/queue/queuetest"
	queuesqlite "github.com/nexixai/agentos/internal/queue/sqlite"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func newHarness(t *testing.T) queuetest.Harness {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	q := queuesqlite.New(openDB(t))
	q.Now = clock.Now
	return queuetest.Harness{Queue: q, Advance: clock.Advance}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, newHarness)
}

// The suite must also pass without clock control (as a NATS adapter would
// run it); the clock-dependent subtests skip.
func TestConformanceRealClock(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T) queuetest.Harness {
		return queuetest.Harness{Queue: queuesqlite.New(openDB(t))}
	})
}

// CreateRun's admission transaction enqueues the run; the queue leases it.
func TestCreateRunEnqueues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t)
	q := queuesqlite.New(db)
	mk := func(id string, prio int) {
		_, err := db.CreateRun(ctx, store.CreateRunParams{
			Run:      store.Run{TenantID: "ten_a", AgentID: "agt_1", RunID: id},
			Priority: prio,
		})
		require.NoError(t, err)
	}
	mk("run_1", queue.PriorityLow)
	mk("run_2", queue.PriorityHigh)
	d, err := q.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"ten_a": 2}, d.Queued)

	ls, err := q.Lease(ctx, queue.LeaseParams{Owner: "w", Max: 2, TTL: time.Minute})
	require.NoError(t, err)
	require.Len(t, ls, 2)
	require.Equal(t, "run_2", ls[0].RunID)
	require.Equal(t, "run_1", ls[1].RunID)
	for _, l := range ls {
		require.NoError(t, q.Ack(ctx, l))
	}
	d, err = q.Depth(ctx)
	require.NoError(t, err)
	require.Empty(t, d.Queued)
	require.Empty(t, d.Leased)
}
