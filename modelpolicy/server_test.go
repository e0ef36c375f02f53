package modelpolicy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/providers/builtin"
)

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	r := b.do("GET", "/v1/health", "", nil)
	require.Equal(t, 200, r.status)
	require.Equal(t, "model-policy", r.body["service"])
	require.Equal(t, "1.2.3", r.body["version"])
	require.NotEmpty(t, r.body["correlation_id"])
	require.NotEmpty(t, r.header.Get("X-Request-Id"))
	require.Equal(t, 200, b.do("GET", "/healthz", "", nil).status)
	r = b.do("GET", "/readyz", "", nil)
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "ok", dig(r.body, "checks", "backends", "builtin", "status"))
	r = b.do("GET", "/metrics", "", nil)
	require.Equal(t, 200, r.status)
	require.Contains(t, string(r.raw), "agentos_http_requests_total")
	require.Equal(t, 401, b.do("GET", "/v1/models", "", nil).status)
	require.Equal(t, 404, b.do("GET", "/v1/nope", "t", nil).status)
}

func TestReadyzStoreDown(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	require.NoError(t, b.db.Close())
	r := b.do("GET", "/readyz", "", nil)
	require.Equal(t, 503, r.status)
	require.Equal(t, "dependency_unavailable", errCode(r))
	require.Equal(t, "store", dig(r.body, "error", "details", "dependency"))
}

func TestModelsFilteredByEntitlements(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_all"))
	b.addTenant(tenant("tnt_fast", func(t *store.Tenant) { t.Entitlements.ModelTiersAllowed = []string{"fast"} }))
	r := b.do("GET", "/v1/models", "tnt_all", nil)
	require.Equal(t, 200, r.status)
	require.Len(t, r.body["models"], 4)
	r = b.do("GET", "/v1/models", "tnt_fast", nil)
	require.Len(t, r.body["models"], 1)
	require.Equal(t, "builtin/echo-fast", dig(r.body, "models", 0, "model_id"))
	require.Equal(t, []any{"chat"}, dig(r.body, "models", 0, "capabilities"))
	r = b.do("GET", "/v1/models", "tnt_missing", nil)
	require.Equal(t, 403, r.status)
	r = b.do("GET", "/v1/models", "tnt_all", nil, "X-Test-Scopes", "runs:read")
	require.Equal(t, 403, r.status)
}

func TestInvokeBuiltinEchoToolLoop(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	// First turn: the builtin model plans one tool.echo call.
	msgs := []map[string]any{{"role": "system", "content": "call tool.echo with the user's text, then answer with what it returned"}, user("hello world")}
	r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", msgs, []map[string]any{echoTool}))
	require.Equal(t, 200, r.status, string(r.raw))
	resp := r.body["response"]
	require.Equal(t, "req_test", dig(resp, "request_id"))
	require.Equal(t, "builtin", dig(resp, "route", "backend"))
	require.Equal(t, "builtin/echo-fast", dig(resp, "route", "model"))
	require.Equal(t, "node_test", dig(resp, "route", "node"))
	require.Equal(t, false, dig(resp, "route", "fallback_used"))
	require.Equal(t, "tool.echo", dig(resp, "output", "tool_calls", 0, "tool_id"))
	require.Equal(t, map[string]any{"text": "hello world"}, dig(resp, "output", "tool_calls", 0, "arguments"))
	require.Equal(t, true, dig(resp, "usage_estimated"))
	require.Equal(t, "allowed", dig(resp, "policy_outcome", "decision"))
	require.NotEmpty(t, r.body["traceparent"])
	require.Contains(t, r.header.Get("traceparent"), "0af7651916cd43dd8448eb211c80319c")
	callID := dig(resp, "output", "tool_calls", 0, "id").(string)

	// Second turn: with the tool result, it answers from it.
	msgs = append(msgs,
		map[string]any{"role": "assistant", "content": "", "tool_calls": []any{dig(resp, "output", "tool_calls", 0)}},
		map[string]any{"role": "tool", "tool_call_id": callID, "content": `{"text":"hello world"}`})
	r = b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", msgs, []map[string]any{echoTool}))
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "Echo: hello world", dig(r.body, "response", "output", "message", "content"))
	require.Empty(t, dig(r.body, "response", "output", "tool_calls"))

	// The ledger and the audit log saw both calls.
	b.flush()
	recs, err := b.db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "builtin/echo-fast", recs[0].ModelID)
	require.Equal(t, "usr_test", recs[0].PrincipalID)
	b.flush()
	aud, err := b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, aud, 2)
	require.Equal(t, "model.invoke", aud[0].Action)
	require.Equal(t, "allowed", aud[0].Outcome)
	require.Equal(t, "tier:fast", aud[0].Target)
}

