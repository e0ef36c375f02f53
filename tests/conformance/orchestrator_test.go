package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/tools/webhook"
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
	// The webhook tool test's receiver listens on loopback, which the SSRF
	// guard refuses unless the operator allows it.
	// So is the MCP server's (AGENTOS_MCP_HTTP_ALLOW).
	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1", "AGENTOS_MCP_HTTP_ALLOW=127.0.0.1"}})
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

	t.Run("wrong method", func(t *testing.T) {
		// Public and authenticated routes alike, before authentication.
		spec.CheckMethodNotAllowed(t, http.DefaultClient, "POST", base+"/v1/health", "GET, HEAD")
		spec.CheckMethodNotAllowed(t, http.DefaultClient, "DELETE", base+"/v1/runs", "GET, HEAD")
		spec.CheckMethodNotAllowed(t, http.DefaultClient, "PUT", base+"/v1/agents/agt_sample_echo_v1/runs", "POST")
		spec.CheckMethodNotAllowed(t, http.DefaultClient, "POST", base+"/v1/admin/tenants/tnt_demo/tokens/tok_x", "DELETE")
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

	t.Run("token deltas", func(t *testing.T) {
		resp, body := user.Do(t, "POST", "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"input": "stream me", "stream": map[string]any{"tokens": true}})
		status(resp, 201, body)
		id := JSON(t, body)["run"].(map[string]any)["run_id"].(string)
		req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/runs/"+id+"/events", nil)
		require.NoError(t, err)
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		sresp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		sbody := readAll(t, sresp)
		evs := spec.ValidateSSE(t, req, sbody)
		var deltas int
		for _, e := range evs {
			if e.Type == "agentos.model.delta" {
				deltas++
			}
		}
		require.Positive(t, deltas, string(sbody))
		resp, body = user.Do(t, "GET", "/v1/runs/"+id, nil)
		status(resp, 200, body)
		require.Equal(t, map[string]any{"tokens": true}, JSON(t, body)["run"].(map[string]any)["run_options"].(map[string]any)["stream"])
		resp, body = user.Do(t, "POST", "/v1/agents/agt_sample_echo_v1/runs", map[string]any{"input": "x", "stream": map[string]any{"tokens": 1}})
		status(resp, 400, body)
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

		// A disable racing renames is never undone by them.
		codes := make(chan int, 11)
		var wg sync.WaitGroup
		for i := range 11 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				patch := map[string]any{"name": fmt.Sprintf("Renamed %d", i)}
				if i == 5 {
					patch = map[string]any{"status": "disabled"}
				}
				resp, _ := admin.Do(t, "PATCH", "/v1/admin/tenants/"+tid, patch)
				codes <- resp.StatusCode
			}()
		}
		wg.Wait()
		close(codes)
		for c := range codes {
			require.Equal(t, 200, c)
		}
		resp, body = admin.Do(t, "GET", "/v1/admin/tenants/"+tid, nil)
		status(resp, 200, body)
		require.Equal(t, "disabled", JSON(t, body)["tenant"].(map[string]any)["status"])
		require.Contains(t, JSON(t, body)["tenant"].(map[string]any)["name"], "Renamed")
		resp, body = anon.Do(t, "GET", "/v1/agents", nil, tenantHdr)
		status(resp, 403, body)

		resp, body = admin.Do(t, "GET", "/v1/admin/audit?tenant_id="+tid, nil)
		status(resp, 200, body)
		require.True(t, strings.Contains(string(body), "tenant.create"), string(body))
		resp, body = user.Do(t, "GET", "/v1/admin/audit", nil)
		status(resp, 403, body)
	})

	// A tenant admin cannot see, revoke or impersonate the platform admin,
	// whose seeded token lives in the same tenant.
	t.Run("tenant admin and the platform admin's token", func(t *testing.T) {
		tadmin := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"Authorization": "Bearer " + creds.TenantAdmin.Token}}
		tokensPath := "/v1/admin/tenants/" + creds.TenantID + "/tokens"
		resp, body := admin.Do(t, "GET", tokensPath, nil)
		status(resp, 200, body)
		platformTokenID := ""
		for _, tk := range JSON(t, body)["tokens"].([]any) {
			m := tk.(map[string]any)
			for _, role := range m["roles"].([]any) {
				if role == "platform_admin" {
					platformTokenID = m["token_id"].(string)
				}
			}
		}
		require.NotEmpty(t, platformTokenID, "the platform admin's token is homed in the demo tenant")
		resp, body = tadmin.Do(t, "GET", tokensPath, nil)
		status(resp, 200, body)
		require.NotContains(t, string(body), platformTokenID)
		require.NotContains(t, string(body), "platform_admin")
		resp, body = tadmin.Do(t, "DELETE", tokensPath+"/"+platformTokenID, nil)
		status(resp, 404, body)
		resp, body = tadmin.Do(t, "POST", tokensPath, map[string]any{"principal_id": creds.PlatformAdmin.PrincipalID,
			"scopes": []string{"runs:read"}, "roles": []string{"tenant_user"}})
		status(resp, 400, body) // a reserved principal, in any tenant
		require.Contains(t, string(body), `"field":"principal_id"`)
		resp, body = admin.Do(t, "GET", "/v1/admin/tenants", nil)
		status(resp, 200, body) // still works
	})

	t.Run("workers", func(t *testing.T) {
		resp, body := admin.Do(t, "POST", "/v1/admin/workers", map[string]any{"worker": map[string]any{
			"worker_id": "conf-gpu", "labels": map[string]string{"gpu": "a100"},
			"public_key": "UCXQZ3VPBB4ZCJCIVTZOBX7K5ZBO3QKSRQKL6PZ2SWGVLMMVFN7NEE7I"}})
		status(resp, 201, body)
		resp, body = admin.Do(t, "POST", "/v1/admin/workers", map[string]any{"worker_id": "conf-gpu", "labels": map[string]string{"gpu": "a100"},
			"public_key": "UDFMVWMZPL3P6KRQRYGVX6WXFMOPLNDTKE7MJ6FGXNXW3A4UB7EPXNBA"})
		status(resp, 409, body)
		resp, body = admin.Do(t, "POST", "/v1/admin/workers", map[string]any{"worker_id": "conf-bad", "labels": map[string]string{"gpu": "a100"},
			"public_key": "not-a-key"})
		status(resp, 400, body)
		require.Contains(t, string(body), `"field":"public_key"`)
		resp, body = admin.Do(t, "POST", "/v1/admin/workers", map[string]any{"worker_id": "conf-nobody", "labels": map[string]string{"gpu": "a100"},
			"public_key": "UDFMVWMZPL3P6KRQRYGVX6WXFMOPLNDTKE7MJ6FGXNXW3A4UB7EPXNBA", "tenants": []string{"tnt_does_not_exist"}})
		status(resp, 400, body) // a worker dedicated to no real tenant
		require.Contains(t, string(body), `"field":"tenants"`)
		resp, body = admin.Do(t, "POST", "/v1/admin/workers", map[string]any{"worker_id": "conf-dedicated", "labels": map[string]string{"gpu": "a100"},
			"public_key": "UDFMVWMZPL3P6KRQRYGVX6WXFMOPLNDTKE7MJ6FGXNXW3A4UB7EPXNBA", "tenants": []string{"tnt_demo"}})
		status(resp, 201, body)
		require.Contains(t, string(body), `"tenants":["tnt_demo"]`)
		resp, body = admin.Do(t, "GET", "/v1/admin/workers", nil)
		status(resp, 200, body)
		require.Contains(t, string(body), `"worker_id":"conf-gpu"`)
		resp, body = admin.Do(t, "GET", "/v1/admin/workers/conf-gpu", nil)
		status(resp, 200, body)
		resp, body = admin.Do(t, "DELETE", "/v1/admin/workers/conf-gpu", nil)
		status(resp, 200, body)
		require.Contains(t, string(body), `"status":"revoked"`)
		resp, body = admin.Do(t, "GET", "/v1/admin/workers/nope", nil)
		status(resp, 404, body)
		resp, body = user.Do(t, "GET", "/v1/admin/workers", nil)
		status(resp, 403, body)

		demo := map[string]string{"X-Tenant-Id": "tnt_demo"}
		resp, body = admin.Do(t, "PUT", "/v1/admin/agents/conf-placed", map[string]any{"agent": map[string]any{
			"name": "placed", "model_ref": "tier:fast", "tools": []string{"tool.echo", "tool.sleep"},
			"placement": map[string]any{"labels": map[string]string{"gpu": "a100"},
				"tools": map[string]any{"tool.sleep": map[string]any{"labels": map[string]string{}}}}}}, demo)
		status(resp, 201, body)
		require.Contains(t, string(body), `"placement":{"labels":{"gpu":"a100"}`)
		resp, body = admin.Do(t, "PUT", "/v1/admin/agents/conf-placed", map[string]any{"agent": map[string]any{
			"name": "placed", "model_ref": "tier:fast", "tools": []string{"tool.echo"},
			"placement": map[string]any{"tools": map[string]any{"tool.kv.get": map[string]any{"labels": map[string]string{"gpu": "a100"}}}}}}, demo)
		status(resp, 400, body)
		require.Contains(t, string(body), `"field":"agent.placement.tools"`)
	})

	t.Run("mcp", func(t *testing.T) {
		srv := mcp.NewServer(&mcp.Implementation{Name: "conformance", Version: "1"}, nil)
		mcp.AddTool(srv, &mcp.Tool{Name: "lookup", Description: "Looks a word up."},
			func(_ context.Context, _ *mcp.CallToolRequest, in struct {
				Text string `json:"text"`
			}) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "found " + in.Text}}}, nil, nil
			})
		hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
		defer hs.Close()
		demo := map[string]string{"X-Tenant-Id": "tnt_demo"}
		const secret = "mcp-conformance-secret"
		resp, body := admin.Do(t, "PUT", "/v1/admin/mcp-servers/conf", map[string]any{"mcp_server": map[string]any{
			"url": hs.URL, "secret": secret, "headers": map[string]string{"X-Conf": "1"}}}, demo)
		status(resp, 201, body)
		require.NotContains(t, string(body), secret)
		resp, body = admin.Do(t, "GET", "/v1/admin/mcp-servers", nil, demo)
		status(resp, 200, body)
		resp, body = admin.Do(t, "GET", "/v1/admin/mcp-servers/conf", nil, demo)
		status(resp, 200, body)
		require.Contains(t, string(body), `"status":"available"`)
		require.Contains(t, string(body), "mcp.conf.lookup")
		resp, body = admin.Do(t, "GET", "/v1/admin/tools", nil, demo)
		status(resp, 200, body)
		require.Contains(t, string(body), `"tool_id":"mcp.conf.lookup"`)
		resp, body = admin.Do(t, "PUT", "/v1/admin/mcp-servers/conf", map[string]any{"url": "ftp://example.com"}, demo)
		status(resp, 400, body)
		require.Contains(t, string(body), "mcp_server.url")
		resp, body = admin.Do(t, "GET", "/v1/admin/mcp-servers/nope", nil, demo)
		status(resp, 404, body)
		resp, body = user.Do(t, "PUT", "/v1/admin/mcp-servers/mine", map[string]any{"url": hs.URL})
		status(resp, 403, body)

		// /mcp: the agent using the MCP tool, run through the node's own
		// MCP server.
		resp, body = admin.Do(t, "PUT", "/v1/admin/agents/agt_conf_mcp", map[string]any{"agent": map[string]any{
			"name": "MCP", "model_ref": "tier:fast", "tools": []string{"mcp.conf.lookup"}}}, demo)
		status(resp, 201, body)
		accept := map[string]string{"Accept": "application/json, text/event-stream"}
		resp, body = user.Do(t, "POST", "/mcp", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "initialize",
			"params": map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{},
				"clientInfo": map[string]any{"name": "conformance", "version": "1"}}}, accept)
		status(resp, 200, body)
		require.Contains(t, string(body), `"serverInfo"`)
		resp, body = user.Do(t, "POST", "/mcp", map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}, accept)
		status(resp, 202, body)
		resp, body = user.Do(t, "POST", "/mcp", map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call",
			"params": map[string]any{"name": "run_agent_agt_conf_mcp", "arguments": map[string]any{"input": "conformance"}}}, accept)
		status(resp, 200, body)
		require.Contains(t, string(body), "found conformance", string(body))
		require.Contains(t, string(body), `"status":"completed"`)
		resp, body = user.Do(t, "POST", "/mcp", map[string]any{"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
			map[string]string{"Accept": "application/json"})
		status(resp, 400, body)
		resp, body = anon.Do(t, "POST", "/mcp", map[string]any{"jsonrpc": "2.0", "id": 4, "method": "tools/list"}, accept)
		status(resp, 401, body)

		resp, body = admin.Do(t, "DELETE", "/v1/admin/mcp-servers/conf", nil, demo)
		status(resp, 204, body)
		resp, body = admin.Do(t, "DELETE", "/v1/admin/mcp-servers/conf", nil, demo)
		status(resp, 404, body)
	})

	t.Run("tools", func(t *testing.T) {
		const secret = "whsec-conformance-0123456789"
		var mu sync.Mutex
		var received [][]byte
		var badSignatures int
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			if err := webhook.Verify(r.Header.Get(webhook.SignatureHeader), secret, b, time.Now(), 5*time.Minute); err != nil {
				badSignatures++
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			received = append(received, b)
			var in struct {
				Input struct {
					City string `json:"city"`
				} `json:"input"`
			}
			_ = json.Unmarshal(b, &in)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"city": in.Input.City, "forecast": "sunny", "celsius": 21})
		}))
		defer hook.Close()

		demo := map[string]string{"X-Tenant-Id": "tnt_demo"}
		tool := func(url string) map[string]any {
			return map[string]any{"tool": map[string]any{"name": "weather", "description": "Weather for a city.",
				"input_schema": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}},
					"required": []string{"city"}},
				"url": url, "secret": secret, "idempotent": true, "timeout_ms": 10000}}
		}
		resp, body := admin.Do(t, "PUT", "/v1/admin/tools/tool.conf.weather", tool(hook.URL+"/weather"), demo)
		status(resp, 201, body)
		require.NotContains(t, string(body), secret)
		resp, body = admin.Do(t, "PUT", "/v1/admin/tools/tool.conf.weather", tool(hook.URL+"/weather"), demo)
		status(resp, 200, body)
		resp, body = admin.Do(t, "GET", "/v1/admin/tools", nil, demo)
		status(resp, 200, body)
		require.Contains(t, string(body), "tool.conf.weather")
		require.NotContains(t, string(body), secret)
		resp, body = admin.Do(t, "GET", "/v1/admin/tools/tool.conf.weather", nil, demo)
		status(resp, 200, body)

		// Error cases.
		bad := tool(hook.URL)
		bad["tool"].(map[string]any)["input_schema"] = map[string]any{"type": "array"}
		resp, body = admin.Do(t, "PUT", "/v1/admin/tools/tool.conf.bad", bad, demo)
		status(resp, 400, body)
		require.Contains(t, string(body), "tool.input_schema")
		resp, body = admin.Do(t, "PUT", "/v1/admin/tools/tool.echo", tool(hook.URL), demo)
		status(resp, 409, body)
		resp, body = admin.Do(t, "GET", "/v1/admin/tools/tool.conf.nope", nil, demo)
		status(resp, 404, body)
		resp, body = admin.Do(t, "DELETE", "/v1/admin/tools/tool.conf.nope", nil, demo)
		status(resp, 404, body)
		resp, body = user.Do(t, "PUT", "/v1/admin/tools/tool.conf.user", tool(hook.URL))
		status(resp, 403, body)
		resp, body = user.Do(t, "GET", "/v1/admin/tools", nil)
		status(resp, 403, body)

		// An agent uses it; its run calls the webhook with a valid signature.
		resp, body = admin.Do(t, "PUT", "/v1/admin/agents/agt_conf_weather", map[string]any{"agent": map[string]any{
			"name": "Weather", "model_ref": "tier:fast", "tools": []string{"tool.conf.weather"}}}, demo)
		status(resp, 201, body)
		resp, body = user.Do(t, "POST", "/v1/agents/agt_conf_weather/runs", map[string]any{"input": "Lisbon"})
		status(resp, 201, body)
		rid := JSON(t, body)["run"].(map[string]any)["run_id"].(string)
		req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/runs/"+rid+"/events", nil)
		require.NoError(t, err)
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		sresp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		sbody := readAll(t, sresp)
		evs := spec.ValidateSSE(t, req, sbody)
		require.Equal(t, "agentos.run.completed", evs[len(evs)-1].Type, string(sbody))
		var completed map[string]any
		for _, e := range evs {
			if e.Type == "agentos.tool.call.completed" {
				require.NoError(t, json.Unmarshal(e.Payload, &completed))
			}
		}
		require.NotNil(t, completed, string(sbody))
		require.Equal(t, "ok", completed["status"], completed)
		require.Equal(t, "tool.conf.weather", completed["tool_id"])
		require.Equal(t, map[string]any{"city": "Lisbon", "forecast": "sunny", "celsius": float64(21)}, completed["output"])
		mu.Lock()
		require.Zero(t, badSignatures)
		require.Len(t, received, 1)
		var sent map[string]any
		require.NoError(t, json.Unmarshal(received[0], &sent))
		mu.Unlock()
		require.Equal(t, rid, sent["run_id"])
		require.Equal(t, "tnt_demo", sent["tenant_id"])
		require.Equal(t, map[string]any{"city": "Lisbon"}, sent["input"])

		resp, body = admin.Do(t, "DELETE", "/v1/admin/tools/tool.conf.weather", nil, demo)
		status(resp, 204, body)
		resp, body = admin.Do(t, "GET", "/v1/admin/tools/tool.conf.weather", nil, demo)
		status(resp, 404, body)
		resp, body = admin.Do(t, "GET", "/v1/admin/audit?tenant_id=tnt_demo", nil)
		status(resp, 200, body)
		require.Contains(t, string(body), "tool.put")
		require.Contains(t, string(body), "tool.delete")
	})

	t.Run("memory", func(t *testing.T) {
		resp, body := user.Do(t, "PUT", "/v1/memory/conf/doc-1", map[string]any{"value": map[string]any{"text": "otters hold hands", "kind": "fact"}})
		status(resp, 200, body)
		resp, body = user.Do(t, "GET", "/v1/memory/conf/doc-1", nil)
		status(resp, 200, body)
		resp, body = user.Do(t, "GET", "/v1/memory/conf/missing", nil)
		status(resp, 404, body)
		for _, mode := range []string{"keyword", "vector", "hybrid"} {
			resp, body = user.Do(t, "POST", "/v1/memory/conf:search", map[string]any{"query": "otters", "mode": mode, "top_k": 3,
				"filter": map[string]any{"kind": "fact"}})
			status(resp, 200, body)
			require.Equal(t, "doc-1", JSON(t, body)["results"].([]any)[0].(map[string]any)["key"], mode)
		}
		resp, body = user.Do(t, "POST", "/v1/memory/conf:search", map[string]any{"query": "otters", "mode": "fuzzy"})
		status(resp, 400, body)
		resp, body = user.Do(t, "PUT", "/v1/memory/conf/doc-2", map[string]any{})
		status(resp, 400, body)
		resp, body = anon.Do(t, "POST", "/v1/memory/conf:search", map[string]any{"query": "otters"})
		status(resp, 401, body)
		resp, body = user.Do(t, "DELETE", "/v1/memory/conf/doc-1", nil)
		status(resp, 204, body)
	})

	t.Run("a2a", func(t *testing.T) {
		resp, body := user.Do(t, "GET", "/a2a/agt_sample_echo_v1/.well-known/agent-card.json", nil)
		status(resp, 200, body)
		require.Equal(t, base+"/a2a/agt_sample_echo_v1", JSON(t, body)["url"])
		resp, body = user.Do(t, "GET", "/.well-known/agent-card.json", nil)
		status(resp, 200, body)
		resp, body = user.Do(t, "GET", "/a2a/agt_nope/.well-known/agent-card.json", nil)
		status(resp, 404, body)
		resp, body = anon.Do(t, "GET", "/.well-known/agent-card.json", nil)
		status(resp, 401, body)
		resp, body = user.Do(t, "POST", "/a2a/agt_sample_echo_v1", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "message/send",
			"params": map[string]any{"message": map[string]any{"kind": "message", "messageId": fmt.Sprintf("conf-%d", time.Now().UnixNano()),
				"role": "user", "parts": []any{map[string]any{"kind": "text", "text": "hello over a2a"}}}}})
		status(resp, 200, body)
		task := JSON(t, body)["result"].(map[string]any)
		require.Equal(t, "completed", task["status"].(map[string]any)["state"], string(body))
		resp, body = user.Do(t, "POST", "/a2a/agt_sample_echo_v1", map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tasks/get",
			"params": map[string]any{"id": "run_nope"}})
		status(resp, 200, body)
		require.EqualValues(t, -32001, JSON(t, body)["error"].(map[string]any)["code"])
	})

	t.Run("console and analytics", func(t *testing.T) {
		for _, p := range []string{"/console", "/console/runs", "/console/runs/run_x", "/console/assets/app.css", "/console/assets/js/app.js"} {
			resp, body := anon.Do(t, "GET", p, nil)
			status(resp, 200, body)
			require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'", p)
		}
		resp, body := anon.Do(t, "GET", "/console/assets/nope.js", nil)
		status(resp, 404, body)
		resp, body = user.Do(t, "GET", "/v1/analytics/usage?bucket=hour", nil)
		status(resp, 200, body)
		rep := JSON(t, body)["report"].(map[string]any)
		require.Equal(t, "tnt_demo", rep["tenant_id"])
		require.Positive(t, rep["totals"].(map[string]any)["runs"], "the runs above")
		resp, body = user.Do(t, "GET", "/v1/analytics/usage?bucket=week", nil)
		status(resp, 400, body)
		resp, body = anon.Do(t, "GET", "/v1/analytics/usage", nil)
		status(resp, 401, body)
		resp, body = admin.Do(t, "GET", "/v1/admin/audit:verify", nil)
		status(resp, 200, body)
		v := JSON(t, body)["verify"].(map[string]any)
		require.Equal(t, true, v["ok"], string(body))
		require.Positive(t, v["records"])
		resp, body = user.Do(t, "GET", "/v1/admin/audit:verify", nil)
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
