package postgres_test

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
	clock := queuetest.NewClock()
	db := openDB(t)
	q := queuepostgres.New(db)
	q.Now = clock.Now
	return queuetest.Harness{Queue: q, Runs: db, Advance: clock.Advance}
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
		db := openDB(t)
		return queuetest.Harness{Queue: queuepostgres.New(db), Runs: db}
	})
}

// Replicas (separate pools on one schema) leasing concurrently with a
// tenant limit: no entry is leased twice and the limit is never exceeded.
func TestReplicasRespectTenantLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	db := openURL(t, url)
	replicas := []*queuepostgres.Queue{queuepostgres.New(db), queuepostgres.New(openURL(t, url)),
		queuepostgres.New(openURL(t, url))}
	for i := range 30 {
		for _, tenant := range []string{"ten_a", "ten_b"} {
			_, err := db.CreateRun(ctx, store.CreateRunParams{Run: store.Run{TenantID: tenant, AgentID: "agt_1",
				RunID: fmt.Sprintf("run_%s%02d", tenant[4:], i)}})
			require.NoError(t, err)
		}
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
