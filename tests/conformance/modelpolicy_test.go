package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/node"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/modelpolicy"
)

const mpBootstrap = "conformance-bootstrap-admin-token-0123456789"

// startModelPolicy runs the real model-policy server in-process on
// 127.0.0.1:0 over a real SQLite store, with the real Authenticator in demo
// mode. A second, failing OpenAI-compatible backend makes the error paths
// reachable.
func startModelPolicy(t *testing.T) (string, *sqlite.DB) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	now := time.Now().UTC()
	mk := func(id string, mut func(*store.Tenant)) {
		tn := store.Tenant{TenantID: id, Name: id, Status: store.TenantActive, PlanTier: "standard", CreatedAt: now, UpdatedAt: now,
			Entitlements: store.Entitlements{ModelTiersAllowed: []string{"*"}, ModelBackendsAllowed: []string{"*"}, ToolIDsAllowed: []string{"*"}}}
		if mut != nil {
			mut(&tn)
		}
		require.NoError(t, db.CreateTenant(ctx, tn))
	}
	mk("tnt_demo", nil)
	mk("tnt_strict", func(tn *store.Tenant) { tn.DefaultPolicyID = "pol_strict" })
	mk("tnt_budget", func(tn *store.Tenant) { tn.Quotas.Models.TokenBudget = store.TokenBudget{Window: "day", MaxTokens: 10} })
	mk("tnt_rpm", func(tn *store.Tenant) { tn.Quotas.Models.MaxRequestsPerMinute = 1 })
	mk("tnt_fast", func(tn *store.Tenant) { tn.Entitlements.ModelTiersAllowed = []string{"fast"} })
	mk("tnt_tpr", func(tn *store.Tenant) { tn.Quotas.Models.MaxTokensPerRequest = 100 })

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"message":"overloaded"}}`)
	}))
	t.Cleanup(down.Close)
	yaml := strings.Replace(modelpolicy.DefaultCatalogueYAML, "backends:\n  - name: builtin\n    type: builtin\n",
		fmt.Sprintf("backends:\n  - name: builtin\n    type: builtin\n  - name: flaky\n    type: openai\n    base_url: %q\n", down.URL+"/v1"), 1)
	yaml = strings.Replace(yaml, "models:\n", "models:\n  - {name: broken, backend: flaky, tiers: [broken]}\n", 1)
	cat, err := modelpolicy.ParseCatalogue([]byte(yaml))
	require.NoError(t, err)

	authn, err := auth.New(auth.Config{Mode: auth.ModeDemo, Tenants: db, Tokens: db, BootstrapToken: mpBootstrap})
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := modelpolicy.New(modelpolicy.Config{Store: db, Authenticate: authn.Middleware, Catalogue: cat,
		Registry: prometheus.NewRegistry(), Logger: log, NodeID: "stk_conformance", Version: "1.0.0"})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	require.NoError(t, srv.Start())
	// The node's listener path: its server limits and graceful drain.
	go func() { done <- node.ServeListener(sctx, config.Config{Mode: config.ModeDemo}, ln, srv.Handler(), log) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, srv.Stop())
	})
	return "http://" + ln.Addr().String(), db
}

// TestModelPolicyConformance validates live responses of every model-policy
// endpoint, success and error, against docs/api/model-policy/openapi.yaml.
func TestModelPolicyConformance(t *testing.T) {
	t.Parallel()
	spec := LoadSpec(t, "model-policy")
	base, db := startModelPolicy(t)
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo"}}
	as := func(tenant string) *Client {
		return &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": tenant}}
	}
	admin := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"Authorization": "Bearer " + mpBootstrap}}
	anon := &Client{Spec: spec, BaseURL: base}
	status := func(resp *http.Response, want int, body []byte) {
		t.Helper()
		require.Equal(t, want, resp.StatusCode, string(body))
	}
	chat := func(tenant, ref, text string) map[string]any {
		return map[string]any{"auth": map[string]any{"tenant_id": tenant}, "request": map[string]any{
			"operation": "chat", "model_ref": ref, "input": map[string]any{"messages": []any{map[string]any{"role": "user", "content": text}},
				"tools": []any{map[string]any{"tool_id": "tool.echo", "name": "tool.echo", "input_schema": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}}}}}}}
	}

	// Health.
	resp, body := anon.Do(t, "GET", "/v1/health", nil)
	status(resp, 200, body)
	resp, body = anon.Do(t, "GET", "/healthz", nil)
	status(resp, 200, body)
	resp, body = anon.Do(t, "GET", "/readyz", nil)
	status(resp, 200, body)
	require.Equal(t, "down", JSON(t, body)["checks"].(map[string]any)["backends"].(map[string]any)["flaky"].(map[string]any)["status"])
	resp, body = anon.Do(t, "GET", "/metrics", nil)
	status(resp, 200, body)

	// Models.
	resp, body = user.Do(t, "GET", "/v1/models", nil)
	status(resp, 200, body)
	resp, body = anon.Do(t, "GET", "/v1/models", nil)
	status(resp, 401, body)
	resp, body = as("tnt_nope").Do(t, "GET", "/v1/models", nil)
	require.Contains(t, []int{401, 403}, resp.StatusCode, string(body))

	// Invoke: chat (tool call, answer), embed, and the error paths.
	resp, body = user.Do(t, "POST", "/v1/models:invoke", chat("tnt_demo", "tier:fast", "hello a@b.io"))
	status(resp, 200, body)
	out := JSON(t, body)["response"].(map[string]any)
	require.Equal(t, "redacted", out["policy_outcome"].(map[string]any)["decision"])
	resp, body = user.Do(t, "POST", "/v1/models:invoke", map[string]any{"request": map[string]any{"operation": "chat", "model_ref": "tier:balanced",
		"input": map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}}}})
	status(resp, 200, body)
	resp, body = user.Do(t, "POST", "/v1/models:invoke", map[string]any{"request": map[string]any{"operation": "embed",
		"input": map[string]any{"texts": []string{"x", "y"}}}})
	status(resp, 200, body)
	resp, body = admin.Do(t, "POST", "/v1/models:invoke", map[string]any{"auth": map[string]any{"tenant_id": "tnt_demo", "principal_id": "usr_x"},
		"request": map[string]any{"operation": "chat", "input": map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}}}})
	status(resp, 200, body)
	for _, tc := range []struct {
		c      *Client
		body   any
		status int
		code   string
	}{
		{user, `{"request":`, 400, "invalid_request"},
		{user, map[string]any{"request": map[string]any{"operation": "chat", "input": map[string]any{"messages": []any{}}}}, 400, "invalid_request"},
		{user, strings.Repeat(" ", 1<<20+10), 413, "invalid_request"},
		{anon, chat("tnt_demo", "tier:fast", "x"), 401, "unauthorized"},
		{user, chat("tnt_other", "tier:fast", "x"), 403, "forbidden"},
		{as("tnt_fast"), chat("tnt_fast", "tier:premium", "x"), 403, "forbidden"},
		{as("tnt_strict"), chat("tnt_strict", "tier:fast", "ssn 123-45-6789"), 403, "policy_blocked"},
		{user, chat("tnt_demo", "nope/never", "x"), 404, "not_found"},
		{as("tnt_budget"), chat("tnt_budget", "tier:fast", "a long enough message to exceed ten tokens of budget"), 429, "quota_exceeded"},
		{user, chat("tnt_demo", "tier:broken", "x"), 503, "dependency_unavailable"},
	} {
		resp, body = tc.c.Do(t, "POST", "/v1/models:invoke", tc.body)
		status(resp, tc.status, body)
		require.Equal(t, tc.code, JSON(t, body)["error"].(map[string]any)["code"])
	}
	rpm := as("tnt_rpm")
	resp, body = rpm.Do(t, "POST", "/v1/models:invoke", chat("tnt_rpm", "tier:fast", "x"))
	status(resp, 200, body)
	resp, body = rpm.Do(t, "POST", "/v1/models:invoke", chat("tnt_rpm", "tier:fast", "x"))
	status(resp, 429, body)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))

	// Policy check and its alias.
	for _, p := range []string{"/v1/policy:check", "/v1/policy/check"} {
		resp, body = user.Do(t, "POST", p, map[string]any{"policy_check": map[string]any{"content": map[string]any{"type": "text", "text": "mail a@b.io"}}})
		status(resp, 200, body)
		resp, body = user.Do(t, "POST", p, map[string]any{"policy_check": map[string]any{"content": map[string]any{"type": "html", "text": "x"}}})
		status(resp, 400, body)
		resp, body = anon.Do(t, "POST", p, map[string]any{"content": "x"})
		status(resp, 401, body)
	}

	// OpenAI-compatible endpoints.
	resp, body = user.Do(t, "POST", "/v1/chat/completions", map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": "hi"}},
		"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "echo", "parameters": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}}}}}})
	status(resp, 200, body)
	resp, body = user.Do(t, "POST", "/v1/chat/completions", map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	status(resp, 200, body)
	resp, body = user.Do(t, "POST", "/v1/chat/completions", map[string]any{"messages": []any{}})
	status(resp, 400, body)
	resp, body = user.Do(t, "POST", "/v1/chat/completions", map[string]any{"model": "tier:broken", "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	status(resp, 503, body)
	resp, body = user.Do(t, "POST", "/v1/embeddings", map[string]any{"model": "tier:embed", "input": "hello"})
	status(resp, 200, body)
	resp, body = user.Do(t, "POST", "/v1/embeddings", map[string]any{"model": "tier:embed", "input": []string{"a", "b"}, "encoding_format": "base64"})
	status(resp, 200, body)
	resp, body = user.Do(t, "POST", "/v1/embeddings", map[string]any{"model": "tier:embed"})
	status(resp, 400, body)
	resp, body = user.Do(t, "POST", "/v1/embeddings", map[string]any{"model": "nope/x", "input": "a"})
	status(resp, 404, body)

	// The OpenAI base URL: list and retrieve in OpenAI's shapes (a model id's
	// slash escaped, as the SDKs send it), chat and embeddings, and the 400
	// naming max_tokens for a request over max_tokens_per_request.
	resp, body = user.Do(t, "GET", "/openai/v1/models", nil)
	status(resp, 200, body)
	resp, body = user.Do(t, "GET", "/openai/v1/models/builtin%2Fecho-fast", nil)
	status(resp, 200, body)
	require.Equal(t, "builtin/echo-fast", JSON(t, body)["id"])
	resp, body = as("tnt_fast").Do(t, "GET", "/openai/v1/models/builtin%2Fecho-premium", nil)
	status(resp, 404, body)
	require.Equal(t, "model", JSON(t, body)["error"].(map[string]any)["param"])
	resp, body = user.Do(t, "POST", "/openai/v1/chat/completions", map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": "hi"}}})
	status(resp, 200, body)
	resp, body = as("tnt_tpr").Do(t, "POST", "/openai/v1/chat/completions", map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": "hi"}}, "max_tokens": 500})
	status(resp, 400, body)
	e := JSON(t, body)["error"].(map[string]any)
	require.Equal(t, "max_tokens", e["param"])
	require.Equal(t, "invalid_request_error", e["type"])
	resp, body = user.Do(t, "POST", "/openai/v1/embeddings", map[string]any{"model": "tier:embed", "input": "hello"})
	status(resp, 200, body)
	spec.CheckMethodNotAllowed(t, http.DefaultClient, "DELETE", base+"/openai/v1/models", "GET, HEAD")
	spec.CheckMethodNotAllowed(t, http.DefaultClient, "GET", base+"/v1/chat/completions", "POST")

	// Streaming: headers through the harness's header rules, every chunk
	// against ChatCompletionChunk.
	validateChatStream(t, spec, base)
	validateInvokeStream(t, spec, base)

	// Usage.
	resp, body = user.Do(t, "GET", "/v1/usage", nil)
	status(resp, 200, body)
	resp, body = admin.Do(t, "GET", "/v1/usage?tenant_id=tnt_demo", nil)
	status(resp, 200, body)
	require.NotEmpty(t, JSON(t, body)["usage"].(map[string]any)["records"])
	resp, body = user.Do(t, "GET", "/v1/usage?tenant_id=tnt_strict", nil)
	status(resp, 403, body)
	resp, body = user.Do(t, "GET", "/v1/usage?since=never", nil)
	status(resp, 400, body)

	// Readiness with the store down.
	require.NoError(t, db.Close())
	resp, body = anon.Do(t, "GET", "/readyz", nil)
	status(resp, 503, body)
}

func validateChatStream(t *testing.T, spec *Spec, base string) {
	t.Helper()
	schema := spec.Doc.Components.Schemas["ChatCompletionChunk"].Value
	raw, _ := json.Marshal(map[string]any{"model": "tier:fast", "stream": true, "stream_options": map[string]any{"include_usage": true},
		"messages": []any{map[string]any{"role": "user", "content": "stream me"}}})
	req, err := http.NewRequest("POST", base+"/v1/chat/completions", bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	for _, h := range []string{"X-Correlation-Id", "X-Request-Id", "traceparent"} {
		require.NotEmpty(t, resp.Header.Get(h), h)
	}
	sc := bufio.NewScanner(resp.Body)
	var chunks int
	var done bool
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		require.True(t, strings.HasPrefix(line, "data: "), line)
		data := strings.TrimPrefix(line, "data: ")
		if data == "[DONE]" {
			done = true
			continue
		}
		require.False(t, done, "nothing after [DONE]")
		var v any
		require.NoError(t, json.Unmarshal([]byte(data), &v))
		require.NoError(t, schema.VisitJSON(v, openapi3.MultiErrors(), openapi3.VisitAsResponse()), data)
		chunks++
	}
	require.True(t, done)
	require.GreaterOrEqual(t, chunks, 3)
}

// validateInvokeStream holds a live /v1/models:invoke stream to the spec:
// delta frames against InvokeStreamDelta, the last frame against
// InvokeResponse; the deltas add up to the response's content.
func validateInvokeStream(t *testing.T, spec *Spec, base string) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"auth": map[string]any{"tenant_id": "tnt_demo"}, "request": map[string]any{
		"operation": "chat", "model_ref": "tier:fast", "stream": true,
		"input": map[string]any{"messages": []any{map[string]any{"role": "user", "content": "stream me please"}}}}})
	req, err := http.NewRequest("POST", base+"/v1/models:invoke", bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body := readAll(t, resp)
	require.Equal(t, 200, resp.StatusCode, string(body))
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	for _, h := range []string{"X-Correlation-Id", "X-Request-Id", "traceparent"} {
		require.NotEmpty(t, resp.Header.Get(h), h)
	}
	frames, err := ParseSSE(body)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(frames), 2, string(body))
	var text strings.Builder
	for i, f := range frames {
		var v any
		require.NoError(t, json.Unmarshal([]byte(f.Data), &v))
		name := "InvokeStreamDelta"
		if i == len(frames)-1 {
			require.Equal(t, "response", f.Event)
			name = "InvokeResponse"
		} else {
			require.Equal(t, "delta", f.Event)
			text.WriteString(v.(map[string]any)["delta"].(map[string]any)["content"].(string))
		}
		schema := spec.Doc.Components.Schemas[name].Value
		require.NoError(t, schema.VisitJSON(v, openapi3.MultiErrors(), openapi3.VisitAsResponse()), f.Data)
		if i == len(frames)-1 {
			require.Equal(t, text.String(), v.(map[string]any)["response"].(map[string]any)["output"].(map[string]any)["message"].(map[string]any)["content"])
		}
	}
}
