package e2e

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/tests/testnode"
)

// Two orchestrator processes on one PostgreSQL store share a tenant's
// run_create_qps: hammered together, they admit at most burst + rate ×
// elapsed (+1) runs in total, not that much each, and both admit some.
func TestRunCreateQPSAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	storeURL := pgtest.URL(t)
	const qps, burst = 10, 20 // burst: twice AGENTOS_QUOTA_RUN_CREATE_QPS (tenancy.DefaultQuotas)
	env := []string{"AGENTOS_STORE_URL=" + storeURL, "AGENTOS_QUOTA_RUN_CREATE_QPS=10"}
	node := testnode.Start(t, testnode.Options{Env: env})
	second := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: append(env,
		"AGENTOS_HOME="+node.Home, "AGENTOS_MODEL_POLICY_ADDR="+node.Addrs["model-policy"])})
	bases := []string{node.URL("orchestrator"), second.URL("orchestrator")}

	hammerReplicas(t, bases, "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"input": "qps"}, 201, qps, burst, "runs")
}

// Two model-policy processes on one PostgreSQL store share a tenant's
// invoke_qps the same way.
func TestInvokeQPSAcrossReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	storeURL := pgtest.URL(t)
	const qps, burst = 10, 10 // burst: ceil(AGENTOS_QUOTA_INVOKE_QPS) (modelpolicy pipeline)
	env := []string{"AGENTOS_STORE_URL=" + storeURL, "AGENTOS_QUOTA_INVOKE_QPS=10"}
	node := testnode.Start(t, testnode.Options{Env: env})
	second := testnode.Start(t, testnode.Options{Services: []string{"model-policy"}, Env: append(env,
		"AGENTOS_HOME="+node.Home, "AGENTOS_ORCHESTRATOR_ADDR="+node.Addrs["orchestrator"])})
	bases := []string{node.URL("model-policy"), second.URL("model-policy")}
	chat := map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": "hi"}}}

	hammerReplicas(t, bases, "/v1/chat/completions", chat, 200, qps, burst, "invocations")
}

// hammerReplicas posts body to path on both replicas from three clients
// each for 2 s and checks that together they admitted (okCode) at most
// burst + qps × elapsed (+1), that each admitted some and that some were
// refused with 429: one limit across replicas, not one per replica.
func hammerReplicas(t *testing.T, bases []string, path string, body map[string]any, okCode int, qps, burst float64, what string) {
	t.Helper()
	demo := map[string]string{"X-Tenant-Id": "tnt_demo"}
	var admitted [2]atomic.Int64
	var refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(2 * time.Second)
	for i, base := range bases {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					code, out := runsJSON(t, "POST", base+path, demo, body)
					switch code {
					case okCode:
						admitted[i].Add(1)
					case 429:
						refused.Add(1)
					default:
						t.Errorf("replica %d: %d %v", i, code, out)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	total := admitted[0].Load() + admitted[1].Load()
	bound := int64(burst + qps*elapsed + 1)
	t.Logf("admitted %d+%d, refused %d in %.2fs; bound %d", admitted[0].Load(), admitted[1].Load(), refused.Load(), elapsed, bound)
	require.Positive(t, admitted[0].Load(), "replica 1 admitted some")
	require.Positive(t, admitted[1].Load(), "replica 2 admitted some")
	require.Positive(t, refused.Load(), "the limit was reached")
	require.LessOrEqual(t, total, bound, what+" admitted across both replicas")
}
