package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store/postgres"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tenancy/limitertest"
)

// The shared limiter over PostgreSQL passes the RateLimiter conformance
// suite, never falling back to its in-process limiter.
func TestSharedLimiterConformance(t *testing.T) {
	t.Parallel()
	db := open(t)
	var limiters []*tenancy.SharedLimiter
	limitertest.Run(t, func(*testing.T) tenancy.RateLimiter {
		l := tenancy.NewSharedLimiter(db, nil)
		limiters = append(limiters, l)
		return l
	})
	t.Cleanup(func() {
		for _, l := range limiters {
			require.Zero(t, l.Fallbacks.Load(), "every call was answered by the database")
		}
	})
}

// Three replicas (three pools on one schema) hammering one tenant's 10/s
// limit with a burst of 10 admit at most burst + 10/s × elapsed (+1) in
// total, and each of them admits some: the bucket is one, not one per
// replica.
func TestSharedLimiterAcrossReplicas(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	const replicas, workers = 3, 4
	const ratePerSec, burst = 10.0, 10
	lims := make([]*tenancy.SharedLimiter, replicas)
	for i := range lims {
		db, err := postgres.Open(context.Background(), url)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close()) })
		lims[i] = tenancy.NewSharedLimiter(db, nil)
	}
	var admitted [replicas]atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(1500 * time.Millisecond)
	for i := range replicas {
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if ok, _ := lims[i].Allow("ten_shared", tenancy.LimitRunCreate, ratePerSec, burst); ok {
						admitted[i].Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	var total int64
	for i := range replicas {
		n := admitted[i].Load()
		require.Positive(t, n, "replica %d admitted some", i)
		require.Zero(t, lims[i].Fallbacks.Load())
		total += n
	}
	bound := int64(burst + ratePerSec*elapsed + 1)
	t.Logf("admitted %d (per replica %d/%d/%d) in %.2fs; bound %d", total,
		admitted[0].Load(), admitted[1].Load(), admitted[2].Load(), elapsed, bound)
	require.LessOrEqual(t, total, bound, "total admitted across replicas")
	require.GreaterOrEqual(t, total, int64(burst), "the burst is admitted")
}

// Bad limits are precise errors, and write nothing.
func TestTakeTokenRejectsBadLimits(t *testing.T) {
	t.Parallel()
	db := open(t)
	ctx := context.Background()
	_, _, err := db.TakeToken(ctx, "ten_a", "x", 0, 1)
	require.ErrorContains(t, err, "rate")
	_, _, err = db.TakeToken(ctx, "ten_a", "x", 1, 0)
	require.ErrorContains(t, err, "burst")
	var n int
	require.NoError(t, db.Pool().QueryRow(ctx, `SELECT count(*) FROM rate_buckets`).Scan(&n))
	require.Zero(t, n)
}

// The cost of a shared limit: one statement round trip per limited request.
func BenchmarkSharedLimiterAllow(b *testing.B) {
	db, err := postgres.Open(context.Background(), pgtest.URL(b))
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, db.Close()) })
	l := tenancy.NewSharedLimiter(db, nil)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Allow("ten_bench", tenancy.LimitRunCreate, 1e9, 1_000_000_000)
		}
	})
}
