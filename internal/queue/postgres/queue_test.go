package queuepostgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/queue"
	queuepostgres "github.com/nexixai/agentos/internal/queue/postgres"
	"github.com/nexixai/agentos/internal/queue/queuetest"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// openURL opens a store on url, closed at cleanup.
func openURL(t *testing.T, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func openDB(t *testing.T) *postgres.DB { return openURL(t, pgtest.URL(t)) }

func newHarness(t *testing.T) queuetest.Harness {
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	q := queuepostgres.New(openDB(t))
	q.Now = clock.Now
	return queuetest.Harness{Queue: q, Advance: clock.Advance}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	pgtest.BaseURL(t)
	queuetest.Run(t, newHarness)
}

// The suite must also pass without clock control; the clock-dependent
// subtests skip.
func TestConformanceRealClock(t *testing.T) {
	t.Parallel()
	pgtest.BaseURL(t)
	queuetest.Run(t, func(t *testing.T) queuetest.Harness {
		return queuetest.Harness{Queue: queuepostgres.New(openDB(t))}
	})
}

// CreateRun's admission transaction enqueues the run; the queue leases it.
func TestCreateRunEnqueues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openDB(t)
	q := queuepostgres.New(db)
	mk := func(id string, prio int, status store.RunStatus) {
		_, err := db.CreateRun(ctx, store.CreateRunParams{
			Run:      store.Run{TenantID: "ten_a", AgentID: "agt_1", RunID: id, Status: status},
			Priority: prio,
		})
		require.NoError(t, err)
	}
	mk("run_1", queue.PriorityLow, "")
	mk("run_2", queue.PriorityHigh, "")
	mk("run_3", queue.PriorityHigh, store.RunRunning) // not queued: no entry
	d, err := q.Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"ten_a": 2}, d.Queued)

	ls, err := q.Lease(ctx, queue.LeaseParams{Owner: "w", Max: 3, TTL: time.Minute})
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

// Replicas (separate pools on one schema) leasing concurrently with a
// tenant limit: no entry is leased twice and the limit is never exceeded.
func TestReplicasRespectTenantLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	replicas := []*queuepostgres.Queue{queuepostgres.New(openURL(t, url)), queuepostgres.New(openURL(t, url)),
		queuepostgres.New(openURL(t, url))}
	for i := range 30 {
		require.NoError(t, replicas[0].Enqueue(ctx, queue.EnqueueParams{TenantID: "ten_a", RunID: fmt.Sprintf("run_a%02d", i)}))
		require.NoError(t, replicas[0].Enqueue(ctx, queue.EnqueueParams{TenantID: "ten_b", RunID: fmt.Sprintf("run_b%02d", i)}))
	}
	const limitA = 4
	limits := func(tenant string) int {
		if tenant == "ten_a" {
			return limitA
		}
		return 0
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := replicas[w%len(replicas)]
			for range 10 {
				ls, err := q.Lease(ctx, queue.LeaseParams{Owner: fmt.Sprintf("w%d", w), Max: 3, TTL: time.Hour,
					TenantLimit: limits})
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				mu.Lock()
				for _, l := range ls {
					seen[l.TenantID+"/"+l.RunID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	a := 0
	for k, n := range seen {
		require.Equal(t, 1, n, "%s leased %d times", k, n)
		if k[:5] == "ten_a" {
			a++
		}
	}
	require.Equal(t, limitA, a, "ten_a holds exactly its limit of leases")
	d, err := replicas[1].Depth(ctx)
	require.NoError(t, err)
	require.Equal(t, limitA, d.Leased["ten_a"])
	require.Equal(t, 30, d.Leased["ten_b"])
}
