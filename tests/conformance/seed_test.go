package conformance

import (
	"bytes"
	"net/http"
	"net/http/httptest"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/stretchr/testify/require"

	"encoding/json"
	"fmt"
	"time"

	"github.com/nexixai/agentos/tests/testnode"
	"os"
	"path/filepath"
	"testing"
)

// seedDir locates the original implementation's published documents
// (../shared/seed relative to the module root). Outside CI the folder may be
// absent and the seed tests skip; with AGENTOS_TEST_SEED set (1, or the
// folder's absolute path) (.ci/run sets
// it) they are mandatory.
func seedDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(RepoRoot(t)), "shared", "seed")
	// A worktree elsewhere can name the folder: AGENTOS_TEST_SEED=/path/to/seed.
	if v := os.Getenv("AGENTOS_TEST_SEED"); filepath.IsAbs(v) {
		dir = v
	}
	if _, err := os.Stat(filepath.Join(dir, "api")); err != nil {
		if os.Getenv("AGENTOS_TEST_SEED") != "" {
			t.Fatalf("AGENTOS_TEST_SEED is set but the seed documents are missing: %v", err)
		}
		t.Skipf("seed documents not found at %s (the original implementation's OpenAPI files); set AGENTOS_TEST_SEED=1 to make this test mandatory", dir)
	}
	return dir
}

// loadSeed loads one of the seed's OpenAPI documents.
func loadSeed(t *testing.T, service string) *Spec {
	t.Helper()
	s, err := LoadSpecFile(filepath.Join(seedDir(t), "api", service, "openapi.yaml"))
	if err != nil {
		t.Fatalf("seed spec %s: %v", service, err)
	}
	s.Service = "seed/" + service
	return s
}

func seedAuth(tenant string) map[string]any {
	return map[string]any{"tenant_id": tenant,
		"principal":      map[string]any{"principal_id": "usr_seed", "principal_type": "user", "display_name": "Seed User"},
		"scopes":         []any{"models:invoke"},
		"roles":          []any{"tenant_user"},
		"policy_context": map[string]any{"data_classification": "internal", "region": "eu", "purpose": "test"}}
}

// seedRunRequest is a RunCreateRequest of the seed with every optional
// field set.
func seedRunRequest(key string) map[string]any {
	return map[string]any{
		"input": map[string]any{"type": "text", "text": "hello from the seed"},
		"context": map[string]any{"locale": "en-US", "timezone": "UTC", "channel": "api", "user_id": "usr_seed", "session_id": "ses_1",
			"metadata": map[string]any{"source": "seed", "n": 1}, "labels": map[string]any{"team": "a"}},
		"tooling":         map[string]any{"tool_allowlist": []any{"tool.echo"}, "tool_denymap": []any{"tool.shell"}},
		"run_options":     map[string]any{"priority": "high", "timeout_ms": 30000, "max_steps": 5, "stream_events": true, "dry_run": false},
		"idempotency_key": key,
	}
}

// seedRun drives one seed spec: every call's response is validated against
// it (Client.Do), its status checked, and its operation recorded so that
// done can fail on any operation the spec defines and the test did not call.
type seedRun struct {
	t    *testing.T
	spec *Spec
	seen map[string]bool
}

func newSeedRun(t *testing.T, spec *Spec) *seedRun {
	return &seedRun{t: t, spec: spec, seen: map[string]bool{}}
}

func (r *seedRun) do(c *Client, method, path string, body any, want int, extra ...map[string]string) []byte {
	r.t.Helper()
	req := httptest.NewRequest(method, "http://127.0.0.1"+path, nil)
	if route, _, err := r.spec.route(req); err == nil {
		r.seen[route.Operation.OperationID] = true
	}
	resp, data := c.Do(r.t, method, path, body, extra...)
	require.Equal(r.t, want, resp.StatusCode, "%s %s: %s", method, path, data)
	return data
}

func (r *seedRun) done() {
	r.t.Helper()
	for _, pi := range r.spec.Doc.Paths.Map() {
		for method, op := range pi.Operations() {
			if !r.seen[op.OperationID] {
				r.t.Errorf("%s defines %s (%s) but the test never calls it", r.spec.Service, op.OperationID, method)
			}
		}
	}
}

