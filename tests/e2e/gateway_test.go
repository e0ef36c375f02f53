package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestGatewayInFrontOfReplicas runs `agentos serve gateway` in front of
// real processes: two shared orchestrator replicas and one dedicated to
// tenant tnt_gwded (all three on the node's SQLite store), and the node's
// model-policy. Runs created through the gateway stream through it; the
// dedicated tenant, named by header (demo mode) or by its API token, is
// served by its own replica and nobody else is; a forged tenant header is
// not; after one shared replica is killed, requests still succeed and the
// health checks take it out of the rotation.
func TestGatewayInFrontOfReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_QUOTA_RUN_CREATE_QPS=100"}})
	replica := func() *testnode.Node {
		return testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: []string{
			"AGENTOS_HOME=" + node.Home, "AGENTOS_MODEL_POLICY_ADDR=" + node.Addrs["model-policy"], "AGENTOS_QUOTA_RUN_CREATE_QPS=100"}})
	}
	second, dedicated := replica(), replica()

	upstreams := filepath.Join(t.TempDir(), "upstreams.yaml")
	require.NoError(t, os.WriteFile(upstreams, fmt.Appendf(nil, `
orchestrator: [%s, %s]
model-policy: [%s]
dedicated:
  - name: gwded
    tenants: [tnt_gwded]
    orchestrator: [%s]
`, node.URL("orchestrator"), second.URL("orchestrator"), node.URL("model-policy"), dedicated.URL("orchestrator")), 0o600))
	node.Env = append(node.Env, "AGENTOS_GATEWAY_UPSTREAMS_FILE="+upstreams, "AGENTOS_GATEWAY_HEALTH_INTERVAL=200ms")
	node.StartService("gateway")
	gw := node.URL("gateway")
	demo := map[string]string{"X-Tenant-Id": "tnt_demo"}

	// A run created through the gateway streams through it, whole.
	code, out := runsJSON(t, "POST", gw+"/v1/agents/agt_sample_echo_v1/runs", demo, map[string]any{"input": "through the gateway"})
	require.Equal(t, 201, code, out)
	runID := out["run"].(map[string]any)["run_id"].(string)
	require.NoError(t, checkStream(gatewayStream(t, gw, "tnt_demo", runID)))

	// The client's request id reaches the service and comes back once.
	req, err := http.NewRequestWithContext(t.Context(), "GET", gw+"/v1/runs/"+runID, nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	req.Header.Set("X-Request-Id", "req_gateway_e2e")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, []string{"req_gateway_e2e"}, resp.Header.Values("X-Request-Id"))

	// Model-policy paths go to model-policy; federation has no upstream.
	code, out = runsJSON(t, "GET", gw+"/v1/models", demo, nil)
	require.Equal(t, 200, code, out)
	code, out = runsJSON(t, "GET", gw+"/openai/v1/models", demo, nil)
	require.Equal(t, 200, code, out)
	require.Equal(t, "list", out["object"])
	code, out = runsJSON(t, "GET", gw+"/v1/federation/health", nil, nil)
	require.Equal(t, 503, code, out)
	require.Equal(t, "dependency_unavailable", out["error"].(map[string]any)["code"])

	// The dedicated tenant, set up through the gateway by the platform admin.
	platform := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token}
	code, out = runsJSON(t, "POST", gw+"/v1/admin/tenants", platform, map[string]any{"tenant_id": "tnt_gwded", "name": "Dedicated"})
	require.Equal(t, 201, code, out)
	asDedicatedAdmin := map[string]string{"Authorization": platform["Authorization"], "X-Tenant-Id": "tnt_gwded"}
	code, out = runsJSON(t, "PUT", gw+"/v1/admin/agents/agt_gw_echo", asDedicatedAdmin, map[string]any{"agent": map[string]any{
		"name": "echo", "model_ref": "tier:fast", "instructions": "Answer briefly.", "tools": []string{}}})
	require.Equal(t, 201, code, out)
	code, out = runsJSON(t, "POST", gw+"/v1/admin/tenants/tnt_gwded/tokens", platform, map[string]any{"principal_id": "usr_gw_user"})
	require.Equal(t, 201, code, out)
	dedToken := map[string]string{"Authorization": "Bearer " + out["token"].(map[string]any)["secret"].(string)}

	sharedBefore := apiRequests(t, node.URL("orchestrator")) + apiRequests(t, second.URL("orchestrator"))
	dedBefore := apiRequests(t, dedicated.URL("orchestrator"))
	for _, hdr := range []map[string]string{{"X-Tenant-Id": "tnt_gwded"}, dedToken} {
		code, out = runsJSON(t, "POST", gw+"/v1/agents/agt_gw_echo/runs", hdr, map[string]any{"input": "dedicated"})
		require.Equal(t, 201, code, out)
		id := out["run"].(map[string]any)["run_id"].(string)
		require.NoError(t, checkStream(gatewayStream(t, gw, "tnt_gwded", id)))
	}
	require.Equal(t, dedBefore+4, apiRequests(t, dedicated.URL("orchestrator")), "two creates and two streams on the dedicated replica")
	require.Equal(t, sharedBefore, apiRequests(t, node.URL("orchestrator"))+apiRequests(t, second.URL("orchestrator")),
		"nothing of the dedicated tenant on the shared replicas")

	// Another tenant stays shared, and so does a credential of tnt_demo
	// naming tnt_gwded in the header (the service refuses it; the gateway
	// does not trust it either).
	code, out = runsJSON(t, "GET", gw+"/v1/runs/"+runID, demo, nil)
	require.Equal(t, 200, code, out)
	forged := map[string]string{"Authorization": "Bearer " + node.Credentials().TenantAdmin.Token, "X-Tenant-Id": "tnt_gwded"}
	code, out = runsJSON(t, "POST", gw+"/v1/agents/agt_gw_echo/runs", forged, map[string]any{"input": "forged"})
	require.Equal(t, 403, code, out)
	require.Equal(t, dedBefore+4, apiRequests(t, dedicated.URL("orchestrator")))
	require.Equal(t, sharedBefore+2, apiRequests(t, node.URL("orchestrator"))+apiRequests(t, second.URL("orchestrator")))

	// Kill one shared replica: every request still succeeds (a refused
	// connection is retried on the other replica), and the health checks
	// take it out of the rotation.
	second.Kill("orchestrator")
	var ids []string
	for i := range 10 {
		code, out := runsJSON(t, "POST", gw+"/v1/agents/agt_sample_echo_v1/runs", demo, map[string]any{"input": fmt.Sprintf("after kill %d", i)})
		require.Equal(t, 201, code, out)
		ids = append(ids, out["run"].(map[string]any)["run_id"].(string))
	}
	require.Eventually(t, func() bool {
		_, out := runsJSON(t, "GET", gw+"/readyz", nil, nil)
		pools, _ := out["pools"].(map[string]any)
		p, _ := pools["orchestrator"].(map[string]any)
		return p["healthy"] == 1.0 && p["total"] == 2.0
	}, 30*time.Second, 50*time.Millisecond)
	for _, id := range ids {
		require.NoError(t, checkStream(gatewayStream(t, gw, "tnt_demo", id)), id)
	}
}

// gatewayStream reads a run's whole SSE stream as tenant.
func gatewayStream(t *testing.T, base, tenant, runID string) []store.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", tenant)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "text/event-stream", strings.Split(resp.Header.Get("Content-Type"), ";")[0])
	var evs []store.Event
	require.NoError(t, events.ReadSSE(resp.Body, func(f events.Frame) error {
		e, err := events.DecodeFrame(f)
		if err != nil {
			return err
		}
		evs = append(evs, e)
		return nil
	}))
	return evs
}

// apiRequests is how many API requests an orchestrator has answered: its
// agentos_http_requests_total over every route but the probes (/readyz,
// health) and /metrics.
func apiRequests(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "agentos_http_requests_total{") || strings.Contains(line, `route="GET /readyz"`) ||
			strings.Contains(line, `route="GET /metrics"`) || strings.Contains(line, `route="GET /v1/health"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)
		n += int(v)
	}
	require.NoError(t, sc.Err())
	return n
}