func TestInvokeEmbed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	body := map[string]any{"auth": map[string]any{"tenant_id": "tnt_a"}, "request": map[string]any{
		"operation": "embed", "model_ref": "embed-small", "input": map[string]any{"texts": []string{"alpha beta", "alpha beta", "zeta"}}}}
	r := b.do("POST", "/v1/models:invoke", "tnt_a", body)
	require.Equal(t, 200, r.status, string(r.raw))
	embs := dig(r.body, "response", "output", "embeddings").([]any)
	require.Len(t, embs, 3)
	v0 := dig(embs[0], "vector").([]any)
	require.Len(t, v0, 64)
	require.Equal(t, v0, dig(embs[1], "vector"))
	require.NotEqual(t, v0, dig(embs[2], "vector"))
	require.Equal(t, "embedding", dig(r.body, "response", "output", "type"))
	require.NotEmpty(t, dig(r.body, "response", "request_id"))
}

func TestInvokeValidationAndAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	b.addTenant(tenant("tnt_off", func(t *store.Tenant) { t.Status = store.TenantDisabled }))
	b.addTenant(tenant("tnt_fast", func(t *store.Tenant) { t.Entitlements.ModelTiersAllowed = []string{"fast"} }))
	b.addTenant(tenant("tnt_notools", func(t *store.Tenant) { t.Entitlements.ToolIDsAllowed = []string{"tool.kv.get"} }))
	cases := []struct {
		name   string
		tenant string
		body   any
		status int
		code   string
		field  string
	}{
		{"malformed", "tnt_a", `{"request":`, 400, "invalid_request", "body"},
		{"no request", "tnt_a", map[string]any{}, 400, "invalid_request", "request"},
		{"bad op", "tnt_a", map[string]any{"request": map[string]any{"operation": "dance", "input": map[string]any{}}}, 400, "invalid_request", "request.operation"},
		{"no messages", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{}, nil), 400, "invalid_request", "request.input.messages"},
		{"bad role", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{{"role": "robot", "content": "x"}}, nil), 400, "invalid_request", "request.input.messages[0].role"},
		{"wrong type", "tnt_a", map[string]any{"request": map[string]any{"operation": "chat", "input": map[string]any{"messages": "hi"}}}, 400, "invalid_request", "request.input.messages"},
		{"tenant mismatch", "tnt_a", chatBody("tnt_other", "tier:fast", []map[string]any{user("x")}, nil), 403, "forbidden", ""},
		{"disabled", "tnt_off", chatBody("tnt_off", "tier:fast", []map[string]any{user("x")}, nil), 403, "forbidden", ""},
		{"tier not entitled", "tnt_fast", chatBody("tnt_fast", "tier:premium", []map[string]any{user("x")}, nil), 403, "forbidden", ""},
		{"model not entitled", "tnt_fast", chatBody("tnt_fast", "builtin/echo-premium", []map[string]any{user("x")}, nil), 403, "forbidden", ""},
		{"unknown model", "tnt_a", chatBody("tnt_a", "nope/never", []map[string]any{user("x")}, nil), 404, "not_found", ""},
		{"unknown tier", "tnt_a", chatBody("tnt_a", "tier:ultra", []map[string]any{user("x")}, nil), 400, "invalid_request", "model_ref"},
		{"embed model for chat", "tnt_a", chatBody("tnt_a", "builtin/embed-small", []map[string]any{user("x")}, nil), 400, "invalid_request", "model_ref"},
		{"tool not entitled", "tnt_notools", chatBody("tnt_notools", "tier:fast", []map[string]any{user("x")}, []map[string]any{echoTool}), 403, "forbidden", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do("POST", "/v1/models:invoke", tc.tenant, tc.body)
			require.Equal(t, tc.status, r.status, string(r.raw))
			require.Equal(t, tc.code, errCode(r))
			if tc.field != "" {
				require.Equal(t, tc.field, dig(r.body, "error", "details", "field"), string(r.raw))
			}
			require.NotEmpty(t, r.body["correlation_id"])
		})
	}
	// Nothing was metered for rejected calls.
	b.flush()
	recs, err := b.db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Empty(t, recs)
}

func TestPlatformAdminActsForBodyTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	body := chatBody("tnt_a", "tier:fast", []map[string]any{user("hi")}, nil)
	body["auth"] = map[string]any{"tenant_id": "tnt_a", "principal": map[string]any{"principal_id": "usr_alice", "principal_type": "user"}}
	r := b.do("POST", "/v1/models:invoke", "tnt_platform", body, "X-Test-Roles", "platform_admin")
	require.Equal(t, 200, r.status, string(r.raw))
	b.flush()
	recs, err := b.db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, "usr_alice", recs[0].PrincipalID)
}

func TestPIIRedactionAndBlocking(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	b.addTenant(tenant("tnt_strict", func(t *store.Tenant) { t.DefaultPolicyID = "pol_strict" }))
	text := "mail bob@example.com or call +1 415-555-0100, card 4111 1111 1111 1111"
	r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user(text)}, nil))
	require.Equal(t, 200, r.status, string(r.raw))
	out := dig(r.body, "response", "output", "message", "content").(string)
	require.NotContains(t, out, "bob@example.com")
	require.NotContains(t, out, "4111")
	require.Contains(t, out, "[REDACTED:email]")
	require.Equal(t, "redacted", dig(r.body, "response", "policy_outcome", "decision"))
	red := dig(r.body, "response", "policy_outcome", "redactions").([]any)
	require.Len(t, red, 3)

	r = b.do("POST", "/v1/models:invoke", "tnt_strict", chatBody("tnt_strict", "tier:fast", []map[string]any{user("my ssn is 123-45-6789")}, nil))
	require.Equal(t, 403, r.status, string(r.raw))
	require.Equal(t, "policy_blocked", errCode(r))
	require.Contains(t, dig(r.body, "error", "details", "reasons"), "input_ssn_blocked")
	b.flush()
	aud, err := b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_strict"})
	require.NoError(t, err)
	require.Len(t, aud, 1)
	require.Equal(t, "blocked", aud[0].Outcome)
}

func TestPolicyCheck(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	for _, path := range []string{"/v1/policy:check", "/v1/policy/check"} {
		r := b.do("POST", path, "tnt_a", map[string]any{"auth": map[string]any{"tenant_id": "tnt_a"},
			"policy_check": map[string]any{"request_id": "req_1", "content": map[string]any{"type": "text", "text": "key sk-abcdefghijklmnopqrstuvwx and 10.0.0.1"}}})
		require.Equal(t, 200, r.status, string(r.raw))
		pr := r.body["policy_result"]
		require.Equal(t, "req_1", dig(pr, "request_id"))
		require.Equal(t, "redacted", dig(pr, "decision"))
		require.Equal(t, "key [REDACTED:secret] and 10.0.0.1", dig(pr, "content", "text"))
	}
	r := b.do("POST", "/v1/policy:check", "tnt_a", map[string]any{"policy_check": map[string]any{"content": map[string]any{"text": "ssn 123-45-6789"}, "ruleset": "pol_strict"}})
	require.Equal(t, "blocked", dig(r.body, "policy_result", "decision"))
	r = b.do("POST", "/v1/policy:check", "tnt_a", map[string]any{"policy_check": map[string]any{"content": map[string]any{"text": "nothing here"}}})
	require.Equal(t, "allowed", dig(r.body, "policy_result", "decision"))
	require.Nil(t, dig(r.body, "policy_result", "content"))
	r = b.do("POST", "/v1/policy:check", "tnt_a", map[string]any{"policy_check": map[string]any{"content": map[string]any{"text": "x"}, "ruleset": "pol_nope"}})
	require.Equal(t, 400, r.status)
	require.Equal(t, "policy_check.ruleset", dig(r.body, "error", "details", "field"))
	// Bare form with a plain string.
	r = b.do("POST", "/v1/policy/check", "tnt_a", map[string]any{"content": "a@b.io"})
	require.Equal(t, "redacted", dig(r.body, "policy_result", "decision"))
}

func TestRequestLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_rpm", func(t *store.Tenant) { t.Quotas.Models.MaxRequestsPerMinute = 2 }))
	b.addTenant(tenant("tnt_tpr", func(t *store.Tenant) { t.Quotas.Models.MaxTokensPerRequest = 20 }))
	for i := 0; i < 2; i++ {
		r := b.do("POST", "/v1/models:invoke", "tnt_rpm", chatBody("tnt_rpm", "tier:fast", []map[string]any{user("x")}, nil))
		require.Equal(t, 200, r.status, string(r.raw))
	}
	r := b.do("POST", "/v1/models:invoke", "tnt_rpm", chatBody("tnt_rpm", "tier:fast", []map[string]any{user("x")}, nil))
	require.Equal(t, 429, r.status)
	require.Equal(t, "rate_limited", errCode(r))
	require.NotEmpty(t, r.header.Get("Retry-After"))

	// A request that can never pass is a 400 naming the field (retrying
	// cannot help; the SDKs treat 429 as retryable).
	r = b.do("POST", "/v1/models:invoke", "tnt_tpr", chatBody("tnt_tpr", "tier:fast", []map[string]any{user(strings.Repeat("word ", 40))}, nil))
	require.Equal(t, 400, r.status)
	require.Equal(t, "invalid_request", errCode(r))
	require.Equal(t, "request.input", dig(r.body, "error", "details", "field"))
	require.Nil(t, dig(r.body, "error", "type"), "OpenAI's type and param only on the OpenAI surface")
	require.Equal(t, false, dig(r.body, "error", "retryable"))
	require.Empty(t, r.header.Get("Retry-After"))
	require.Equal(t, "max_tokens_per_request", dig(r.body, "error", "details", "quota"))
	require.EqualValues(t, 20, dig(r.body, "error", "details", "limit"))
	require.Greater(t, dig(r.body, "error", "details", "requested").(float64), 20.0)
	r = b.do("POST", "/v1/models:invoke", "tnt_tpr", chatBody("tnt_tpr", "tier:fast", []map[string]any{user("hi")}, nil))
	require.Equal(t, 200, r.status, string(r.raw))
	// The OpenAI surface names its own field: max_tokens.
	for _, path := range []string{"/v1/chat/completions", "/openai/v1/chat/completions"} {
		r = b.do("POST", path, "tnt_tpr", map[string]any{"model": "tier:fast", "messages": []any{user("hi")}, "max_tokens": 1000})
		require.Equal(t, 400, r.status, string(r.raw))
		require.Equal(t, "max_tokens", dig(r.body, "error", "param"))
		require.EqualValues(t, 20, dig(r.body, "error", "details", "limit"))
	}
}

// TestRequestLimitQuotaChangeNoRefill raises a tenant's
// max_requests_per_minute once it is used up: the raised quota applies to
// the bucket's refill, not as a fresh bucket, so the next call is still
// refused (a rebuilt bucket would hand out the whole new quota at once).
func TestRequestLimitQuotaChangeNoRefill(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{mutate: func(c *Config) { c.TenantTTL = -1 }}) // every call reads the tenant
	tn := tenant("tnt_rpm", func(t *store.Tenant) { t.Quotas.Models.MaxRequestsPerMinute = 2 })
	b.addTenant(tn)
	call := func() reply {
		return b.do("POST", "/v1/models:invoke", "tnt_rpm", chatBody("tnt_rpm", "tier:fast", []map[string]any{user("x")}, nil))
	}
	for range 2 {
		r := call()
		require.Equal(t, 200, r.status, string(r.raw))
	}
	require.Equal(t, 429, call().status)

	ctx := context.Background()
	got, err := b.db.GetTenant(ctx, "tnt_rpm")
	require.NoError(t, err)
	prev := got.UpdatedAt
	got.Quotas.Models.MaxRequestsPerMinute = 600
	got.UpdatedAt = prev.Add(time.Millisecond)
	require.NoError(t, b.db.UpdateTenant(ctx, got, prev))
	r := call()
	require.Equal(t, 429, r.status, "a raised quota refilled the bucket: %s", r.raw)
	require.EqualValues(t, 600, dig(r.body, "error", "details", "limit"), "the new quota is in force")
}