// TestSeedModelPolicy: model-policy against the seed's model-policy
// document, with requests built to its schemas (every optional field, both
// operations).
func TestSeedModelPolicy(t *testing.T) {
	t.Parallel()
	spec := loadSeed(t, "model-policy")
	base, _ := startModelPolicy(t)
	r := newSeedRun(t, spec)
	// The caller is the principal its auth envelope names (a tenant_user
	// may not act on behalf of another principal: see docs/operations.md).
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo", "X-Principal-Id": "usr_seed", "X-Correlation-Id": "corr_seed"}}
	anon := &Client{Spec: spec, BaseURL: base}
	r.do(anon, "GET", "/v1/health", nil, 200)
	models := JSON(t, r.do(user, "GET", "/v1/models", nil, 200))
	require.NotEmpty(t, models["models"])
	r.do(anon, "GET", "/v1/models", nil, 401)

	chat := map[string]any{"auth": seedAuth("tnt_demo"), "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"request": map[string]any{"request_id": "req_1", "operation": "chat", "model_ref": "tier:fast",
			"requirements": map[string]any{"max_latency_ms": 5000, "max_cost_usd": 0.5, "min_context_tokens": 10},
			"input": map[string]any{"messages": []any{map[string]any{"role": "system", "content": "be nice"}, map[string]any{"role": "user", "content": "hi", "name": "bob"}},
				"tools":       []any{map[string]any{"tool_id": "tool.echo", "name": "tool.echo", "input_schema": map[string]any{"type": "object"}}},
				"tool_choice": "auto"},
			"generation": map[string]any{"temperature": 0.2, "top_p": 0.9, "max_output_tokens": 64}}}
	require.NoError(t, spec.CheckRequest(seedRequest(t, "POST", "/v1/models:invoke", chat)))
	out := JSON(t, r.do(user, "POST", "/v1/models:invoke", chat, 200))
	require.Equal(t, "ok", out["response"].(map[string]any)["status"])
	// A concrete model id instead of a tier, no tools.
	plain := map[string]any{"auth": seedAuth("tnt_demo"), "request": map[string]any{"request_id": "req_2", "operation": "chat",
		"model_ref": "builtin/echo-balanced", "input": map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}}}}
	r.do(user, "POST", "/v1/models:invoke", plain, 200)
	for _, enc := range []string{"float", "base64"} {
		embed := map[string]any{"auth": seedAuth("tnt_demo"), "request": map[string]any{"request_id": "req_e", "operation": "embed",
			"model_ref": "tier:embed", "input": map[string]any{"texts": []any{"a", "b"}, "encoding_format": enc}}}
		require.NoError(t, spec.CheckRequest(seedRequest(t, "POST", "/v1/models:invoke", embed)))
		r.do(user, "POST", "/v1/models:invoke", embed, 200)
	}
	r.do(user, "POST", "/v1/models:invoke", `{"auth":`, 400)
	r.do(anon, "POST", "/v1/models:invoke", chat, 401)
	other := map[string]any{"auth": seedAuth("tnt_strict"), "request": chat["request"]}
	r.do(user, "POST", "/v1/models:invoke", other, 403)

	for _, rs := range []string{"default", "pol_default", "pol_strict"} {
		pc := map[string]any{"auth": seedAuth("tnt_demo"), "policy_check": map[string]any{"request_id": "req_3",
			"content": map[string]any{"type": "text", "text": "mail a@b.io"}, "ruleset": rs}}
		require.NoError(t, spec.CheckRequest(seedRequest(t, "POST", "/v1/policy:check", pc)))
		res := JSON(t, r.do(user, "POST", "/v1/policy:check", pc, 200))
		require.Equal(t, "req_3", res["policy_result"].(map[string]any)["request_id"])
	}
	r.do(anon, "POST", "/v1/policy:check", map[string]any{"policy_check": map[string]any{}}, 401)
	r.do(user, "POST", "/v1/policy:check", `[`, 400)
	r.done()
}

// seedRequest builds a request for CheckRequest: the test's bodies must be
// valid under the seed's request schemas, else they prove nothing.
func seedRequest(t *testing.T, method, path string, body any) (*http.Request, []byte) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req := httptest.NewRequest(method, "http://127.0.0.1"+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	return req, raw
}

// allowIntegerAgentVersion records the one deliberate schema difference of
// the orchestrator (docs/operations.md, "Compatibility with the original
// API"): an agent's version is our integer revision, not a string.
func allowIntegerAgentVersion(spec *Spec) {
	spec.Doc.Components.Schemas["Agent"].Value.Properties["version"].Value.Type = &openapi3.Types{"string", "integer"}
}

// allowReplayAndUnknownAgent records the orchestrator's two deliberate
// status differences on run create: an idempotent replay answers 200 (with
// Idempotent-Replayed: true) and an unknown agent 404, both with the
// seed's bodies (RunCreateResponse, ErrorResponse).
func allowReplayAndUnknownAgent(spec *Spec) {
	op := spec.Doc.Paths.Find("/v1/agents/{agent_id}/runs").Post
	op.Responses.Set("200", op.Responses.Value("201"))
	op.Responses.Set("404", spec.Doc.Paths.Find("/v1/agents/{agent_id}").Get.Responses.Value("404"))
}

