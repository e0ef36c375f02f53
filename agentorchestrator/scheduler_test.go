package agentorchestrator

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

// purgeWatch is a store whose PurgeIdempotency holds on until its context
// ends, recording when it is running: a purge still running after Stop
// would be using a store the node is about to close.
type purgeWatch struct {
	store.Store
	started chan struct{}
	active  atomic.Int32
}

func (p *purgeWatch) PurgeIdempotency(ctx context.Context, now time.Time) (int, error) {
	p.active.Add(1)
	defer p.active.Add(-1)
	select {
	case p.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return 0, ctx.Err()
}

// Start and Stop pair up: a second Start is refused (one scheduler), Stop
// waits for the scheduler, the executors and the idempotency purge, a
// stopped server starts again, and Stop is safe to repeat or to call
// without Start.
func TestStartStopLifecycle(t *testing.T) {
	t.Parallel()
	pw := &purgeWatch{started: make(chan struct{}, 1)}
	b := setup(t, bundleOpts{noExec: true, wrapStore: func(s store.Store) store.Store { pw.Store = s; return pw }})
	ctx := context.Background()
	b.srv.Stop() // never started: nothing to do
	for i := range 3 {
		require.NoError(t, b.srv.Start(ctx))
		require.ErrorContains(t, b.srv.Start(ctx), "already started")
		<-pw.started
		runID := b.createRun("tnt_a", "agt_echo", map[string]any{"input": "round"})
		b.waitStatus("tnt_a", runID, store.RunCompleted)
		b.srv.Stop()
		require.Zero(t, pw.active.Load(), "round %d: the purge outlived Stop", i)
		b.srv.Stop()
	}
}

// Start and Stop called from many goroutines at once leave one scheduler
// at most, and a final Stop leaves none (run under -race).
func TestStartStopConcurrent(t *testing.T) {
	t.Parallel()
	pw := &purgeWatch{started: make(chan struct{}, 1)}
	b := setup(t, bundleOpts{noExec: true, wrapStore: func(s store.Store) store.Store { pw.Store = s; return pw }})
	ctx := context.Background()
	var started atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			if i%2 == 0 {
				if b.srv.Start(ctx) == nil {
					started.Add(1)
				}
			} else {
				b.srv.Stop()
			}
		})
	}
	wg.Wait()
	require.Positive(t, started.Load())
	b.srv.Stop()
	require.Zero(t, pw.active.Load())
	require.NoError(t, b.srv.Start(ctx), "a stopped server starts again")
	b.srv.Stop()
}
