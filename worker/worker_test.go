package worker_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	natsbus "github.com/nexixai/agentos/internal/bus/nats"
	"github.com/nexixai/agentos/internal/dispatch"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/natsd"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/workerproto"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/worker"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// seedFile makes a user nkey, writes its seed to a file and returns the
// file and the public key.
func seedFile(t testing.TB, dir, name string) (string, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	p := filepath.Join(dir, name+".nk")
	require.NoError(t, os.WriteFile(p, seed, 0o600))
	return p, pub
}

type registry struct {
	mu      sync.Mutex
	workers []store.Worker
}

func (r *registry) list(context.Context) ([]store.Worker, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]store.Worker(nil), r.workers...), nil
}

// slow is a test tool that is not idempotent and takes its time.
type slow struct{}

func (slow) Spec() tools.Spec {
	return tools.Spec{ToolID: "tool.test.slow", Name: "slow", Description: "Takes 30 s.", InputSchema: json.RawMessage(`{"type":"object"}`)}
}

func (slow) Invoke(ctx context.Context, _ tools.Call) (json.RawMessage, error) {
	select {
	case <-time.After(30 * time.Second):
		return json.RawMessage(`{}`), nil
	case <-ctx.Done():
		return nil, tools.ContextError(ctx, "tool.test.slow")
	}
}

type bundle struct {
	// concurrency of the workers started next (default 2)
	concurrency int
	// models the workers started next front
	models   map[string]providers.Provider
	url      string
	dir      string
	reg      *registry
	dispatch *dispatch.Dispatcher
}

func setup(t *testing.T) *bundle { return setupTB(t) }

