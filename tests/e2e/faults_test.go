package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestReadinessFollowsDependencies: an orchestrator and a model-policy
// replica on PostgreSQL and NATS, all real processes. The PostgreSQL
// server is stopped (pg_ctl stop -m fast): both replicas' /readyz answer
// 503 dependency_unavailable naming the store; it is started again on the
// same port: both are ready again by themselves. The NATS server is
// stopped: the orchestrator's /readyz names the bus (model-policy does
// not use it and stays ready); started again: ready. Nothing is
// restarted but the dependencies, and a run created afterwards completes,
// streamed gapless. The logged durations are a report, not assertions.
func TestReadinessFollowsDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pg := startPGServer(t)
	nats := startNATSServer(t)
	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_STORE_URL=" + pg.URL, "AGENTOS_BUS_URL=" + nats.URL()}})
	orch, mp := node.URL("orchestrator"), node.URL("model-policy")
	waitReadyz(t, orch, 200, "")
	waitReadyz(t, mp, 200, "")

	pg.Halt()
	halted := time.Now()
	toOrch := waitReadyz(t, orch, 503, "store")
	toMP := waitReadyz(t, mp, 503, "store")
	// Meanwhile a create is refused with the contract's retryable code.
	user := map[string]string{"X-Tenant-Id": "tnt_demo"}
	code, out := runsJSON(t, "POST", orch+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": "during the outage"})
	require.Equal(t, 503, code, out)
	require.Equal(t, "dependency_unavailable", out["error"].(map[string]any)["code"], out)
	pg.Resume()
	resumed := time.Now()
	backOrch := waitReadyz(t, orch, 200, "")
	backMP := waitReadyz(t, mp, 200, "")
	t.Logf("PostgreSQL stopped: orchestrator not ready after %s, model-policy after %s; "+
		"started again (%s down): ready again after %s and %s",
		toOrch.Round(time.Millisecond), toMP.Round(time.Millisecond), resumed.Sub(halted).Round(time.Millisecond),
		backOrch.Round(time.Millisecond), backMP.Round(time.Millisecond))

	var err error
	nats.Stop()
	stopped := time.Now()
	toBus := waitReadyz(t, orch, 503, "bus")
	code, _, err = readyz(mp)
	require.NoError(t, err)
	require.Equal(t, 200, code, "model-policy does not use the bus")
	nats.Start()
	started := time.Now()
	backBus := waitReadyz(t, orch, 200, "")
	t.Logf("NATS stopped: orchestrator not ready after %s; started again (%s down): ready again after %s",
		toBus.Round(time.Millisecond), started.Sub(stopped).Round(time.Millisecond), backBus.Round(time.Millisecond))

	// The replicas work again: a run created now completes.
	code, out = runsJSON(t, "POST", orch+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": "after the outages"})
	require.Equal(t, 201, code, out)
	runID := out["run"].(map[string]any)["run_id"].(string)
	evs := runsStream(t, orch, runID)
	require.NoError(t, checkStream(evs))
	require.Equal(t, store.EventRunCompleted, evs[len(evs)-1].Type)
}

// TestDependencyRestartsMidLoad is issue 11's "restart of PostgreSQL or
// of one NATS server mid-load", all real processes: two orchestrator
// replicas and a model-policy replica on a PostgreSQL server and a NATS
// server of the test's own. Sample-agent runs are created round-robin on
// the replicas (retrying a refused create with its idempotency key, as a
// client does) and each is streamed from the other replica (reconnecting
// with Last-Event-ID whenever a stream ends early or is refused). A
// quarter of the way through, the PostgreSQL server is stopped
// (pg_ctl stop -m fast) and started again on the same port; later the
// NATS server is stopped and started again. Every accepted run must end
// terminal (none stuck queued or running), completed or failed with a
// retryable dependency code (dependency_unavailable or timeout: a model
// call whose retries ran out within the outage), and every stream must be
// 1..N gapless with exactly one terminal event, last.
//
// AGENTOS_TEST_FAULT_RUNS sets the number of runs (default 160) and
// AGENTOS_TEST_FAULT_DOWN how long each dependency stays down (default
// 3s). The summary it logs is a report, not an assertion.
func TestDependencyRestartsMidLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	runs, down := 160, 3*time.Second
	if v := os.Getenv("AGENTOS_TEST_FAULT_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "AGENTOS_TEST_FAULT_RUNS")
		runs = n
	}
	if v := os.Getenv("AGENTOS_TEST_FAULT_DOWN"); v != "" {
		d, err := time.ParseDuration(v)
		require.NoError(t, err, "AGENTOS_TEST_FAULT_DOWN")
		down = d
	}
	pg := startPGServer(t)
	nats := startNATSServer(t)
	common := []string{"AGENTOS_STORE_URL=" + pg.URL, "AGENTOS_BUS_URL=" + nats.URL(),
		"AGENTOS_QUOTA_RUN_CREATE_QPS=5000", "AGENTOS_QUOTA_CONCURRENT_RUNS=2000", "AGENTOS_QUOTA_INVOKE_QPS=5000",
		"AGENTOS_QUOTA_MAX_STREAMS=5000"}
	first := testnode.Start(t, testnode.Options{Env: common})
	second := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: append(slices.Clone(common),
		"AGENTOS_HOME="+first.Home, "AGENTOS_MODEL_POLICY_ADDR="+first.Addrs["model-policy"])})
	replicas := []string{first.URL("orchestrator"), second.URL("orchestrator")}
	code, out := runsJSON(t, "PATCH", replicas[0]+"/v1/admin/tenants/tnt_demo",
		map[string]string{"Authorization": "Bearer " + first.Credentials().PlatformAdmin.Token},
		map[string]any{"quotas": map[string]any{"tools": map[string]any{"tool_calls_per_minute": 100000}}})
	require.Equal(t, 200, code, out)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	results := make([]faultResult, runs)
	var finished, accepted atomic.Int64
	pgAt, natsAt := int64(runs/4), int64(runs*5/8)
	phase := make(chan int64, runs)
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = faultRun(t, client, replicas, i, &accepted)
				phase <- finished.Add(1)
			}
		}()
	}
	go func() {
		defer close(work)
		for i := range runs {
			select {
			case work <- i:
			case <-t.Context().Done():
				return
			}
		}
	}()
	// The outages, each while runs are being created, executed and
	// streamed: in flight = accepted and not yet followed to the end.
	var pgInFlight, natsInFlight int64
	var pgNotReady, natsNotReady time.Duration
	outage := func(stop, start func(), dep string) (int64, time.Duration) {
		inFlight := accepted.Load() - finished.Load()
		stop()
		stopped := time.Now()
		waitReadyz(t, replicas[0], 503, dep)
		time.Sleep(down)
		start()
		waitReadyz(t, replicas[0], 200, "")
		waitReadyz(t, replicas[1], 200, "")
		return inFlight, time.Since(stopped)
	}
	go func() {
		wg.Wait()
		close(phase)
	}()
	for n := range phase {
		if n == pgAt {
			pgInFlight, pgNotReady = outage(pg.Halt, pg.Resume, "store")
		}
		if n == natsAt {
			natsInFlight, natsNotReady = outage(nats.Stop, nats.Start, "bus")
		}
	}
	elapsed := time.Since(start)

	outcomes := map[string]int{}
	refused, reconnects := 0, 0
	for i, r := range results {
		require.NoError(t, r.err, "run %d (%s)", i, r.id)
		outcomes[r.outcome]++
		refused += r.refused
		reconnects += r.reconnects
		switch r.outcome {
		case store.EventRunCompleted, "failed:dependency_unavailable", "failed:timeout":
		default:
			t.Errorf("run %s ended %s", r.id, r.outcome)
		}
	}
	// None stuck: the store says every run is terminal.
	user := map[string]string{"X-Tenant-Id": "tnt_demo"}
	for _, status := range []string{"queued", "running"} {
		code, out := runsJSON(t, "GET", replicas[1]+"/v1/runs?agent_id=agt_sample_echo_v1&limit=500&status="+status, user, nil)
		require.Equal(t, 200, code, out)
		require.Empty(t, out["runs"], "runs still %s", status)
	}
	var resumed, retries, busErrors int
	for _, r := range replicas {
		resumed += metricSum(t, r, "agentos_runs_resumed_total")
		retries += metricSum(t, r, "agentos_dependency_retries_total")
		busErrors += metricSum(t, r, "agentos_bus_errors_total")
	}
	t.Logf("dependency restarts mid-load: %d runs on 2 orchestrator + 1 model-policy replicas, %s elapsed; "+
		"PostgreSQL down %s with %d runs in flight (stop to ready again: %s), NATS down %s with %d runs in flight "+
		"(stop to ready again: %s); %d creates refused and retried, %d stream reconnects, %d runs resumed after "+
		"their executor let go, %d model/tool call retries, %d bus errors; outcomes %v",
		runs, elapsed.Round(time.Millisecond), down, pgInFlight, pgNotReady.Round(time.Millisecond), down, natsInFlight,
		natsNotReady.Round(time.Millisecond), refused, reconnects, resumed, retries, busErrors, outcomes)
}

