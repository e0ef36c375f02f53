package conformance

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// These tests prove the orchestrator spec is strict where the contract is:
// each case breaks one example and the spec must reject it.

func loadExample(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(RepoRoot(t), "docs", "api", "agent-orchestrator", "examples", name))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// set walks a dotted path ("run.status", "events.0.payload") and sets or,
// with del, deletes the last element.
func set(t *testing.T, doc map[string]any, path string, v any, del bool) {
	t.Helper()
	parts := strings.Split(path, ".")
	var cur any = doc
	for _, p := range parts[:len(parts)-1] {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			var i int
			_, err := fmt.Sscan(p, &i)
			require.NoError(t, err)
			cur = c[i]
		}
	}
	m, ok := cur.(map[string]any)
	require.True(t, ok, "path %s does not end in an object", path)
	last := parts[len(parts)-1]
	if del {
		delete(m, last)
		return
	}
	m[last] = v
}

func TestOrchestratorSpecRejectsBrokenBodies(t *testing.T) {
	t.Parallel()
	s := LoadSpec(t, "agent-orchestrator")
	type mutation struct {
		path string
		v    any
		del  bool
	}
	cases := []struct {
		name    string
		example string
		entry   ExampleEntry
		mut     []mutation
		wantErr string
	}{
		{"run without correlation_id", "run.response.json", resp("/v1/runs/{run_id}", "GET", 200),
			[]mutation{{path: "correlation_id", del: true}}, "correlation_id"},
		{"run status outside enum", "run.response.json", resp("/v1/runs/{run_id}", "GET", 200),
			[]mutation{{path: "run.status", v: "done"}}, "status"},
		{"run output missing (must be present, maybe null)", "run-create.response.json", resp("/v1/agents/{agent_id}/runs", "POST", 201),
			[]mutation{{path: "run.output", del: true}}, "output"},
		{"run started_at not a timestamp", "run.response.json", resp("/v1/runs/{run_id}", "GET", 200),
			[]mutation{{path: "run.started_at", v: "soon"}}, "started_at"},
		{"run output text is not a string", "run.response.json", resp("/v1/runs/{run_id}", "GET", 200),
			[]mutation{{path: "run.output.text", v: 7}}, "text"},
		{"run list without next_cursor", "runs.response.json", resp("/v1/runs", "GET", 200),
			[]mutation{{path: "next_cursor", del: true}}, "next_cursor"},
		{"error code outside the contract", "error-not-found.json", resp("/v1/runs/{run_id}", "GET", 404),
			[]mutation{{path: "error.code", v: "gone"}}, "code"},
		{"error without details", "error-not-found.json", resp("/v1/runs/{run_id}", "GET", 404),
			[]mutation{{path: "error.details", del: true}}, "details"},
		{"error without correlation_id", "error-not-found.json", resp("/v1/runs/{run_id}", "GET", 404),
			[]mutation{{path: "correlation_id", del: true}}, "correlation_id"},
		{"event payload of the wrong type", "events.response.json", resp("/v1/runs/{run_id}/events", "GET", 200),
			[]mutation{{path: "events.10.payload", v: map[string]any{"status": "completed"}}}, "output"},
		{"event of an unknown type", "events.response.json", resp("/v1/runs/{run_id}/events", "GET", 200),
			[]mutation{{path: "events.0.type", v: "agentos.run.exploded"}}, "agentos.run.exploded"},
		{"event with a numeric step_id", "events.response.json", resp("/v1/runs/{run_id}/events", "GET", 200),
			[]mutation{{path: "events.0.step_id", v: 7}}, "step_id"},
		{"tool call status outside enum", "events.response.json", resp("/v1/runs/{run_id}/events", "GET", 200),
			[]mutation{{path: "events.6.payload.status", v: "maybe"}}, "status"},
		{"listed token shows its secret", "tokens.response.json", resp("/v1/admin/tenants/{tenant_id}/tokens", "GET", 200),
			[]mutation{{path: "tokens.0.secret", v: "s3cret"}}, "secret"},
		{"issued token without secret", "token-issue.response.json", resp("/v1/admin/tenants/{tenant_id}/tokens", "POST", 201),
			[]mutation{{path: "token.secret", del: true}}, "secret"},
		{"tenant quota window outside enum", "tenant.response.json", resp("/v1/admin/tenants/{tenant_id}", "GET", 200),
			[]mutation{{path: "tenant.quotas.models.token_budget.window", v: "week"}}, "window"},
		{"tenant entitlements list is null", "tenant.response.json", resp("/v1/admin/tenants/{tenant_id}", "GET", 200),
			[]mutation{{path: "tenant.entitlements.tool_ids_allowed", v: nil}}, "tool_ids_allowed"},
		{"agent tools is null", "agent.response.json", resp("/v1/agents/{agent_id}", "GET", 200),
			[]mutation{{path: "agent.tools", v: nil}}, "tools"},
		{"audit without hash chain", "audit.response.json", resp("/v1/admin/audit", "GET", 200),
			[]mutation{{path: "records.0.prev_hash", del: true}}, "prev_hash"},
		{"health of another service", "health.response.json", resp("/v1/health", "GET", 200),
			[]mutation{{path: "service", v: "model-policy"}}, "service"},
		{"run create without input", "run-create.request.json", req("/v1/agents/{agent_id}/runs", "POST"),
			[]mutation{{path: "input", del: true}}, "input"},
		{"run create input is a number", "run-create.request.json", req("/v1/agents/{agent_id}/runs", "POST"),
			[]mutation{{path: "input", v: 42}}, "input"},
		{"run create priority outside enum", "run-create.request.json", req("/v1/agents/{agent_id}/runs", "POST"),
			[]mutation{{path: "run_options.priority", v: "urgent"}}, "priority"},
		{"tenant create without tenant_id", "tenant-create.request.json", req("/v1/admin/tenants", "POST"),
			[]mutation{{path: "tenant_create.tenant_id", del: true}}, "tenant_id"},
		{"bare tenant create with bad id", "tenant-create-bare.request.json", req("/v1/admin/tenants", "POST"),
			[]mutation{{path: "tenant_id", v: "ACME"}}, "tenant_id"},
		{"agent put without model_ref", "agent-put.request.json", req("/v1/admin/agents/{agent_id}", "PUT"),
			[]mutation{{path: "agent.model_ref", del: true}}, "model_ref"},
		{"bare agent put without name", "agent-put-bare.request.json", req("/v1/admin/agents/{agent_id}", "PUT"),
			[]mutation{{path: "name", del: true}}, "name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := loadExample(t, tc.example)
			// The unmodified example must pass, so that the failure below is
			// caused by the mutation.
			dir := t.TempDir()
			tc.entry.File = "x.json"
			writeIndex(t, dir, tc.entry, doc)
			require.NoError(t, s.CheckExamples(dir))

			for _, m := range tc.mut {
				set(t, doc, m.path, m.v, m.del)
			}
			writeIndex(t, dir, tc.entry, doc)
			err := s.CheckExamples(dir)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func resp(path, method string, status int) ExampleEntry {
	return ExampleEntry{Path: path, Method: method, Status: status}
}

func req(path, method string) ExampleEntry {
	return ExampleEntry{Path: path, Method: method, Request: true}
}

func writeIndex(t *testing.T, dir string, e ExampleEntry, doc map[string]any) {
	t.Helper()
	b, err := json.Marshal(doc)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, e.File), b, 0o600))
	line := "examples:\n  - {file: " + e.File + ", path: \"" + e.Path + "\", method: " + e.Method
	if e.Request {
		line += ", request: true"
	} else {
		line += ", status: " + strconv.Itoa(e.Status)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, ExampleIndexFile), []byte(line+"}\n"), 0o600))
}

