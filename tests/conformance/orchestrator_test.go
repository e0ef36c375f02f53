package conformance

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestOrchestratorConformance starts a real node (orchestrator and
// model-policy processes) and validates every endpoint's live responses,
// success and error, against docs/api/agent-orchestrator/openapi.yaml.
func TestOrchestratorConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	spec := LoadSpec(t, "agent-orchestrator")
	node := testnode.Start(t, testnode.Options{})
	creds := node.Credentials()
	base := node.URL("orchestrator")
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo"}}
	admin := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"Authorization": "Bearer " + creds.PlatformAdmin.Token}}
	anon := &Client{Spec: spec, BaseURL: base}

	status := func(resp *http.Response, want int, body []byte) {
		t.Helper()
		require.Equal(t, want, resp.StatusCode, string(body))
	}

	t.Run("health", func(t *testing.T) {
		resp, body := anon.Do(t, "GET", "/v1/health", nil)
		status(resp, 200, body)
		require.Equal(t, "agent-orchestrator", JSON(t, body)["service"])
		resp, body = anon.Do(t, "GET", "/healthz", nil)
		status(resp, 200, body)
		resp, body = anon.Do(t, "GET", "/readyz", nil)
		status(resp, 200, body)
		resp, body = anon.Do(t, "GET", "/metrics", nil)
		status(resp, 200, body)
		require.Contains(t, string(body), "agentos_queue_depth")
	})

	t.Run("agents", func(t *testing.T) {
		resp, body := user.Do(t, "GET", "/v1/agents", nil)
		status(resp, 200, body)
		require.Contains(t, string(body), "agt_sample_echo_v1")
		resp, body = user.Do(t, "GET", "/v1/agents/agt_sample_echo_v1", nil)
		status(resp, 200, body)
		resp, body = user.Do(t, "GET", "/v1/agents/agt_nope", nil)
		status(resp, 404, body)
		resp, body = anon.Do(t, "GET", "/v1/agents", nil)
		status(resp, 401, body)
	})

	var runID string
	t.Run("runs", func(t *testing.T) {
		key := map[string]string{"Idempotency-Key": fmt.Sprintf("conf-%d", time.Now().UnixNano())}
		resp, body := user.Do(t, "POST", "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"input": "hello"}, key)
		status(resp, 201, body)
		runID = JSON(t, body)["run"].(map[string]any)["run_id"].(string)
		resp, body = user.Do(t, "POST", "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"input": "hello"}, key)
		status(resp, 200, body)
		require.Equal(t, "true", resp.Header.Get("Idempotent-Replayed"))
		resp, body = user.Do(t, "POST", "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"input": "other"}, key)
		status(resp, 409, body)
		resp, body = user.Do(t, "POST", "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"run_options": map[string]any{"priority": "asap"}})
		status(resp, 400, body)
		resp, body = user.Do(t, "POST", "/v1/agents/agt_nope/runs", map[string]any{"input": "x"})
		status(resp, 404, body)

		// Stream to the end and validate every frame.
		req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/runs/"+runID+"/events", nil)
		require.NoError(t, err)
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		sresp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		sbody := readAll(t, sresp)
		spec.ValidateResponse(t, req, sresp, sbody)
		evs := spec.ValidateSSE(t, req, sbody)
		require.NotEmpty(t, evs)
		require.Equal(t, "agentos.run.completed", evs[len(evs)-1].Type, string(sbody))
		var sawTool, sawModel bool
		for _, e := range evs {
			sawTool = sawTool || e.Type == "agentos.tool.call.completed"
			sawModel = sawModel || e.Type == "agentos.model.completed"
		}
		require.True(t, sawTool && sawModel, "the echo agent makes a model call and a tool call")

		resp, body = user.Do(t, "GET", "/v1/runs/"+runID+"/events?after_sequence=2", nil, map[string]string{"Accept": "application/json"})
		status(resp, 200, body)
		resp, body = user.Do(t, "GET", "/v1/runs/"+runID+"/events?after_sequence=x", nil, map[string]string{"Accept": "application/json"})
		status(resp, 400, body)
		resp, body = user.Do(t, "GET", "/v1/runs/"+runID, nil)
		status(resp, 200, body)
		require.Equal(t, "completed", JSON(t, body)["run"].(map[string]any)["status"])
		resp, body = user.Do(t, "GET", "/v1/runs?limit=5&agent_id=agt_sample_echo_v1", nil)
		status(resp, 200, body)
		resp, body = user.Do(t, "GET", "/v1/runs?limit=0", nil)
		status(resp, 400, body)
		resp, body = user.Do(t, "POST", "/v1/runs/"+runID+":cancel", nil)
		status(resp, 409, body)
		resp, body = user.Do(t, "GET", "/v1/runs/run_missing", nil)
		status(resp, 404, body)
	})

	t.Run("admin", func(t *testing.T) {
		tid := fmt.Sprintf("tnt_conf_%d", time.Now().UnixNano()%1_000_000)
		resp, body := admin.Do(t, "GET", "/v1/admin/tenants", nil)
		status(resp, 200, body)
		resp, body = admin.Do(t, "POST", "/v1/admin/tenants", map[string]any{"tenant_create": map[string]any{
			"tenant_id": tid, "name": "Conformance", "quotas": map[string]any{"runs": map[string]any{"max_concurrent_runs": 3}}}})
		status(resp, 201, body)
		require.EqualValues(t, 3, JSON(t, body)["tenant"].(map[string]any)["quotas"].(map[string]any)["runs"].(map[string]any)["max_concurrent_runs"])
		resp, body = admin.Do(t, "POST", "/v1/admin/tenants", map[string]any{"tenant_id": tid})
		status(resp, 409, body)
		resp, body = admin.Do(t, "POST", "/v1/admin/tenants", map[string]any{"tenant_id": "Bad Id"})
		status(resp, 400, body)
		resp, body = admin.Do(t, "GET", "/v1/admin/tenants/"+tid, nil)
		status(resp, 200, body)
		resp, body = admin.Do(t, "PATCH", "/v1/admin/tenants/"+tid, map[string]any{"quotas": map[string]any{"tools": map[string]any{"tool_calls_per_minute": 7}}})
		status(resp, 200, body)
		q := JSON(t, body)["tenant"].(map[string]any)["quotas"].(map[string]any)
		require.EqualValues(t, 7, q["tools"].(map[string]any)["tool_calls_per_minute"])
		require.EqualValues(t, 3, q["runs"].(map[string]any)["max_concurrent_runs"], "quotas merge field by field")
		resp, body = admin.Do(t, "PATCH", "/v1/admin/tenants/"+tid, map[string]any{"status": "sleeping"})
		status(resp, 400, body)
		resp, body = admin.Do(t, "GET", "/v1/admin/tenants/tnt_missing", nil)
		status(resp, 404, body)

		resp, body = admin.Do(t, "POST", "/v1/admin/tenants/"+tid+"/tokens", map[string]any{
			"principal_id": "svc_conf", "scopes": []string{"runs:create", "runs:read", "agents:read"}, "roles": []string{"tenant_service"}})
		status(resp, 201, body)
		tok := JSON(t, body)["token"].(map[string]any)
		secret, tokenID := tok["secret"].(string), tok["token_id"].(string)
		svc := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-API-Key": secret}}
		resp, body = svc.Do(t, "GET", "/v1/agents", nil)
		status(resp, 200, body)
		resp, body = svc.Do(t, "GET", "/v1/admin/tenants", nil)
		status(resp, 403, body)
		resp, body = svc.Do(t, "GET", "/v1/runs/"+runID, nil)
		status(resp, 404, body) // another tenant's run
		resp, body = admin.Do(t, "GET", "/v1/admin/tenants/"+tid+"/tokens", nil)
		status(resp, 200, body)
		require.NotContains(t, string(body), secret)
		resp, body = admin.Do(t, "POST", "/v1/admin/tenants/"+tid+"/tokens", map[string]any{"principal_id": "svc_x", "scopes": []string{"runs:fly"}})
		status(resp, 400, body)
		resp, body = admin.Do(t, "DELETE", "/v1/admin/tenants/"+tid+"/tokens/"+tokenID, nil)
		status(resp, 204, body)
		resp, body = svc.Do(t, "GET", "/v1/agents", nil)
		status(resp, 401, body)

		tenantHdr := map[string]string{"X-Tenant-Id": tid}
		agent := map[string]any{"agent": map[string]any{"name": "Conf agent", "model_ref": "tier:fast", "instructions": "be brief",
			"tools": []string{"tool.echo"}, "defaults": map[string]any{"max_steps": 4, "timeout_ms": 30000}}}
		resp, body = admin.Do(t, "PUT", "/v1/admin/agents/agt_conf", agent, tenantHdr)
		status(resp, 201, body)
		resp, body = admin.Do(t, "PUT", "/v1/admin/agents/agt_conf", agent, tenantHdr)
		status(resp, 200, body)
		require.EqualValues(t, 2, JSON(t, body)["agent"].(map[string]any)["version"])
		resp, body = admin.Do(t, "PUT", "/v1/admin/agents/agt_conf", map[string]any{"name": "x", "model_ref": "tier:fast", "tools": []string{"tool.nope"}}, tenantHdr)
		status(resp, 400, body)
		require.Contains(t, string(body), "agent.tools[0]")

		resp, body = admin.Do(t, "PATCH", "/v1/admin/tenants/"+tid, map[string]any{"status": "disabled"})
		status(resp, 200, body)
		resp, body = anon.Do(t, "GET", "/v1/agents", nil, tenantHdr)
		status(resp, 403, body)

		resp, body = admin.Do(t, "GET", "/v1/admin/audit?tenant_id="+tid, nil)
		status(resp, 200, body)
		require.True(t, strings.Contains(string(body), "tenant.create"), string(body))
		resp, body = user.Do(t, "GET", "/v1/admin/audit", nil)
		status(resp, 403, body)
	})
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}