func TestInvokeQPS(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{mutate: func(c *Config) { c.DefaultInvokeQPS = 0.001 }})
	b.addTenant(tenant("tnt_a"))
	require.Equal(t, 200, b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("x")}, nil)).status)
	r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("x")}, nil))
	require.Equal(t, 429, r.status)
	require.Equal(t, "invoke_qps", dig(r.body, "error", "details", "quota"))
}

func TestCELRuleBlocks(t *testing.T) {
	t.Parallel()
	cat, err := ParseCatalogue([]byte(DefaultCatalogueYAML + `
policies:
  pol_rules:
    input: {email: redact}
    tools: {deny: ["tool.http.*"]}
    rules:
      - name: no-premium-for-interns
        expression: 'request.tiers.exists(t, t == "premium") && "intern" in request.roles'
        reason: interns may not use premium models
      - name: secrets-need-consent
        expression: 'request.pii.email > 1 && !("pii_ok" in request.policy_context.consent_tags)'
        reason: more than one email needs consent
`))
	require.NoError(t, err)
	b := setup(t, setupOpts{cat: cat})
	b.addTenant(tenant("tnt_r", func(t *store.Tenant) { t.DefaultPolicyID = "pol_rules" }))
	r := b.do("POST", "/v1/models:invoke", "tnt_r", chatBody("tnt_r", "tier:premium", []map[string]any{user("hi")}, nil), "X-Test-Roles", "intern")
	require.Equal(t, 403, r.status, string(r.raw))
	require.Equal(t, "policy_blocked", errCode(r))
	require.Contains(t, r.body["error"].(map[string]any)["message"], "interns may not use premium models")
	require.Equal(t, 200, b.do("POST", "/v1/models:invoke", "tnt_r", chatBody("tnt_r", "tier:premium", []map[string]any{user("hi")}, nil)).status)

	r = b.do("POST", "/v1/models:invoke", "tnt_r", chatBody("tnt_r", "tier:fast", []map[string]any{user("a@b.io c@d.io")}, nil))
	require.Equal(t, 403, r.status)
	body := chatBody("tnt_r", "tier:fast", []map[string]any{user("a@b.io c@d.io")}, nil)
	body["auth"].(map[string]any)["policy_context"] = map[string]any{"consent_tags": []string{"pii_ok"}}
	r = b.do("POST", "/v1/models:invoke", "tnt_r", body)
	require.Equal(t, 200, r.status, string(r.raw))

	fetch := map[string]any{"tool_id": "tool.http.fetch", "name": "tool.http.fetch"}
	r = b.do("POST", "/v1/models:invoke", "tnt_r", chatBody("tnt_r", "tier:fast", []map[string]any{user("x")}, []map[string]any{fetch}))
	require.Equal(t, 403, r.status)
	require.Contains(t, dig(r.body, "error", "details", "reasons"), "tool_denied:tool.http.fetch")
}