// TestOrchestratorRoutes checks the router finds every operation of the
// orchestrator spec from a concrete URL, including the colon path.
func TestOrchestratorRoutes(t *testing.T) {
	t.Parallel()
	s := LoadSpec(t, "agent-orchestrator")
	cases := map[string]string{
		"GET /v1/health":                                    "/v1/health",
		"GET /healthz":                                      "/healthz",
		"GET /readyz":                                       "/readyz",
		"GET /metrics":                                      "/metrics",
		"GET /v1/agents":                                    "/v1/agents",
		"GET /v1/agents/my-agent":                           "/v1/agents/{agent_id}",
		"POST /v1/agents/agt_1/runs":                        "/v1/agents/{agent_id}/runs",
		"GET /v1/runs?status=queued&limit=5":                "/v1/runs",
		"GET /v1/runs/run_1":                                "/v1/runs/{run_id}",
		"POST /v1/runs/run_1:cancel":                        "/v1/runs/{run_id}:cancel",
		"GET /v1/runs/run_1/events?after_sequence=3":        "/v1/runs/{run_id}/events",
		"GET /v1/admin/tenants":                             "/v1/admin/tenants",
		"POST /v1/admin/tenants":                            "/v1/admin/tenants",
		"PATCH /v1/admin/tenants/tnt_a":                     "/v1/admin/tenants/{tenant_id}",
		"POST /v1/admin/tenants/tnt_a/tokens":               "/v1/admin/tenants/{tenant_id}/tokens",
		"DELETE /v1/admin/tenants/tnt_a/tokens/tok_1":       "/v1/admin/tenants/{tenant_id}/tokens/{token_id}",
		"PUT /v1/admin/agents/agt_x":                        "/v1/admin/agents/{agent_id}",
		"GET /v1/admin/audit?tenant_id=tnt_a&after_seq=2":   "/v1/admin/audit",
		"GET /v1/admin/mcp-servers":                         "/v1/admin/mcp-servers",
		"PUT /v1/admin/mcp-servers/everything":              "/v1/admin/mcp-servers/{name}",
		"POST /mcp":                                         "/mcp",
		"GET /v1/runs/run_1:cancel/../run_2":                "",
		"POST /v1/runs/run_1":                               "",
		"GET /v1/nowhere":                                   "",
		"GET http://127.0.0.1:9/v1/runs/run_1 (other port)": "/v1/runs/{run_id}",
	}
	for in, want := range cases {
		method, target, _ := strings.Cut(in, " ")
		target, _, _ = strings.Cut(target, " ")
		r := httptest.NewRequest(method, target, nil)
		route, _, err := s.route(r)
		if want == "" {
			require.Error(t, err, in)
			continue
		}
		require.NoError(t, err, in)
		require.Equal(t, want, route.Path, in)
	}
}

