package node

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/internal/tenancy"
)

// The node limits in process on SQLite (one process) and through the
// store's shared buckets on PostgreSQL (many replicas).
func TestLimiterFollowsStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lite, err := OpenBackend(ctx, testConfig(t, nil))
	require.NoError(t, err)
	defer lite.Close()
	require.IsType(t, &tenancy.Limiter{}, newLimiter(lite, nil))

	pg, err := OpenBackend(ctx, testConfig(t, map[string]string{"AGENTOS_STORE_URL": pgtest.URL(t)}))
	require.NoError(t, err)
	defer pg.Close()
	shared, ok := newLimiter(pg, nil).(*tenancy.SharedLimiter)
	require.True(t, ok, "PostgreSQL store: shared limiter")
	ok, _ = shared.Allow("ten_a", tenancy.LimitRunCreate, 0.001, 1)
	require.True(t, ok)
	ok, _ = shared.Allow("ten_a", tenancy.LimitRunCreate, 0.001, 1)
	require.False(t, ok)
	require.Zero(t, shared.Fallbacks.Load(), "answered by PostgreSQL")
}