// flakyOpenAI is an OpenAI-compatible backend that fails with status until
// healthy is set.
func flakyOpenAI(t *testing.T, status int, calls *int, mu *sync.Mutex) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		*calls++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if status != 200 {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"error":{"message":"overloaded","type":"server_error"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"from upstream"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}`))
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestFallbackBreakerAndCanary(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var badCalls, goodCalls int
	bad := flakyOpenAI(t, 503, &badCalls, &mu)
	good := flakyOpenAI(t, 200, &goodCalls, &mu)
	cat, err := ParseCatalogue([]byte(fmt.Sprintf(`
backends:
  - {name: builtin, type: builtin}
  - {name: vllm, type: openai, base_url: %q}
  - {name: ollama, type: openai, base_url: %q}
models:
  - {name: llama, backend: vllm, tiers: [balanced], price_per_1k_input_usd: 0.5, price_per_1k_output_usd: 1.5, latency_ms: 50}
  - {name: echo, backend: builtin, tiers: [balanced], latency_ms: 1}
  - {name: qwen, backend: ollama, tiers: [fast], latency_ms: 5000}
tiers:
  balanced: [vllm/llama, builtin/echo]
canaries:
  - {name: qwen-canary, match: "tier:fast", model: ollama/qwen, percent: 100, by: tenant}
breaker: {failure_threshold: 2, cooldown: 1h}
`, bad.URL+"/v1", good.URL+"/v1")))
	require.NoError(t, err)
	b := setup(t, setupOpts{cat: cat})
	b.addTenant(tenant("tnt_a"))
	for i := 0; i < 3; i++ {
		r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:balanced", []map[string]any{user("hi")}, nil))
		require.Equal(t, 200, r.status, string(r.raw))
		require.Equal(t, "builtin", dig(r.body, "response", "route", "backend"))
		require.Equal(t, true, dig(r.body, "response", "route", "fallback_used"))
	}
	mu.Lock()
	require.Equal(t, 2, badCalls, "the breaker opened after two failures")
	mu.Unlock()
	require.Equal(t, "open", b.srv.breakers.State("vllm"))

	// Requirements: a latency cap excludes the canary model.
	body := chatBody("tnt_a", "ollama/qwen", []map[string]any{user("hi")}, nil)
	dig(body, "request").(map[string]any)["requirements"] = map[string]any{"max_latency_ms": 100}
	r := b.do("POST", "/v1/models:invoke", "tnt_a", body)
	require.Equal(t, 400, r.status, string(r.raw))
	require.Equal(t, "requirements", dig(r.body, "error", "details", "field"))
	// Canary at 100%: tier:fast goes to ollama/qwen, with real usage.
	r = b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("hi")}, nil))
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "ollama/qwen", dig(r.body, "response", "route", "model"))
	require.Equal(t, "from upstream", dig(r.body, "response", "output", "message", "content"))
	require.EqualValues(t, 10, dig(r.body, "response", "usage", "total_tokens"))
	require.Nil(t, dig(r.body, "response", "usage_estimated"))

	// A cost cap below llama's price skips it for the builtin one.
	body = chatBody("tnt_a", "tier:balanced", []map[string]any{user("hi")}, nil)
	dig(body, "request").(map[string]any)["requirements"] = map[string]any{"max_cost_usd": 0.0001}
	r = b.do("POST", "/v1/models:invoke", "tnt_a", body)
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "builtin/echo", dig(r.body, "response", "route", "model"))
	require.Equal(t, false, dig(r.body, "response", "route", "fallback_used"))
}

func TestAllBackendsDown(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var calls int
	bad := flakyOpenAI(t, 500, &calls, &mu)
	cat, err := ParseCatalogue([]byte(fmt.Sprintf(`
backends:
  - {name: vllm, type: openai, base_url: %q}
  - {name: down, type: openai, base_url: "http://127.0.0.1:1/v1"}
models:
  - {name: a, backend: vllm, tiers: [fast]}
  - {name: b, backend: down, tiers: [fast]}
`, bad.URL+"/v1")))
	require.NoError(t, err)
	b := setup(t, setupOpts{cat: cat})
	b.addTenant(tenant("tnt_a", func(t *store.Tenant) {
		t.Quotas.Models.TokenBudget = store.TokenBudget{Window: "day", MaxTokens: 100000}
	}))
	r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("hi")}, nil))
	require.Equal(t, 503, r.status, string(r.raw))
	require.Equal(t, "dependency_unavailable", errCode(r))
	require.Equal(t, true, dig(r.body, "error", "retryable"))
	// The reservation was released.
	b.flush()
	used, err := b.db.BudgetUsage(context.Background(), "tnt_a", "day", windowStart(time.Now(), "day"))
	require.NoError(t, err)
	require.Zero(t, used.UsedTokens)
	r = b.do("GET", "/readyz", "", nil)
	require.Equal(t, 503, r.status)
	require.Equal(t, "backends", dig(r.body, "error", "details", "dependency"))
}

func TestUsageEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	b.addTenant(tenant("tnt_b"))
	for _, p := range []string{"usr_1", "usr_1", "usr_2"} {
		body := chatBody("tnt_a", "tier:fast", []map[string]any{user("hello")}, nil)
		body["auth"].(map[string]any)["principal_id"] = p // a tenant_user names only itself
		r := b.do("POST", "/v1/models:invoke", "tnt_a", body, "X-Test-Principal", p)
		require.Equal(t, 200, r.status, string(r.raw))
	}
	r := b.do("GET", "/v1/usage", "tnt_a", nil, "X-Test-Principal", "usr_1")
	require.Equal(t, 200, r.status, string(r.raw))
	require.EqualValues(t, 2, dig(r.body, "usage", "totals", "requests"))
	r = b.do("GET", "/v1/usage", "tnt_a", nil, "X-Test-Roles", "tenant_admin")
	require.EqualValues(t, 3, dig(r.body, "usage", "totals", "requests"))
	require.Equal(t, "builtin/echo-fast", dig(r.body, "usage", "by_model", 0, "model_id"))
	r = b.do("GET", "/v1/usage?tenant_id=tnt_b", "tnt_a", nil)
	require.Equal(t, 403, r.status)
	r = b.do("GET", "/v1/usage?tenant_id=tnt_a", "tnt_platform", nil, "X-Test-Roles", "platform_admin")
	require.EqualValues(t, 3, dig(r.body, "usage", "totals", "requests"))
	r = b.do("GET", "/v1/usage?since=yesterday", "tnt_a", nil)
	require.Equal(t, 400, r.status)
	r = b.do("GET", "/v1/usage", "tnt_b", nil, "X-Test-Roles", "tenant_admin")
	require.EqualValues(t, 0, dig(r.body, "usage", "totals", "requests"))
}

func TestMetricsCountCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", []map[string]any{user("a@b.io")}, nil))
	r := b.do("GET", "/metrics", "", nil)
	for _, want := range []string{`agentos_model_requests_total{backend="builtin",code="ok",model="builtin/echo-fast",operation="chat"} 1`,
		`agentos_policy_redactions_total{type="email"} 1`, `agentos_model_tokens_total`} {
		require.Contains(t, string(r.raw), want)
	}
	_ = json.Valid
}

// recordingProvider is the builtin provider, remembering each chat request
// it receives: what reached "the backend".
type recordingProvider struct {
	*builtin.Provider
	mu   sync.Mutex
	reqs []providers.ChatRequest
}

func (p *recordingProvider) Chat(ctx context.Context, req providers.ChatRequest) (providers.ChatResponse, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	return p.Provider.Chat(ctx, req)
}

func (p *recordingProvider) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, _ := json.Marshal(p.reqs[len(p.reqs)-1])
	return string(b)
}

// PII in tool definitions and in JSON tool-call arguments (even written
// with JSON escapes) is redacted before the request reaches the backend.
func TestPIIInToolsAndEscapedJSONNeverReachTheBackend(t *testing.T) {
	t.Parallel()
	rec := &recordingProvider{Provider: builtin.New(0)}
	b := setup(t, setupOpts{mutate: func(c *Config) { c.Providers = map[string]providers.Provider{"builtin": rec} }})
	b.addTenant(tenant("tnt_a"))
	tool := map[string]any{"tool_id": "tool.echo", "name": "tool.echo",
		"description": "mails alice@example.com, card 4111 1111 1111 1111",
		"input_schema": map[string]any{"type": "object", "properties": map[string]any{
			"to": map[string]any{"type": "string", "default": "bob@example.com"}}}}
	msgs := []map[string]any{user("send it"),
		{"role": "assistant", "content": "", "tool_calls": []any{map[string]any{"id": "call_1", "tool_id": "tool.echo", "name": "tool.echo",
			"arguments": json.RawMessage(`{"to":"carol\u0040example.com","nested":["dave\u0040example.com"]}`)}}},
		{"role": "tool", "tool_call_id": "call_1", "content": "sent"}}
	r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:fast", msgs, []map[string]any{tool}))
	require.Equal(t, 200, r.status, string(r.raw))
	sent := rec.last()
	for _, pii := range []string{"alice@", "4111", "bob@", "carol", "dave"} {
		require.NotContains(t, sent, pii)
	}
	require.Contains(t, sent, "[REDACTED:email]")
	require.Equal(t, "redacted", dig(r.body, "response", "policy_outcome", "decision"))
}