// TestOrchestratorSpecResponses checks responses the examples cannot
// express: headers, non-JSON bodies, empty bodies.
func TestOrchestratorSpecResponses(t *testing.T) {
	t.Parallel()
	s := LoadSpec(t, "agent-orchestrator")
	std := map[string]string{
		"X-Correlation-Id": "corr_01JDA7X4KZ1T6Y9H3W2Q8R5M7N",
		"X-Request-Id":     "req_01JDA7X4KZ1T6Y9H3W2Q8R5M7P",
		"traceparent":      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{}
		for k, v := range std {
			h[k] = v
		}
		for k, v := range extra {
			if v == "" {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	errBody := `{"error":{"code":"rate_limited","message":"slow down","retryable":true,"details":{}},"correlation_id":"corr_1"}`
	run := string(mustRead(t, "run-create.response.json"))
	cases := []struct {
		name    string
		method  string
		path    string
		status  int
		header  map[string]string
		body    string
		wantErr string
	}{
		{"metrics text", "GET", "/metrics", 200, with(map[string]string{"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}),
			"# HELP x y\nx 1\n", ""},
		{"token revoked, no body", "DELETE", "/v1/admin/tenants/tnt_a/tokens/tok_1", 204, with(nil), "", ""},
		{"204 with a body", "DELETE", "/v1/admin/tenants/tnt_a/tokens/tok_1", 204, with(nil), `{"ok":true}`, "none is documented"},
		{"rate limited with Retry-After", "POST", "/v1/agents/agt_1/runs", 429,
			with(map[string]string{"Content-Type": "application/json", "Retry-After": "2"}), errBody, ""},
		{"Retry-After not a number", "POST", "/v1/agents/agt_1/runs", 429,
			with(map[string]string{"Content-Type": "application/json", "Retry-After": "soon"}), errBody, "Retry-After"},
		{"replay needs Idempotent-Replayed", "POST", "/v1/agents/agt_1/runs", 200,
			with(map[string]string{"Content-Type": "application/json"}), run, "Idempotent-Replayed"},
		{"replay", "POST", "/v1/agents/agt_1/runs", 200,
			with(map[string]string{"Content-Type": "application/json", "Idempotent-Replayed": "true"}), run, ""},
		{"missing X-Request-Id and bad body together", "GET", "/v1/runs/run_1", 200,
			with(map[string]string{"Content-Type": "application/json", "X-Request-Id": ""}), `{"run":{}}`, "X-Request-Id"},
		{"missing X-Request-Id and bad body together (body part)", "GET", "/v1/runs/run_1", 200,
			with(map[string]string{"Content-Type": "application/json", "X-Request-Id": ""}), `{"run":{}}`, "run_id"},
		{"bad traceparent", "GET", "/v1/health", 200,
			with(map[string]string{"Content-Type": "application/json", "traceparent": "xyz"}),
			`{"status":"ok","service":"agent-orchestrator","version":"1.0.0","correlation_id":"corr_1"}`, "traceparent"},
		{"undocumented 201 on get", "GET", "/v1/runs/run_1", 201, with(map[string]string{"Content-Type": "application/json"}), run, "not documented"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, resp := fakeResponse(tc.method, tc.path, tc.status, tc.header)
			err := s.CheckResponse(req, resp, []byte(tc.body))
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(RepoRoot(t), "docs", "api", "agent-orchestrator", "examples", name))
	require.NoError(t, err)
	return b
}
