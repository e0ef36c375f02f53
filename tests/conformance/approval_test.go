package conformance

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestApprovalConformance holds human approval's live responses to the
// spec: a run stopped in requires_action (GET, the event list with
// agentos.run.requires_action), :resume's 200, 400, 404 and 409 answers,
// and the run's whole SSE stream after an edit (agentos.run.resumed).
func TestApprovalConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	spec := LoadSpec(t, "agent-orchestrator")
	node := testnode.Start(t, testnode.Options{})
	base := node.URL("orchestrator")
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo"}}
	admin := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{
		"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token, "X-Tenant-Id": "tnt_demo"}}
	status := func(resp *http.Response, want int, body []byte) {
		t.Helper()
		require.Equal(t, want, resp.StatusCode, string(body))
	}

	resp, body := admin.Do(t, "PUT", "/v1/admin/agents/agt_gated", map[string]any{"agent": map[string]any{
		"name": "gated", "model_ref": "tier:fast", "tools": []string{"tool.echo"},
		"require_approval": []string{"tool.echo"}, "approval_timeout_ms": 600000}})
	status(resp, 201, body)
	require.Equal(t, []any{"tool.echo"}, JSON(t, body)["agent"].(map[string]any)["require_approval"])
	resp, body = admin.Do(t, "PUT", "/v1/admin/agents/agt_gated_bad", map[string]any{"agent": map[string]any{
		"name": "gated", "model_ref": "tier:fast", "tools": []string{"tool.echo"}, "approval_rule": "tool =="}})
	status(resp, 400, body)

	resp, body = user.Do(t, "POST", "/v1/agents/agt_gated/runs", map[string]any{"input": "needs a yes"})
	status(resp, 201, body)
	runID := JSON(t, body)["run"].(map[string]any)["run_id"].(string)
	require.Eventually(t, func() bool {
		resp, body = user.Do(t, "GET", "/v1/runs/"+runID, nil)
		status(resp, 200, body)
		return JSON(t, body)["run"].(map[string]any)["status"] == "requires_action"
	}, time.Minute, 20*time.Millisecond)
	resp, body = user.Do(t, "GET", "/v1/runs?status=requires_action", nil)
	status(resp, 200, body)
	require.Contains(t, string(body), runID)
	resp, body = user.Do(t, "GET", "/v1/runs/"+runID+"/events", nil, map[string]string{"Accept": "application/json"})
	status(resp, 200, body)
	require.Contains(t, string(body), "agentos.run.requires_action")

	resp, body = user.Do(t, "POST", "/v1/runs/"+runID+":resume", map[string]any{"decision": "maybe"})
	status(resp, 400, body)
	resp, body = user.Do(t, "POST", "/v1/runs/"+runID+":resume", map[string]any{"decision": "edit"})
	status(resp, 400, body)
	resp, body = user.Do(t, "POST", "/v1/runs/run_missing:resume", map[string]any{"decision": "approve"})
	status(resp, 404, body)
	resp, body = user.Do(t, "POST", "/v1/runs/"+runID+":resume", map[string]any{"decision": "edit",
		"arguments": map[string]any{"text": "edited"}, "comment": "friendlier"})
	status(resp, 200, body)
	require.Equal(t, "queued", JSON(t, body)["run"].(map[string]any)["status"])

	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	sresp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	sbody := readAll(t, sresp)
	spec.ValidateResponse(t, req, sresp, sbody)
	evs := spec.ValidateSSE(t, req, sbody)
	types := map[string]bool{}
	for _, e := range evs {
		types[e.Type] = true
	}
	for _, typ := range []string{"agentos.run.requires_action", "agentos.run.resumed", "agentos.tool.call.requested", "agentos.run.completed"} {
		require.True(t, types[typ], "missing %s in %s", typ, sbody)
	}
	resp, body = user.Do(t, "POST", "/v1/runs/"+runID+":resume", map[string]any{"decision": "approve"})
	status(resp, 409, body)
}