func setupTB(t testing.TB) *bundle {
	t.Helper()
	dir := t.TempDir()
	controlSeed, controlPub := seedFile(t, dir, "control")
	b := &bundle{dir: dir, reg: &registry{}}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- natsd.Run(ctx, natsd.Options{Name: "nats", Addr: addr, MonitorAddr: freeAddr(t), StoreDir: filepath.Join(dir, "js"),
			Auth: &natsd.Auth{ControlKey: controlPub, Workers: b.reg.list, Refresh: 100 * time.Millisecond}}, func(string, ...any) {})
	}()
	t.Cleanup(func() { cancel(); <-done })
	b.url = "nats://" + addr
	var control *natsbus.Bus
	require.Eventually(t, func() bool {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		var err error
		control, err = natsbus.Dial(dctx, natsbus.Config{URL: b.url, NkeySeedFile: controlSeed})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond)
	t.Cleanup(func() { _ = control.Close() })
	d, err := dispatch.New(dispatch.Config{Conn: control.Conn(), Work: control, HeartbeatTimeout: 1500 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	b.dispatch = d
	return b
}

// startWorker registers and starts a worker; stop kills it abruptly
// (its connection drops, as with kill -9).
func (b *bundle) startWorker(t *testing.T, id string, labels map[string]string) (kill func()) {
	return b.startWorkerTB(t, id, labels)
}

// startWorkerTB starts a worker; tenants, when given, dedicate it to them.
func (b *bundle) startWorkerTB(t testing.TB, id string, labels map[string]string, tenants ...string) (kill func()) {
	t.Helper()
	seed, pub := seedFile(t, b.dir, id)
	b.reg.mu.Lock()
	b.reg.workers = append(b.reg.workers, store.Worker{WorkerID: id, PublicKey: pub, Labels: labels, Tenants: tenants, Status: store.WorkerActive})
	b.reg.mu.Unlock()
	var wb *natsbus.Bus
	require.Eventually(t, func() bool { // until the server has reloaded its users
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		var err error
		wb, err = natsbus.Dial(dctx, natsbus.Config{URL: b.url, NkeySeedFile: seed, UseStreams: true,
			InboxPrefix: workerproto.InboxPrefix(id)})
		return err == nil
	}, 10*time.Second, 100*time.Millisecond)
	reg := tools.NewRegistry()
	require.NoError(t, reg.Register(builtin.Echo()))
	require.NoError(t, reg.Register(builtin.Sleep()))
	require.NoError(t, reg.Register(slow{}))
	concurrency := b.concurrency
	if concurrency == 0 {
		concurrency = 2
	}
	w, err := worker.New(worker.Config{ID: id, Labels: labels, Tenants: tenants, Conn: wb.Conn(), Work: wb, Tools: reg, Models: b.models, Concurrency: concurrency})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	var once sync.Once
	kill = func() { once.Do(func() { _ = wb.Close(); cancel() }) }
	t.Cleanup(func() {
		kill()
		select { // a killed worker's task may still run: it is abandoned, as with kill -9
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	require.Eventually(t, func() bool {
		for _, l := range b.dispatch.Live() {
			if l.WorkerID == id {
				return true
			}
		}
		return false
	}, 10*time.Second, 50*time.Millisecond, "worker %s heartbeats", id)
	return kill
}

func call(tool string, labels map[string]string, input string, idempotent bool, timeout time.Duration) dispatch.Call {
	return dispatch.Call{Labels: labels, TenantID: "ten_a", RunID: "run_1", ToolCallID: "tcall_1", ToolID: tool,
		Input: json.RawMessage(input), Idempotent: idempotent, Timeout: timeout}
}

func TestPlacedCallsRunOnTheMatchingWorkerOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startWorker(t, "w-a100", map[string]string{"gpu": "a100", "zone": "eu"})
	b.startWorker(t, "w-t4", map[string]string{"gpu": "t4", "zone": "eu"})
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		out, err := b.dispatch.Run(ctx, call(builtin.EchoID, map[string]string{"gpu": "a100"}, `{"text":"hi"}`, true, 10*time.Second))
		require.NoError(t, err)
		require.Nil(t, out.Err)
		require.Equal(t, "w-a100", out.WorkerID)
		require.JSONEq(t, `{"text":"hi"}`, string(out.Output))
	}
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		out, err := b.dispatch.Run(ctx, call(builtin.EchoID, map[string]string{"zone": "eu"}, `{"text":"x"}`, true, 10*time.Second))
		require.NoError(t, err)
		require.Nil(t, out.Err)
		seen[out.WorkerID] = true
	}
	require.Subset(t, []string{"w-a100", "w-t4"}, keys(seen), "zone=eu reaches both")

	out, err := b.dispatch.Run(ctx, call(builtin.EchoID, map[string]string{"gpu": "h100"}, `{"text":"x"}`, true, time.Second))
	require.NoError(t, err)
	require.Equal(t, errs.DependencyUnavailable, out.Err.Code, "no matching worker: %v", out.Err)
	require.Empty(t, out.WorkerID)

	out, err = b.dispatch.Run(ctx, call(builtin.EchoID, map[string]string{"gpu": "a100"}, `{}`, true, 10*time.Second))
	require.NoError(t, err)
	require.Equal(t, errs.InvalidRequest, out.Err.Code, "the tool's own errors come back: %v", out.Err)
	require.Equal(t, "w-a100", out.WorkerID)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestWorkerDeathRetriesIdempotentAndInterruptsTheRest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	gpu := map[string]string{"gpu": "a100"}
	killFirst := b.startWorker(t, "w-1", gpu)
	ctx := context.Background()

	// Non-idempotent: the worker dies mid-task, the call is interrupted.
	res := make(chan dispatch.Outcome, 1)
	go func() {
		out, _ := b.dispatch.Run(ctx, call("tool.test.slow", gpu, `{}`, false, 20*time.Second))
		res <- out
	}()
	waitInFlight(t, b, "w-1")
	killFirst()
	out := <-res
	require.Equal(t, dispatch.CodeInterrupted, out.Err.Code, "%v", out.Err)
	require.Equal(t, "w-1", out.WorkerID)
	require.Equal(t, 1, out.Attempts)

	// Idempotent: sent again, to the other matching worker.
	kills := map[string]func(){"w-2": b.startWorker(t, "w-2", gpu), "w-3": b.startWorker(t, "w-3", gpu)}
	go func() {
		out, _ := b.dispatch.Run(ctx, call(builtin.SleepID, gpu, `{"duration":"3s"}`, true, 30*time.Second))
		res <- out
	}()
	first := waitInFlightAny(t, b, "w-2", "w-3")
	kills[first]()
	out = <-res
	require.Nil(t, out.Err)
	require.JSONEq(t, `{"slept_ms":3000}`, string(out.Output))
	require.NotEqual(t, first, out.WorkerID, "retried on the other worker")
	require.Equal(t, 2, out.Attempts)
}

func waitInFlight(t *testing.T, b *bundle, id string) {
	t.Helper()
	waitInFlightAny(t, b, id)
}

func waitInFlightAny(t *testing.T, b *bundle, ids ...string) string {
	t.Helper()
	var got string
	require.Eventually(t, func() bool {
		for _, l := range b.dispatch.Live() {
			for _, id := range ids {
				if l.WorkerID == id && l.InFlight > 0 {
					got = id
					return true
				}
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
	return got
}
