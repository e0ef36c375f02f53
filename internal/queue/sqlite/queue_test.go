package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/queue/queuetest"
	queuesqlite "github.com/nexixai/agentos/internal/queue/sqlite"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

func openDB(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func newHarness(t *testing.T) queuetest.Harness {
	clock := queuetest.NewClock()
	db := openDB(t)
	q := queuesqlite.New(db)
	q.Now = clock.Now
	return queuetest.Harness{Queue: q, Runs: db, Advance: clock.Advance}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, newHarness)
}

// The suite must also pass without clock control (as an adapter bound to
// real time would run it); the clock-dependent subtests skip.
func TestConformanceRealClock(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T) queuetest.Harness {
		db := openDB(t)
		return queuetest.Harness{Queue: queuesqlite.New(db), Runs: db}
	})
}
