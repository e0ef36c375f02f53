package sqlite_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/queue/queuetest"
	queuesqlite "github.com/nexixai/agentos/internal/queue/sqlite"
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
