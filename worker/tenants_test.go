package worker_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/bus"
	natsbus "github.com/nexixai/agentos/internal/bus/nats"
	"github.com/nexixai/agentos/internal/dispatch"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/workerproto"
)

func callFor(tenant string, labels map[string]string, timeout time.Duration) dispatch.Call {
	return dispatch.Call{Labels: labels, TenantID: tenant, RunID: "run_1", ToolCallID: "tcall_1", ToolID: builtin.EchoID,
		Input: json.RawMessage(`{"text":"hi"}`), Idempotent: true, Timeout: timeout}
}

func TestDedicatedWorkersServeOnlyTheirTenants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	gpu := map[string]string{"gpu": "a100"}
	killShared := b.startWorker(t, "w-shared", gpu)
	killA := b.startWorkerTB(t, "w-a", map[string]string{"gpu": "a100", "zone": "eu"}, "ten_a")
	ctx := context.Background()

	for i := 0; i < 20; i++ {
		out, err := b.dispatch.Run(ctx, callFor("ten_a", gpu, 10*time.Second))
		require.NoError(t, err)
		require.Nil(t, out.Err)
		require.Equal(t, "w-a", out.WorkerID, "ten_a's calls go to its dedicated worker")
		out, err = b.dispatch.Run(ctx, callFor("ten_b", gpu, 10*time.Second))
		require.NoError(t, err)
		require.Nil(t, out.Err)
		require.Equal(t, "w-shared", out.WorkerID, "other tenants never reach the dedicated worker")
	}
	require.Equal(t, []string{"ten_a"}, live(t, b, "w-a").Tenants)

	// The bus holds the dedicated worker to its tenants' queues: with its
	// own credential it cannot take from the shared queue.
	wb, err := natsbus.Dial(ctx, natsbus.Config{URL: b.url, NkeySeedFile: filepath.Join(b.dir, "w-a.nk"), UseStreams: true,
		InboxPrefix: workerproto.InboxPrefix("w-a")})
	require.NoError(t, err)
	defer wb.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = wb.Consume(cctx, bus.ConsumeParams{Queue: workerproto.QueueName(gpu), AckWait: time.Second})
	require.Error(t, err, "a dedicated worker opened the shared queue")
	octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
	defer ocancel()
	_, err = wb.Consume(octx, bus.ConsumeParams{Queue: workerproto.TenantQueueName(gpu, "ten_a"), AckWait: time.Second})
	require.NoError(t, err, "its own tenant's queue opens with the same credential")

	// With the shared pool gone, ten_b's calls wait for a worker and end
	// dependency_unavailable; the dedicated worker does not take them.
	killShared()
	require.Eventually(t, func() bool { return live(t, b, "w-shared") == nil }, 10*time.Second, 50*time.Millisecond)
	out, err := b.dispatch.Run(ctx, callFor("ten_b", gpu, time.Second))
	require.NoError(t, err)
	require.Equal(t, errs.DependencyUnavailable, out.Err.Code, "%v", out.Err)
	require.Empty(t, out.WorkerID)

	// With its dedicated worker gone, ten_a's calls go to the shared pool.
	b.startWorker(t, "w-shared-2", gpu)
	killA()
	require.Eventually(t, func() bool { return live(t, b, "w-a") == nil }, 10*time.Second, 50*time.Millisecond)
	out, err = b.dispatch.Run(ctx, callFor("ten_a", gpu, 10*time.Second))
	require.NoError(t, err)
	require.Nil(t, out.Err)
	require.Equal(t, "w-shared-2", out.WorkerID)
}

func live(t *testing.T, b *bundle, id string) *dispatch.Worker {
	t.Helper()
	for _, w := range b.dispatch.Live() {
		if w.WorkerID == id {
			return &w
		}
	}
	return nil
}

// One busy shared worker, a tenant with ten calls queued, then another
// tenant's single call: it runs next, not after the ten.
func TestSharedPoolIsFairAcrossTenants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.concurrency = 1
	gpu := map[string]string{"gpu": "a100"}
	b.startWorker(t, "w-shared", gpu)
	ctx := context.Background()
	sleep := func(tenant string) dispatch.Call {
		return dispatch.Call{Labels: gpu, TenantID: tenant, RunID: "run_1", ToolCallID: "tcall_1", ToolID: builtin.SleepID,
			Input: json.RawMessage(`{"duration":"300ms"}`), Idempotent: true, Timeout: 30 * time.Second}
	}
	var mu sync.Mutex
	var finished []string
	var wg sync.WaitGroup
	run := func(tenant string) {
		defer wg.Done()
		out, err := b.dispatch.Run(ctx, sleep(tenant))
		require.NoError(t, err)
		require.Nil(t, out.Err)
		mu.Lock()
		finished = append(finished, tenant)
		mu.Unlock()
	}
	for range 10 {
		wg.Add(1)
		go run("ten_busy")
	}
	// The ten reach the dispatcher at once: one runs, nine wait (they
	// take 3 s in all; the quiet call comes well before the last).
	time.Sleep(200 * time.Millisecond)
	wg.Add(1)
	go run("ten_quiet")
	wg.Wait()
	require.Len(t, finished, 11)
	pos := slices.Index(finished, "ten_quiet")
	require.LessOrEqual(t, pos, 2, "the quiet tenant's call waited behind the busy one's: %v", finished)
}
