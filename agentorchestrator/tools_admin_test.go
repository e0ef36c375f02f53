package agentorchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools/webhook"
)

const hookSecret = "whsec-orchestrator-test-0123456789"

// hookServer is a tenant's webhook: it verifies the signature and answers
// {"shouted": upper(input.text)}.
type hookServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	bad    int
}

func newHookServer(t *testing.T) *hookServer {
	h := &hookServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := webhook.Verify(r.Header.Get(webhook.SignatureHeader), hookSecret, body, time.Now(), time.Minute); err != nil {
			h.bad++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		h.bodies = append(h.bodies, body)
		var in struct {
			Input struct {
				Text string `json:"text"`
			} `json:"input"`
		}
		_ = json.Unmarshal(body, &in)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"shouted": strings.ToUpper(in.Input.Text)})
	}))
	t.Cleanup(h.Close)
	return h
}

func adminToken(t *testing.T, b *testBundle, tenant string, roles ...string) string {
	_, secret, err := auth.IssueToken(context.Background(), b.db, auth.IssueParams{TenantID: tenant,
		PrincipalID: "usr_admin_" + tenant, Scopes: auth.AllScopes, Roles: roles})
	require.NoError(t, err)
	return "Bearer " + secret
}

func toolBody(url string) map[string]any {
	return map[string]any{"tool": map[string]any{
		"name": "shout", "description": "Upper-cases text.", "url": url, "secret": hookSecret,
		"input_schema": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}},
			"required": []string{"text"}},
		"idempotent": true, "timeout_ms": 5000}}
}

func TestToolAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{fetchAllow: "127.0.0.1"})
	hook := newHookServer(t)
	adminA := adminToken(t, b, "tnt_a", auth.RoleTenantAdmin)
	adminB := adminToken(t, b, "tnt_b", auth.RoleTenantAdmin)
	as := func(token string) []string { return []string{"Authorization", token} }

	resp, out := b.do("PUT", "/v1/admin/tools/tool.shout", "", toolBody(hook.URL), as(adminA)...)
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	tool := out["tool"].(map[string]any)
	require.Equal(t, "tool.shout", tool["tool_id"])
	require.Equal(t, "webhook", tool["kind"])
	require.NotContains(t, tool, "secret")
	created := tool["created_at"]

	// Replace without a secret keeps the old one.
	body := toolBody(hook.URL)
	delete(body["tool"].(map[string]any), "secret")
	body["tool"].(map[string]any)["description"] = "Shouts text back."
	resp, out = b.do("PUT", "/v1/admin/tools/tool.shout", "", body["tool"], as(adminA)...)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Equal(t, created, out["tool"].(map[string]any)["created_at"])
	def, err := b.db.GetTool(context.Background(), "tnt_a", "tool.shout")
	require.NoError(t, err)
	require.Equal(t, hookSecret, def.Secret)
	require.Equal(t, "Shouts text back.", def.Description)

	resp, out = b.do("GET", "/v1/admin/tools", "", nil, as(adminA)...)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Len(t, out["tools"], 1)
	resp, out = b.do("GET", "/v1/admin/tools/tool.shout", "", nil, as(adminA)...)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	raw, _ := json.Marshal(out)
	require.NotContains(t, string(raw), hookSecret)

	// Tenant b sees none of it.
	resp, out = b.do("GET", "/v1/admin/tools/tool.shout", "", nil, as(adminB)...)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, out)
	resp, out = b.do("GET", "/v1/admin/tools", "", nil, as(adminB)...)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Empty(t, out["tools"])
	resp, out = b.do("PUT", "/v1/admin/agents/agt_shout", "", map[string]any{"name": "shout", "model_ref": "tier:fast",
		"tools": []string{"tool.shout"}}, as(adminB)...)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, out)

	// An agent of tenant a uses it; the run calls the webhook.
	resp, out = b.do("PUT", "/v1/admin/agents/agt_shout", "", map[string]any{"name": "shout", "model_ref": "tier:fast",
		"tools": []string{"tool.shout"}}, as(adminA)...)
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	runID := b.createRun("tnt_a", "agt_shout", map[string]any{"input": map[string]any{"type": "text", "text": "hello hook"}})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	var completed map[string]any
	for _, e := range b.streamEvents("tnt_a", runID) {
		if e.Type == store.EventToolCallCompleted {
			require.NoError(t, json.Unmarshal(e.Payload, &completed))
		}
	}
	require.Equal(t, "ok", completed["status"], completed)
	require.Equal(t, map[string]any{"shouted": "HELLO HOOK"}, completed["output"])
	hook.mu.Lock()
	require.Zero(t, hook.bad)
	require.Len(t, hook.bodies, 1)
	var sent map[string]any
	require.NoError(t, json.Unmarshal(hook.bodies[0], &sent))
	hook.mu.Unlock()
	require.Equal(t, runID, sent["run_id"])
	require.Equal(t, "tnt_a", sent["tenant_id"])
	require.Equal(t, "agt_shout", sent["agent_id"])

	// Audit records the changes.
	recs, err := b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action)
	}
	require.Contains(t, actions, "tool.put")

	resp, _ = b.do("DELETE", "/v1/admin/tools/tool.shout", "", nil, as(adminA)...)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, out = b.do("DELETE", "/v1/admin/tools/tool.shout", "", nil, as(adminA)...)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, out)
	resp, out = b.do("GET", "/v1/admin/tools/tool.shout", "", nil, as(adminA)...)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, out)
	recs, err = b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Equal(t, "tool.delete", recs[len(recs)-1].Action)
}

func TestToolAdminValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	admin := []string{"Authorization", adminToken(t, b, "tnt_a", auth.RoleTenantAdmin)}
	put := func(id string, mutate func(m map[string]any)) (*http.Response, map[string]any) {
		body := toolBody("https://hooks.example.com/x")
		if mutate != nil {
			mutate(body["tool"].(map[string]any))
		}
		return b.do("PUT", "/v1/admin/tools/"+id, "", body, admin...)
	}
	for _, tc := range []struct {
		name   string
		id     string
		mutate func(m map[string]any)
		status int
		field  string
	}{
		{"no prefix", "shout", nil, 400, "tool_id"},
		{"builtin id", "tool.echo", nil, 409, "tool_id"},
		{"no name", "tool.x", func(m map[string]any) { delete(m, "name") }, 400, "tool.name"},
		{"bad name", "tool.x", func(m map[string]any) { m["name"] = "has space" }, 400, "tool.name"},
		{"no description", "tool.x", func(m map[string]any) { m["description"] = " " }, 400, "tool.description"},
		{"schema not object", "tool.x", func(m map[string]any) { m["input_schema"] = map[string]any{"type": "string"} }, 400, "tool.input_schema"},
		{"schema missing", "tool.x", func(m map[string]any) { delete(m, "input_schema") }, 400, "tool.input_schema"},
		{"ftp url", "tool.x", func(m map[string]any) { m["url"] = "ftp://hooks.example.com/x" }, 400, "tool.url"},
		{"url credentials", "tool.x", func(m map[string]any) { m["url"] = "https://u:p@hooks.example.com/x" }, 400, "tool.url"},
		{"no url", "tool.x", func(m map[string]any) { delete(m, "url") }, 400, "tool.url"},
		{"short secret", "tool.x", func(m map[string]any) { m["secret"] = "short" }, 400, "tool.secret"},
		{"no secret", "tool.x", func(m map[string]any) { delete(m, "secret") }, 400, "tool.secret"},
		{"timeout too long", "tool.x", func(m map[string]any) { m["timeout_ms"] = 300001 }, 400, "tool.timeout_ms"},
		{"negative timeout", "tool.x", func(m map[string]any) { m["timeout_ms"] = -1 }, 400, "tool.timeout_ms"},
		{"other kind", "tool.x", func(m map[string]any) { m["kind"] = "mcp" }, 400, "tool.kind"},
		{"id mismatch", "tool.x", func(m map[string]any) { m["tool_id"] = "tool.y" }, 400, "tool.tool_id"},
	} {
		resp, out := put(tc.id, tc.mutate)
		require.Equal(t, tc.status, resp.StatusCode, "%s: %v", tc.name, out)
		e := out["error"].(map[string]any)
		require.Equal(t, tc.field, e["details"].(map[string]any)["field"], "%s: %v", tc.name, out)
	}
	list, err := b.db.ListTools(context.Background(), "tnt_a")
	require.NoError(t, err)
	require.Empty(t, list, "bad input changes nothing")

	// A tenant user may not register tools; a platform admin may, for the
	// tenant it names.
	resp, out := put("tool.x", nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	resp, out = b.do("PUT", "/v1/admin/tools/tool.y", "tnt_a", toolBody("https://hooks.example.com/y"))
	require.Equal(t, http.StatusForbidden, resp.StatusCode, out)
	user := adminToken(t, b, "tnt_a", auth.RoleTenantUser)
	resp, out = b.do("GET", "/v1/admin/tools", "", nil, "Authorization", user)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, out)
	platform := adminToken(t, b, "tnt_a", auth.RolePlatformAdmin)
	resp, out = b.do("PUT", "/v1/admin/tools/tool.z", "tnt_b", toolBody("https://hooks.example.com/z"), "Authorization", platform)
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	_, err = b.db.GetTool(context.Background(), "tnt_b", "tool.z")
	require.NoError(t, err)

	// The agent validation lists the tenant's tools among the known ones.
	resp, out = b.do("PUT", "/v1/admin/agents/agt_x", "", map[string]any{"name": "x", "model_ref": "tier:fast",
		"tools": []string{"tool.nope"}}, admin...)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, out)
	require.Contains(t, out["error"].(map[string]any)["message"], "tool.x")
	require.Contains(t, out["error"].(map[string]any)["message"], "tool.echo")
}