type faultResult struct {
	id         string
	err        error
	outcome    string // the terminal event's type, or "failed:<code>"
	refused    int    // creates answered 5xx or cut off, then retried
	reconnects int
}

// faultRun creates run i on replica i mod 2, retrying with its
// idempotency key while the create is refused (5xx) or cut off, and
// follows its stream on the other replica to the terminal event,
// reconnecting with Last-Event-ID while streams end early or are refused.
func faultRun(t *testing.T, client *http.Client, replicas []string, i int, accepted *atomic.Int64) (r faultResult) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	creator := i % len(replicas)
	for r.id == "" {
		if ctx.Err() != nil {
			r.err = fmt.Errorf("create never accepted after %d refusals", r.refused)
			return r
		}
		req, err := http.NewRequestWithContext(ctx, "POST", replicas[creator]+"/v1/agents/agt_sample_echo_v1/runs",
			strings.NewReader(fmt.Sprintf(`{"input":"fault %d"}`, i)))
		if err != nil {
			r.err = err
			return r
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("fault-%d", i))
		resp, err := client.Do(req)
		if err != nil {
			r.refused++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		var created struct {
			Run struct {
				RunID string `json:"run_id"`
			} `json:"run"`
		}
		err = json.NewDecoder(resp.Body).Decode(&created)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			r.refused++
			time.Sleep(100 * time.Millisecond)
		case resp.StatusCode != 201 && resp.StatusCode != 200 || err != nil:
			r.err = fmt.Errorf("create: %d %v", resp.StatusCode, err)
			return r
		default:
			r.id = created.Run.RunID
			accepted.Add(1)
		}
	}
	var evs []store.Event
	at := creator
	for attempt := 0; ; attempt++ {
		at = (at + 1) % len(replicas)
		if ctx.Err() != nil {
			r.err = fmt.Errorf("stream of %s not terminal after %d connections: %d events", r.id, attempt, len(evs))
			return r
		}
		if attempt > 0 {
			r.reconnects++
			time.Sleep(100 * time.Millisecond)
		}
		req, err := http.NewRequestWithContext(ctx, "GET", replicas[at]+"/v1/runs/"+r.id+"/events", nil)
		if err != nil {
			r.err = err
			return r
		}
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		if len(evs) > 0 {
			req.Header.Set("Last-Event-ID", strconv.FormatInt(evs[len(evs)-1].Sequence, 10))
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				continue // the store is down: retry, as clients do
			}
			r.err = fmt.Errorf("stream of %s: %d", r.id, resp.StatusCode)
			return r
		}
		_ = events.ReadSSE(resp.Body, func(f events.Frame) error {
			e, err := events.DecodeFrame(f)
			if err != nil {
				return err
			}
			evs = append(evs, e)
			return nil
		})
		resp.Body.Close()
		if n := len(evs); n > 0 && store.IsTerminalEvent(evs[n-1].Type) {
			break
		}
	}
	if err := checkStream(evs); err != nil {
		r.err = fmt.Errorf("run %s: %w", r.id, err)
		return r
	}
	last := evs[len(evs)-1]
	r.outcome = last.Type
	if last.Type == store.EventRunFailed {
		var p struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		_ = json.Unmarshal(last.Payload, &p)
		r.outcome = "failed:" + p.Error.Code
	}
	return r
}
