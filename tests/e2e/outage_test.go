package e2e

import (
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestModelPolicyOutageFailsNoRun submits 300 runs that take 1-3 s each
// (a model call, a tool call to a slow local server, a model call),
// kills model-policy with SIGKILL while they are in flight and queued,
// keeps it down 5 s, restarts it with the same configuration and ports,
// and checks that every run completes: the runs in flight wait in
// backoff, and the queued ones are not started while the orchestrator's
// breaker is open (its /readyz names model-policy meanwhile). It logs how
// soon after the restart runs complete again.
func TestModelPolicyOutageFailsNoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	var hits atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h := fnv.New32a()
		h.Write([]byte(r.URL.Path))
		d := time.Second + time.Duration(h.Sum32()%2000)*time.Millisecond
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "slow answer")
	}))
	defer slow.Close()

	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1",
		"AGENTOS_QUOTA_RUN_CREATE_QPS=1000", "AGENTOS_QUOTA_CONCURRENT_RUNS=300", "AGENTOS_QUOTA_INVOKE_QPS=1000"}})
	base := node.URL("orchestrator")
	admin := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token, "X-Tenant-Id": "tnt_demo"}
	code, out := runsJSON(t, "PUT", base+"/v1/admin/agents/agt_slow", admin, map[string]any{"agent": map[string]any{
		"name": "slow", "model_ref": "tier:fast", "instructions": "Fetch the URL the user gives, then summarise it.",
		"tools": []string{"tool.http.fetch"}, "defaults": map[string]any{"max_steps": 4, "timeout_ms": 120000}}})
	require.Equal(t, 201, code, out)
	// Every run's tool call must reach the slow server (the default 120
	// tool calls a minute would fail most of them fast).
	code, out = runsJSON(t, "PATCH", base+"/v1/admin/tenants/tnt_demo", admin,
		map[string]any{"quotas": map[string]any{"tools": map[string]any{"tool_calls_per_minute": 100000}}})
	require.Equal(t, 200, code, out)

	user := map[string]string{"X-Tenant-Id": "tnt_demo"}
	const n = 300
	ids := make([]string, n)
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for w := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 10 {
				code, out := runsJSON(t, "POST", base+"/v1/agents/agt_slow/runs", user, map[string]any{"input": fmt.Sprintf("%s/slow/%d", slow.URL, i)})
				if code != 201 {
					errc <- fmt.Errorf("create %d: %d %v", i, code, out)
					continue
				}
				ids[i] = out["run"].(map[string]any)["run_id"].(string)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}

	// statuses polls every run; completedAt keeps each completion time.
	completedAt := map[string]time.Time{}
	statuses := func() map[string]int {
		count := map[string]int{}
		for _, id := range ids {
			if _, done := completedAt[id]; done {
				count["completed"]++
				continue
			}
			code, out := runsJSON(t, "GET", base+"/v1/runs/"+id, user, nil)
			require.Equal(t, 200, code, out)
			run := out["run"].(map[string]any)
			st := run["status"].(string)
			count[st]++
			switch st {
			case "completed":
				ts, err := time.Parse(time.RFC3339Nano, run["completed_at"].(string))
				require.NoError(t, err)
				completedAt[id] = ts
			case "failed", "canceled":
				t.Fatalf("run %s %s: %v\norchestrator log tail:\n%s", id, st, run["error"], tail(node.Log("orchestrator"), 3000))
			}
		}
		return count
	}

	// Mid-load: the first runs done, most in flight or queued.
	require.Eventually(t, func() bool {
		code, out := runsJSON(t, "GET", base+"/v1/runs?agent_id=agt_slow&status=completed&limit=1", user, nil)
		require.Equal(t, 200, code, out)
		return len(out["runs"].([]any)) > 0
	}, 60*time.Second, 20*time.Millisecond)
	killedAt := time.Now()
	node.Kill("model-policy")
	before := statuses()

	// While it is down the orchestrator is not ready, naming model-policy.
	require.Eventually(t, func() bool {
		code, out := runsJSON(t, "GET", base+"/readyz", nil, nil)
		return code == 503 && strings.Contains(fmt.Sprint(out), "model-policy")
	}, 10*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool { return strings.Contains(metricsText(t, base), "\nagentos_model_policy_circuit_open 1\n") },
		10*time.Second, 50*time.Millisecond, "the breaker opens")
	time.Sleep(5*time.Second - time.Since(killedAt))
	mid := statuses()
	node.StartService("model-policy")
	restartedAt := time.Now()

	require.Eventually(t, func() bool { return statuses()["completed"] == n }, 180*time.Second, 200*time.Millisecond,
		"orchestrator log tail:\n%s", tail(node.Log("orchestrator"), 3000))

	require.GreaterOrEqual(t, hits.Load(), int64(n), "every run called the slow tool")
	m := metricsText(t, base)
	require.Contains(t, m, "\nagentos_model_policy_circuit_open 0\n", "the breaker closed by itself")
	require.Contains(t, m, `agentos_dependency_retries_total{kind="model"}`)
	code, out = runsJSON(t, "GET", base+"/readyz", nil, nil)
	require.Equal(t, 200, code, out)

	// Throughput recovery (reported, not asserted): completions per second
	// before the kill, and per half second after the restart.
	var after []time.Duration
	for _, ts := range completedAt {
		if ts.After(restartedAt) {
			after = append(after, ts.Sub(restartedAt))
		}
	}
	sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
	buckets := map[int]int{}
	for _, d := range after {
		buckets[int(d/(500*time.Millisecond))]++
	}
	var line string
	for b := 0; b <= int(after[len(after)-1]/(500*time.Millisecond)); b++ {
		line += fmt.Sprintf(" %d", buckets[b])
	}
	t.Logf("at the kill: %v; after 5 s down: %v; after the restart: first completion +%s, %d completions, the last +%s; completions per 500 ms after the restart:%s",
		before, mid, after[0].Round(time.Millisecond), len(after), after[len(after)-1].Round(time.Millisecond), line)
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