// TestSeedOrchestrator: the orchestrator against the seed's
// agent-orchestrator document.
func TestSeedOrchestrator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	spec := loadSeed(t, "agent-orchestrator")
	allowIntegerAgentVersion(spec)
	allowReplayAndUnknownAgent(spec)
	node := testnode.Start(t, testnode.Options{})
	base := node.URL("orchestrator")
	r := newSeedRun(t, spec)
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo", "X-Correlation-Id": "corr_seed"}}
	anon := &Client{Spec: spec, BaseURL: base}
	r.do(anon, "GET", "/v1/health", nil, 200)
	r.do(user, "GET", "/v1/agents", nil, 200)
	r.do(anon, "GET", "/v1/agents", nil, 401)
	r.do(user, "GET", "/v1/agents/agt_demo", nil, 200)
	r.do(user, "GET", "/v1/agents/agt_nope", nil, 404)

	run := seedRunRequest(fmt.Sprintf("seed-%d", time.Now().UnixNano()))
	require.NoError(t, spec.CheckRequest(seedRequest(t, "POST", "/v1/agents/agt_demo/runs", run)))
	created := JSON(t, r.do(user, "POST", "/v1/agents/agt_demo/runs", run, 201))
	runID := created["run"].(map[string]any)["run_id"].(string)
	// The idempotency key in the body replays, as the header does.
	r.do(user, "POST", "/v1/agents/agt_demo/runs", run, 200)
	r.do(user, "POST", "/v1/agents/agt_nope/runs", seedRunRequest("seed-nope"), 404)
	r.do(user, "POST", "/v1/agents/agt_demo/runs", `{"input":`, 400)

	r.do(user, "GET", "/v1/runs/"+runID+"/events", nil, 200)
	r.do(user, "GET", "/v1/runs/"+runID+"/events?after_sequence=1", nil, 200)
	got := JSON(t, r.do(user, "GET", "/v1/runs/"+runID, nil, 200))
	require.Equal(t, "completed", got["run"].(map[string]any)["status"])
	r.do(user, "GET", "/v1/runs/run_nope", nil, 404)
	r.do(user, "GET", "/v1/runs/run_nope/events", nil, 404)
	r.do(user, "POST", "/v1/runs/"+runID+":cancel", nil, 409)
	r.do(user, "POST", "/v1/runs/run_nope:cancel", nil, 404)
	r.done()
}

// TestSeedFederation: the federation service against the seed's federation
// document, with the forward body of the seed's own e2e script.
func TestSeedFederation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	spec := loadSeed(t, "federation")
	// The seed's event stream carries the orchestrator's EventEnvelope (its
	// ingest request names it); give the SSE checker that schema.
	spec.Doc.Components.Schemas["EventEnvelope"] = spec.Doc.Components.Schemas["FederationEventIngestRequest"].Value.Properties["events"].Value.Items
	// Deliberate difference (docs/operations.md): a new forwarded run is
	// 201 Created, a replay 200.
	fwdOp := spec.Doc.Paths.Find("/v1/federation/runs:forward").Post
	fwdOp.Responses.Set("201", fwdOp.Responses.Value("200"))
	a, _ := startFederationPair(t)
	base := a.URL("federation")
	r := newSeedRun(t, spec)
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo", "X-Principal-Id": "prn_ci", "X-Correlation-Id": "corr_seed"}}
	anon := &Client{Spec: spec, BaseURL: base}
	r.do(anon, "GET", "/v1/federation/health", nil, 200)
	r.do(user, "GET", "/v1/federation/peer", nil, 200)
	r.do(anon, "GET", "/v1/federation/peer", nil, 401)
	r.do(user, "GET", "/v1/federation/peer/capabilities", nil, 200)

	run := seedRunRequest(fmt.Sprintf("seed-fed-%d", time.Now().UnixNano()))
	run["agent_id"] = "agt_demo"
	fwd := map[string]any{"forward": map[string]any{
		"target_selector": map[string]any{"stack_id": "stk_conf_b", "region": "local", "required_capabilities": []any{"runs.forward"}, "preferred_model_tier": "fast"},
		"auth":            map[string]any{"tenant_id": "tnt_demo", "principal_id": "prn_ci", "scopes": []any{"runs:write", "events:read"}, "subject_type": "api_key", "api_key_id": "key_ci"},
		"run_request":     run,
		"traceparent":     "00-00000000000000000000000000000000-0000000000000000-01"}}
	out := JSON(t, r.do(user, "POST", "/v1/federation/runs:forward", fwd, 201))
	runID := out["forwarded"].(map[string]any)["remote_run_id"].(string)
	r.do(anon, "POST", "/v1/federation/runs:forward", fwd, 401)
	r.do(user, "POST", "/v1/federation/runs:forward", `{"forward":`, 400)

	events := r.do(user, "GET", "/v1/federation/runs/"+runID+"/events", nil, 200)
	r.do(anon, "GET", "/v1/federation/runs/"+runID+"/events", nil, 401)
	frames, err := ParseSSE(events)
	require.NoError(t, err)
	require.NotEmpty(t, frames)
	var env any
	require.NoError(t, json.Unmarshal([]byte(frames[0].Data), &env))
	ingest := map[string]any{"peer_id": "peer_ci", "auth": map[string]any{"tenant_id": "tnt_demo", "principal_id": "prn_ci"}, "events": []any{env, env}}
	res := JSON(t, r.do(user, "POST", "/v1/federation/events:ingest", ingest, 200))
	require.EqualValues(t, 2, res["accepted"].(float64)+res["rejected"].(float64))
	r.do(anon, "POST", "/v1/federation/events:ingest", ingest, 401)
	r.do(user, "POST", "/v1/federation/events:ingest", `{"events":`, 400)
	r.done()
}