// A webhook at a loopback address is refused at call time unless the
// operator allowlisted it: the run records a forbidden tool error.
func TestToolWebhookSSRFGuard(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	hook := newHookServer(t)
	admin := []string{"Authorization", adminToken(t, b, "tnt_a", auth.RoleTenantAdmin)}
	resp, out := b.do("PUT", "/v1/admin/tools/tool.shout", "", toolBody(hook.URL), admin...)
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	resp, out = b.do("PUT", "/v1/admin/agents/agt_shout", "", map[string]any{"name": "shout", "model_ref": "tier:fast",
		"tools": []string{"tool.shout"}}, admin...)
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	runID := b.createRun("tnt_a", "agt_shout", map[string]any{"input": map[string]any{"type": "text", "text": "hi"}})
	b.waitStatus("tnt_a", runID, store.RunCompleted)
	var completed map[string]any
	for _, e := range b.streamEvents("tnt_a", runID) {
		if e.Type == store.EventToolCallCompleted {
			require.NoError(t, json.Unmarshal(e.Payload, &completed))
		}
	}
	require.Equal(t, "error", completed["status"], completed)
	require.Equal(t, "forbidden", completed["error"].(map[string]any)["code"], completed)
	hook.mu.Lock()
	defer hook.mu.Unlock()
	require.Empty(t, hook.bodies)
	require.Zero(t, hook.bad)
}

// An idempotent webhook that answers 503 (or 429) is called again after a
// backoff, honouring its Retry-After, and the run completes; a
// non-idempotent one is called once and the call fails, since it may have
// acted on a request it failed to answer.
func TestIdempotentWebhookIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{fetchAllow: "127.0.0.1"})
	var calls atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			w.Header().Set("Retry-After", "0")
			http.Error(w, `{"message":"restarting"}`, http.StatusServiceUnavailable)
		case 2:
			http.Error(w, `{"message":"slow down"}`, http.StatusTooManyRequests)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"ok":true}`)
		}
	}))
	defer hook.Close()
	admin := adminToken(t, b, "tnt_a", auth.RoleTenantAdmin)
	toolCompleted := func(idempotent bool) map[string]any {
		calls.Store(0)
		body := toolBody(hook.URL)
		body["tool"].(map[string]any)["idempotent"] = idempotent
		resp, out := b.do("PUT", "/v1/admin/tools/tool.shout", "", body, "Authorization", admin)
		require.Contains(t, []int{http.StatusCreated, http.StatusOK}, resp.StatusCode, out)
		resp, out = b.do("PUT", "/v1/admin/agents/agt_shout", "", map[string]any{"name": "shout", "model_ref": "tier:fast",
			"tools": []string{"tool.shout"}, "defaults": map[string]any{"max_steps": 2}}, "Authorization", admin)
		require.Contains(t, []int{http.StatusCreated, http.StatusOK}, resp.StatusCode, out)
		runID := b.createRun("tnt_a", "agt_shout", map[string]any{"input": "hello"})
		b.waitStatus("tnt_a", runID, store.RunCompleted)
		var completed map[string]any
		for _, e := range b.streamEvents("tnt_a", runID) {
			if e.Type == store.EventToolCallCompleted {
				require.NoError(t, json.Unmarshal(e.Payload, &completed))
			}
		}
		return completed
	}

	completed := toolCompleted(true)
	require.Equal(t, "ok", completed["status"], completed)
	require.EqualValues(t, 2, completed["retries"])
	require.EqualValues(t, 3, calls.Load())

	completed = toolCompleted(false)
	require.Equal(t, "error", completed["status"], completed)
	require.EqualValues(t, 0, completed["retries"])
	require.EqualValues(t, 1, calls.Load())
}
