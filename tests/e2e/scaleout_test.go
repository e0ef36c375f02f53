package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/bus/nats/natstest"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestScaleOutReplicas is issue 11's cluster under load, all real
// processes: three orchestrator replicas and two model-policy replicas
// sharing one PostgreSQL store (a fresh schema on AGENTOS_TEST_POSTGRES_URL;
// skipped without it, mandatory in CI) and one NATS JetStream bus
// (embedded in the test process), with `agentos serve gateway` in front.
//
// Sample-agent runs are created round-robin directly on the replicas and
// each is streamed from a different replica than the one that created it.
// Halfway through, the replica executing the most runs is killed with
// SIGKILL: its runs' leases expire and the others resume them; streams it
// was serving reconnect to another replica with Last-Event-ID. Every
// stream must be 1..N with run.created first and exactly one terminal
// event, last. Then a run held inside a tool call on one replica is
// canceled through another.
//
// AGENTOS_TEST_SCALE_RUNS sets the number of runs (default 500, issue 11's
// figure; about 25 s on a loaded 2-core machine). The summary line it logs
// (runs, elapsed, runs/s, cross-replica first-event latency) is a report,
// not an assertion.
func TestScaleOutReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pgURL := pgtest.URL(t)
	nats := natstest.Start(t, natstest.Options{})
	runs := 500
	if v := os.Getenv("AGENTOS_TEST_SCALE_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "AGENTOS_TEST_SCALE_RUNS")
		runs = n
	}

	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{"output":{"ok":true}}`))
	}))
	t.Cleanup(func() { close(release); hook.Close() })

	common := []string{"AGENTOS_STORE_URL=" + pgURL, "AGENTOS_BUS_URL=" + nats.URL(), "AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1",
		"AGENTOS_QUOTA_RUN_CREATE_QPS=5000", "AGENTOS_QUOTA_CONCURRENT_RUNS=2000", "AGENTOS_QUOTA_INVOKE_QPS=5000",
		"AGENTOS_QUOTA_MAX_STREAMS=5000",
		// The killed replica's runs are taken over within the lease TTL.
		"AGENTOS_RUN_LEASE_TTL=3s"}
	// The first node seeds the shared store; the others share its home
	// (node key, credentials) and store.
	first := testnode.Start(t, testnode.Options{Env: common})
	mp2 := testnode.Start(t, testnode.Options{Services: []string{"model-policy"}, Env: append(slices.Clone(common), "AGENTOS_HOME="+first.Home)})
	replicaOn := func(mp *testnode.Node) *testnode.Node {
		return testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: append(slices.Clone(common),
			"AGENTOS_HOME="+first.Home, "AGENTOS_MODEL_POLICY_ADDR="+mp.Addrs["model-policy"])})
	}
	nodes := []*testnode.Node{first, replicaOn(mp2), replicaOn(first)}
	replicas := make([]string, len(nodes))
	for i, n := range nodes {
		replicas[i] = n.URL("orchestrator")
	}

	upstreams := filepath.Join(t.TempDir(), "upstreams.yaml")
	require.NoError(t, os.WriteFile(upstreams, fmt.Appendf(nil, "orchestrator: [%s]\nmodel-policy: [%s, %s]\n",
		strings.Join(replicas, ", "), first.URL("model-policy"), mp2.URL("model-policy")), 0o600))
	first.Env = append(first.Env, "AGENTOS_GATEWAY_UPSTREAMS_FILE="+upstreams, "AGENTOS_GATEWAY_HEALTH_INTERVAL=200ms")
	first.StartService("gateway")
	gw := first.URL("gateway")
	// Rate limits are exact across replicas on PostgreSQL: the default 120
	// tool calls a minute, shared by the three replicas, would refuse most
	// of the load's tool calls and the held run's.
	code, out := runsJSON(t, "PATCH", first.URL("orchestrator")+"/v1/admin/tenants/tnt_demo",
		map[string]string{"Authorization": "Bearer " + first.Credentials().PlatformAdmin.Token},
		map[string]any{"quotas": map[string]any{"tools": map[string]any{"tool_calls_per_minute": 100000}}})
	require.Equal(t, 200, code, out)
	user := map[string]string{"X-Tenant-Id": "tnt_demo"}

	var dead atomic.Int32 // 1 + index of the killed replica, 0 while all live
	live := func(i int) bool { return int(dead.Load()) != i+1 }
	// other picks a live replica other than i, starting after it.
	other := func(i int) int {
		for k := 1; k < len(replicas); k++ {
			if j := (i + k) % len(replicas); live(j) {
				return j
			}
		}
		return i
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	results := make([]scaleResult, runs)
	var finished atomic.Int64 // runs followed to their end
	killOnce := make(chan struct{})
	var killedActive int
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				results[i] = scaleRun(t, client, replicas, i, live, other)
				if finished.Add(1) == int64(runs/2) {
					close(killOnce)
				}
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
	// Mid-load (half the runs followed to their end, the rest in flight),
	// kill the replica executing the most runs.
	<-killOnce
	victim, most := 0, -1
	for i, r := range replicas {
		if a := metricSum(t, r, "agentos_active_runs"); a > most {
			victim, most = i, a
		}
	}
	killedActive = most
	dead.Store(int32(victim + 1))
	nodes[victim].Kill("orchestrator")
	t.Logf("killed replica %d (%d runs executing there)", victim, most)
	wg.Wait()
	elapsed := time.Since(start)

	var firsts []time.Duration
	outcomes := map[string]int{}
	reconnects := 0
	for i, r := range results {
		require.NoError(t, r.err, "run %d (%s)", i, r.id)
		firsts = append(firsts, r.firstEvent)
		outcomes[r.terminal]++
		reconnects += r.reconnects
	}
	require.Equal(t, runs, outcomes[store.EventRunCompleted], "every run completed, resumed or not: %v", outcomes)
	// A sample run executes for a few ms, so runs counted on the victim
	// just before the kill may all have ended before it: with a handful,
	// "none resumed" is a possible outcome (CI saw it with 4). The check
	// above (every run completed) is what holds whatever the timing; the
	// resume counter is required only when too many were executing for all
	// of them to end in that moment.
	resumed := 0
	for i, r := range replicas {
		if live(i) {
			resumed += metricSum(t, r, "agentos_runs_resumed_total")
		}
	}
	t.Logf("%d runs resumed by the other replicas", resumed)
	if killedActive >= 12 {
		require.Positive(t, resumed, "the killed replica's runs are resumed by the others")
	}
	// The store holds each run once (a create cut off by the kill was
	// retried elsewhere with its idempotency key), completed.
	seen := map[string]int{}
	cursor := ""
	for page := 0; page < runs; page++ {
		u := replicas[other(victim)] + "/v1/runs?agent_id=agt_sample_echo_v1&limit=500"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		code, out := runsJSON(t, "GET", u, user, nil)
		require.Equal(t, 200, code, out)
		for _, r := range out["runs"].([]any) {
			run := r.(map[string]any)
			in, _ := run["input"].(map[string]any)
			text, _ := in["text"].(string)
			if strings.HasPrefix(text, "scale ") {
				seen[text]++
				require.Equal(t, "completed", run["status"], run["run_id"])
			}
		}
		next, _ := out["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	require.Len(t, seen, runs)
	for text, n := range seen {
		require.Equal(t, 1, n, text)
	}
	slices.Sort(firsts)
	t.Logf("scale-out: %d runs on 3 orchestrator + 2 model-policy replicas (PostgreSQL, NATS), one replica killed mid-load: "+
		"%s elapsed, %.1f runs/s, cross-replica first event p50 %s p95 %s, %d stream reconnects, outcomes %v",
		runs, elapsed.Round(time.Millisecond), float64(runs)/elapsed.Seconds(), firsts[len(firsts)/2].Round(time.Millisecond),
		firsts[len(firsts)*95/100].Round(time.Millisecond), reconnects, outcomes)

	// The gateway took the dead replica out and still serves runs.
	require.Eventually(t, func() bool {
		_, out := runsJSON(t, "GET", gw+"/readyz", nil, nil)
		pools, _ := out["pools"].(map[string]any)
		p, _ := pools["orchestrator"].(map[string]any)
		return p["healthy"] == 2.0 && p["total"] == 3.0
	}, 30*time.Second, 50*time.Millisecond)
	code, out = runsJSON(t, "POST", gw+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": "through the gateway"})
	require.Equal(t, 201, code, out)
	require.NoError(t, checkStream(gatewayStream(t, gw, "tnt_demo", out["run"].(map[string]any)["run_id"].(string))))

	// Cancel through one replica a run held in a tool call on another.
	alive := []int{}
	for i := range replicas {
		if live(i) {
			alive = append(alive, i)
		}
	}
	admin := map[string]string{"Authorization": "Bearer " + first.Credentials().PlatformAdmin.Token, "X-Tenant-Id": "tnt_demo"}
	code, out = runsJSON(t, "PUT", replicas[alive[0]]+"/v1/admin/tools/tool.e2e.hold", admin, map[string]any{"tool": map[string]any{
		"name": "hold", "description": "Holds the call.",
		"input_schema": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}},
		"url":          hook.URL, "secret": "e2e-hold-secret-0123456789", "timeout_ms": 120000}})
	require.Less(t, code, 300, out)
	code, out = runsJSON(t, "PUT", replicas[alive[1]]+"/v1/admin/agents/agt_e2e_hold", admin, map[string]any{"agent": map[string]any{
		"name": "Hold", "model_ref": "tier:fast", "tools": []string{"tool.e2e.hold"}, "defaults": map[string]any{"timeout_ms": 120000}}})
	require.Less(t, code, 300, out)
	code, out = runsJSON(t, "POST", replicas[alive[0]]+"/v1/agents/agt_e2e_hold/runs", user, map[string]any{"input": "wait"})
	require.Equal(t, 201, code, out)
	held := out["run"].(map[string]any)["run_id"].(string)
	select {
	case <-entered: // the run is inside the tool call
	case <-time.After(60 * time.Second):
		_, got := runsJSON(t, "GET", replicas[alive[0]]+"/v1/runs/"+held, user, nil)
		t.Fatalf("the held run never reached its tool: %v", got)
	}
	// The load is over: the held run is the only one executing anywhere.
	executor, active := -1, 0
	for _, i := range alive {
		a := metricSum(t, replicas[i], "agentos_active_runs")
		active += a
		if a == 1 {
			executor = i
		}
	}
	require.Equal(t, 1, active, "only the held run executes")
	require.NotEqual(t, -1, executor)
	canceler := other(executor)
	require.NotEqual(t, executor, canceler)
	code, out = runsJSON(t, "POST", replicas[canceler]+"/v1/runs/"+held+":cancel", user, map[string]any{"reason": "e2e scale-out"})
	require.Equal(t, 200, code, out)
	evs := runsStream(t, replicas[other(canceler)], held)
	require.NoError(t, checkStream(evs))
	require.Equal(t, store.EventRunCanceled, evs[len(evs)-1].Type)
	code, out = runsJSON(t, "GET", replicas[executor]+"/v1/runs/"+held, user, nil)
	require.Equal(t, 200, code, out)
	require.Equal(t, "canceled", out["run"].(map[string]any)["status"])
	t.Logf("held run executing on replica %d canceled through replica %d", executor, canceler)
}

// scaleRun creates run i on replica i mod n and follows its stream on
// another live replica, reconnecting with Last-Event-ID (to yet another
// live replica) whenever a stream ends before the terminal event.
func scaleRun(t *testing.T, client *http.Client, replicas []string, i int, live func(int) bool, other func(int) int) (r scaleResult) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	creator := i % len(replicas)
	for !live(creator) {
		creator = (creator + 1) % len(replicas)
	}
	began := time.Now()
	req, err := http.NewRequestWithContext(ctx, "POST", replicas[creator]+"/v1/agents/agt_sample_echo_v1/runs",
		strings.NewReader(fmt.Sprintf(`{"input":"scale %d"}`, i)))
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	// Without a key a create cut off by the kill could not be retried
	// without risking a second run.
	req.Header.Set("Idempotency-Key", fmt.Sprintf("scale-%d", i))
	resp, err := client.Do(req)
	if err != nil {
		// The creator was killed while the request was in flight: the
		// same key on another replica creates the run at most once.
		if live(creator) {
			r.err = fmt.Errorf("create on replica %d: %w", creator, err)
			return r
		}
		return scaleRun(t, client, replicas, i, live, other)
	}
	var created struct {
		Run struct {
			RunID string `json:"run_id"`
		} `json:"run"`
	}
	err = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != 201 && resp.StatusCode != 200 || err != nil {
		r.err = fmt.Errorf("create on replica %d: %d %v", creator, resp.StatusCode, err)
		return r
	}
	r.id = created.Run.RunID
	var evs []store.Event
	at := creator
	for attempt := 0; ; attempt++ {
		at = other(at)
		if at == creator {
			r.err = errors.New("no other live replica to stream from")
			return r
		}
		if attempt > 0 {
			r.reconnects++
		}
		if attempt > 20 {
			r.err = fmt.Errorf("stream of %s not terminal after %d connections: %d events", r.id, attempt, len(evs))
			return r
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
			time.Sleep(100 * time.Millisecond) // the replica died; try another
			continue
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			r.err = fmt.Errorf("stream of %s on replica %d: %d", r.id, at, resp.StatusCode)
			return r
		}
		_ = events.ReadSSE(resp.Body, func(f events.Frame) error {
			e, err := events.DecodeFrame(f)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				r.firstEvent = time.Since(began)
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
	r.terminal = evs[len(evs)-1].Type
	return r
}

type scaleResult struct {
	id         string
	err        error
	firstEvent time.Duration
	terminal   string
	reconnects int
}

// metricSum sums a metric's samples on a service's /metrics.
func metricSum(t *testing.T, base, name string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	n := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if metric, _, _ := strings.Cut(line, " "); metric != name && !strings.HasPrefix(metric, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)
		n += v
	}
	require.NoError(t, sc.Err())
	return int(n)
}
