package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
)

type testNode struct {
	id     string
	server *Server
	store  *sqlite.DB
	audit  *memAudit
	orch   *fakeOrchestrator
	client *httptest.Server // client API
	peer   *httptest.Server // peer API (mTLS)
	tls    *pki.NodeTLS
	signer *identity.Signer
}

type testBundle struct {
	a, b     *testNode
	outsider *identity.Signer // a key no peer knows
	caDir    string
}

func tenant(id, status string) store.Tenant {
	return store.Tenant{TenantID: id, Name: id, Status: status, Entitlements: store.Entitlements{
		ModelTiersAllowed: []string{"fast", "balanced"}, ToolIDsAllowed: []string{"tool.echo"}}}
}

func setup(t *testing.T) testBundle {
	t.Helper()
	root := t.TempDir()
	caDir := filepath.Join(root, "ca")
	_, _, err := pki.InitCA(caDir)
	require.NoError(t, err)

	mk := func(id string) *testNode {
		dir := filepath.Join(root, id)
		_, err := pki.IssueNodeCert(caDir, id, nil, dir)
		require.NoError(t, err)
		nt, err := pki.LoadNodeTLS(filepath.Join(dir, pki.CAFile), filepath.Join(dir, pki.NodeFile), filepath.Join(dir, pki.NodeKeyFile))
		require.NoError(t, err)
		key, err := identity.GenerateKey()
		require.NoError(t, err)
		n := &testNode{id: id, tls: nt, signer: identity.NewSigner(id, key), audit: &memAudit{}, orch: newFakeOrchestrator()}
		t.Cleanup(n.orch.srv.Close)
		n.peer = httptest.NewUnstartedServer(nil)
		n.peer.TLS = nt.ServerConfig()
		return n
	}
	a, b := mk("stk_a"), mk("stk_b")
	a.store = newNodeStore(t, tenant("tnt_x", store.TenantActive), tenant("tnt_y", store.TenantActive),
		tenant("tnt_gone", store.TenantActive), tenant("tnt_off", store.TenantActive)) // tnt_off: active on A, disabled on B
	b.store = newNodeStore(t, tenant("tnt_x", store.TenantActive), tenant("tnt_y", store.TenantActive),
		tenant("tnt_off", store.TenantDisabled))

	entry := func(n *testNode) peers.Peer {
		return peers.Peer{StackID: n.id, FederationURL: "https://" + n.peer.Listener.Addr().String(), Region: "local",
			PublicKey: identity.EncodePublicKey(n.signer.PublicKey())}
	}
	for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
		n, other := pair[0], pair[1]
		dir, err := NewDirectory(DirectoryConfig{Self: n.id, TLS: n.tls, Peers: []peers.Peer{entry(other)}})
		require.NoError(t, err)
		srv, err := New(Config{StackID: n.id, Region: "local", Environment: "test", OrchestratorURL: n.orch.srv.URL,
			Signer: n.signer, Directory: dir, Store: n.store, Audit: n.audit,
			Orchestrator: &Orchestrator{BaseURL: n.orch.srv.URL, Minter: jsonMinter{}},
			Authenticate: headerAuth(n.store), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		n.server = srv
		n.peer.Config.Handler = srv.PeerHandler()
		n.peer.StartTLS()
		t.Cleanup(n.peer.Close)
		n.client = httptest.NewServer(srv.ClientHandler())
		t.Cleanup(n.client.Close)
	}
	outKey, err := identity.GenerateKey()
	require.NoError(t, err)
	return testBundle{a: a, b: b, outsider: identity.NewSigner("stk_a", outKey), caDir: caDir}
}

// call makes a client API request as tenant (principal usr_1).
func call(t *testing.T, n *testNode, method, path, tenant string, body any, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, n.client.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", tenant)
	req.Header.Set("X-Principal-Id", "usr_1")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func errCode(t *testing.T, b []byte) string {
	t.Helper()
	var env struct {
		Error struct {
			Code    string         `json:"code"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(b, &env), string(b))
	return env.Error.Code
}

func forwardBody(tenant string) map[string]any {
	return map[string]any{"forward": map[string]any{
		"target_selector": map[string]any{"stack_id": "stk_b", "required_capabilities": []string{"runs.forward", "events_stream"}},
		"auth":            map[string]any{"tenant_id": tenant, "principal": map[string]any{"principal_id": "usr_1"}},
		"run_request":     map[string]any{"agent_id": "agt_echo", "input": map[string]any{"type": "text", "text": "hi"}},
	}}
}

func forward(t *testing.T, b testBundle, tenant string) Forwarded {
	t.Helper()
	resp, body := call(t, b.a, "POST", "/v1/federation/runs:forward", tenant, forwardBody(tenant))
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var out struct {
		Forwarded Forwarded `json:"forwarded"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	return out.Forwarded
}

func TestForwardAndProxy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp, body := call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_x", forwardBody("tnt_x"),
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var out struct {
		Forwarded     Forwarded `json:"forwarded"`
		CorrelationID string    `json:"correlation_id"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	fw := out.Forwarded
	require.NotEmpty(t, out.CorrelationID)
	require.Equal(t, "tnt_x", fw.TenantID)
	require.Equal(t, "stk_b", fw.RemoteStackID)
	require.Equal(t, "queued", fw.Status)
	require.Equal(t, "/v1/federation/runs/"+fw.RemoteRunID+"/events", fw.RemoteEventsURL)
	require.Equal(t, 1, b.b.orch.runCount())

	resp, body = call(t, b.a, "GET", fw.RemoteEventsURL, "tnt_x", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	frames, err := ParseSSE(body)
	require.NoError(t, err)
	var evs []store.Event
	for _, f := range frames {
		if f.Comment {
			continue
		}
		var d sseData
		require.NoError(t, json.Unmarshal([]byte(f.Data), &d))
		require.Equal(t, f.Event, d.Event.Type)
		evs = append(evs, d.Event)
	}
	require.Len(t, evs, 5)
	for i, e := range evs {
		require.Equal(t, int64(i+1), e.Sequence)
		require.Equal(t, "tnt_x", e.TenantID)
		require.Contains(t, e.Trace.Traceparent, traceID, "traceparent survives the trip")
	}
	require.Equal(t, store.EventRunCompleted, evs[len(evs)-1].Type)

	// resume with Last-Event-ID, and the JSON form
	resp, body = call(t, b.a, "GET", fw.RemoteEventsURL, "tnt_x", nil, "Last-Event-ID", "3")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	frames, err = ParseSSE(body)
	require.NoError(t, err)
	var ids []string
	for _, f := range frames {
		if !f.Comment {
			ids = append(ids, f.ID)
		}
	}
	require.Equal(t, []string{"4", "5"}, ids)
	resp, body = call(t, b.a, "GET", fw.RemoteEventsURL+"?after_sequence=4", "tnt_x", nil, "Accept", "application/json")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var page struct {
		Events []store.Event `json:"events"`
		Next   int64         `json:"next_after_sequence"`
	}
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Events, 1)
	require.Equal(t, int64(5), page.Next)

	// the proxied events were kept as replicas
	kept, err := b.a.store.ListIngestedEvents(context.Background(), "tnt_x", fw.RemoteRunID, "")
	require.NoError(t, err)
	require.Len(t, kept, 5)

	// audit on both sides, with peer identity
	require.Contains(t, b.a.audit.actions(), "federation.forward:success")
	require.Contains(t, b.a.audit.actions(), "federation.events.proxy:success")
	require.Contains(t, b.b.audit.actions(), "federation.forward.accept:success")
	require.Contains(t, b.b.audit.actions(), "federation.events.serve:success")

	// another tenant cannot read the forwarded run through A
	resp, body = call(t, b.a, "GET", fw.RemoteEventsURL, "tnt_y", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "not_found", errCode(t, body))
}

func TestForwardIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := forwardBody("tnt_x")
	body["forward"].(map[string]any)["run_request"].(map[string]any)["idempotency_key"] = "k-1"
	resp, first := call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_x", body)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(first))
	resp, second := call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_x", body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(second))
	require.Equal(t, "true", resp.Header.Get("Idempotent-Replayed"))
	var f1, f2 struct{ Forwarded Forwarded }
	require.NoError(t, json.Unmarshal(first, &f1))
	require.NoError(t, json.Unmarshal(second, &f2))
	require.Equal(t, f1.Forwarded.RemoteRunID, f2.Forwarded.RemoteRunID)
	require.Equal(t, 1, b.b.orch.runCount())
}

func TestForwardClientErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		name   string
		tenant string
		body   any
		hdr    []string
		status int
		code   string
	}{
		{"no run_request", "tnt_x", map[string]any{"forward": map[string]any{}}, nil, 400, "invalid_request"},
		{"no input", "tnt_x", map[string]any{"forward": map[string]any{"run_request": map[string]any{"agent_id": "agt_echo"}}}, nil, 400, "invalid_request"},
		{"wrong type", "tnt_x", map[string]any{"forward": map[string]any{"run_request": map[string]any{"agent_id": 5}}}, nil, 400, "invalid_request"},
		{"body tenant differs", "tnt_y", forwardBody("tnt_x"), nil, 403, "forbidden"},
		{"missing scope", "tnt_x", forwardBody("tnt_x"), []string{"X-Scopes", "runs:read"}, 403, "forbidden"},
		{"unknown peer", "tnt_x", map[string]any{"forward": map[string]any{"target_selector": map[string]any{"stack_id": "stk_zz"},
			"run_request": map[string]any{"agent_id": "agt_echo", "input": "hi"}}}, nil, 404, "not_found"},
		{"capability lacking", "tnt_x", map[string]any{"target_selector": map[string]any{"required_capabilities": []string{"gpu.hosting"}},
			"run_request": map[string]any{"agent_id": "agt_echo", "input": "hi"}}, nil, 404, "not_found"},
		{"region", "tnt_x", map[string]any{"target_selector": map[string]any{"region": "eu-west"},
			"run_request": map[string]any{"agent_id": "agt_echo", "input": "hi"}}, nil, 404, "not_found"},
		{"unknown agent on B", "tnt_x", map[string]any{"run_request": map[string]any{"agent_id": "agt_missing", "input": "hi"}}, nil, 404, "not_found"},
		{"tenant unknown on B", "tnt_gone", forwardBody("tnt_gone"), nil, 403, "forbidden"},
		{"tenant disabled on B", "tnt_off", forwardBody("tnt_off"), nil, 403, "forbidden"},
		{"tier not entitled on B", "tnt_x", map[string]any{"run_request": map[string]any{"agent_id": "agt_echo", "input": "hi",
			"run_options": map[string]any{"model_tier": "premium"}}}, nil, 403, "forbidden"},
		{"tool not entitled on B", "tnt_x", map[string]any{"run_request": map[string]any{"agent_id": "agt_echo", "input": "hi",
			"tooling": map[string]any{"tool_allowlist": []string{"tool.http.fetch"}}}}, nil, 403, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := call(t, b.a, "POST", "/v1/federation/runs:forward", tc.tenant, tc.body, tc.hdr...)
			require.Equal(t, tc.status, resp.StatusCode, string(body))
			require.Equal(t, tc.code, errCode(t, body))
		})
	}
	require.Equal(t, 0, b.b.orch.runCount(), "nothing created on B")

	resp, body := call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_x",
		map[string]any{"target_selector": map[string]any{"required_capabilities": []string{"gpu.hosting"}},
			"run_request": map[string]any{"agent_id": "agt_echo", "input": "hi"}})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, string(body), "lacks capabilities: gpu_hosting")
}

func TestForwardPeerDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.b.peer.Close()
	resp, body := call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_x", forwardBody("tnt_x"))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Equal(t, "dependency_unavailable", errCode(t, body))
}

// peerCall calls B's peer API directly with a client certificate (or none).
func peerCall(t *testing.T, b testBundle, cert bool, method, path, token string, body any) (*http.Response, []byte) {
	t.Helper()
	cfg := b.a.tls.ClientConfig(nil, "")
	if !cert {
		cfg = &tls.Config{RootCAs: b.a.tls.CAs, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.b.peer.URL+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func sign(t *testing.T, s *identity.Signer, aud, tenant string) string {
	t.Helper()
	tok, err := s.Sign(identity.Claims{Audience: aud, TenantID: tenant, Subject: "usr_1", Scopes: []string{"runs:forward", "events:read"}}, time.Minute)
	require.NoError(t, err)
	return tok
}

func signAs(t *testing.T, s *identity.Signer, aud, tenant, sub string) string {
	t.Helper()
	tok, err := s.Sign(identity.Claims{Audience: aud, TenantID: tenant, Subject: sub, Scopes: []string{"runs:forward", "events:read", "events:ingest"}}, time.Minute)
	require.NoError(t, err)
	return tok
}

func TestPeerAPIRejects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	expired := identity.NewSigner("stk_a", nil)
	*expired = *b.a.signer
	expired.SetClock(func() time.Time { return time.Now().Add(-time.Hour) })
	replayed := sign(t, b.a.signer, "stk_b", "tnt_x")
	resp, body := peerCall(t, b, true, "POST", "/v1/federation/runs:forward", replayed, forwardBody("tnt_x"))
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	require.Equal(t, 1, b.b.orch.runCount())

	cases := []struct {
		name   string
		cert   bool
		token  string
		body   any
		status int
		code   string
	}{
		{"no client certificate", false, sign(t, b.a.signer, "stk_b", "tnt_x"), forwardBody("tnt_x"), 401, "unauthorized"},
		{"no token", true, "", forwardBody("tnt_x"), 401, "unauthorized"},
		{"unknown key", true, sign(t, b.outsider, "stk_b", "tnt_x"), forwardBody("tnt_x"), 401, "unauthorized"},
		{"wrong audience", true, sign(t, b.a.signer, "stk_c", "tnt_x"), forwardBody("tnt_x"), 401, "unauthorized"},
		{"expired", true, sign(t, expired, "stk_b", "tnt_x"), forwardBody("tnt_x"), 401, "unauthorized"},
		{"replayed", true, replayed, forwardBody("tnt_x"), 401, "unauthorized"},
		{"issuer is not the certificate", true, sign(t, b.b.signer, "stk_b", "tnt_x"), forwardBody("tnt_x"), 401, "unauthorized"},
		{"unknown tenant", true, sign(t, b.a.signer, "stk_b", "tnt_nope"), forwardBody("tnt_nope"), 403, "forbidden"},
		{"disabled tenant", true, sign(t, b.a.signer, "stk_b", "tnt_off"), forwardBody("tnt_off"), 403, "forbidden"},
		{"body tenant differs from token", true, sign(t, b.a.signer, "stk_b", "tnt_y"), forwardBody("tnt_x"), 403, "forbidden"},
		// A peer may not act under this platform's principal names.
		{"sub is the platform admin", true, signAs(t, b.a.signer, "stk_b", "tnt_x", "usr_platform_admin"), forwardBody("tnt_x"), 403, "forbidden"},
		{"sub is the bootstrap admin", true, signAs(t, b.a.signer, "stk_b", "tnt_x", "usr_bootstrap_admin"), forwardBody("tnt_x"), 403, "forbidden"},
		{"sub is the orchestrator", true, signAs(t, b.a.signer, "stk_b", "tnt_x", "svc_agentos_orchestrator"), forwardBody("tnt_x"), 403, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := peerCall(t, b, tc.cert, "POST", "/v1/federation/runs:forward", tc.token, tc.body)
			require.Equal(t, tc.status, resp.StatusCode, string(body))
			require.Equal(t, tc.code, errCode(t, body))
		})
	}
	require.Equal(t, 1, b.b.orch.runCount(), "nothing created on B by rejected forwards")
	_, body = peerCall(t, b, true, "POST", "/v1/federation/runs:forward", signAs(t, b.a.signer, "stk_b", "tnt_x", "USR_Platform_Admin"), forwardBody("tnt_x"))
	require.Contains(t, string(body), `"field":"sub"`)
	require.Contains(t, string(body), `"reason":"reserved_principal"`)

	// B disables tnt_x: a later forward is refused
	updateTenant(t, b.b.store, "tnt_x", func(tn *store.Tenant) { tn.Status = store.TenantDisabled })
	resp, body = call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_x", forwardBody("tnt_x"))
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	require.Equal(t, 1, b.b.orch.runCount())
}

func TestPeerEventsTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fw := forward(t, b, "tnt_x")
	// tnt_y asks B directly (a legitimate peer, another tenant): not found
	resp, body := peerCall(t, b, true, "GET", fw.RemoteEventsURL, sign(t, b.a.signer, "stk_b", "tnt_y"), nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, string(body))
	require.Equal(t, "not_found", errCode(t, body))
	// a tenant unknown on B is refused, and audited
	resp, body = peerCall(t, b, true, "GET", fw.RemoteEventsURL, sign(t, b.a.signer, "stk_b", "tnt_nope"), nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	require.Contains(t, b.b.audit.actions(), "federation.events.serve:denied")
	// the right tenant gets the stream
	resp, body = peerCall(t, b, true, "GET", fw.RemoteEventsURL, sign(t, b.a.signer, "stk_b", "tnt_x"), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	frames, err := ParseSSE(body)
	require.NoError(t, err)
	require.NotEmpty(t, frames)
}

func TestProxyFallsBackToReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fw := forward(t, b, "tnt_x")
	resp, _ := call(t, b.a, "GET", fw.RemoteEventsURL, "tnt_x", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// Events for the run from another source (here a client naming some
	// other stack) are not part of the forwarded run's history.
	forged := ingestEvent("evt_forged", "tnt_x", fw.RemoteRunID, 6)
	forged["type"] = store.EventRunCompleted
	resp, raw := call(t, b.a, "POST", "/v1/federation/events:ingest", "tnt_x", map[string]any{
		"events": []any{forged}, "ingest": map[string]any{"source_stack_id": "stk_elsewhere"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	b.b.peer.Close()
	resp, body := call(t, b.a, "GET", fw.RemoteEventsURL+"?after_sequence=2", "tnt_x", nil, "Accept", "application/json")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "replica", resp.Header.Get("X-AgentOS-Event-Source"))
	var page struct {
		Events []store.Event `json:"events"`
	}
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Events, 3)
	for _, e := range page.Events {
		require.NotEqual(t, "evt_forged", e.EventID)
	}
	require.Contains(t, b.a.audit.actions(), "federation.events.replica:success")
}

func ingestEvent(id, tenant, run string, seq int64) map[string]any {
	return map[string]any{"event_id": id, "sequence": seq, "time": time.Now().UTC(), "type": store.EventRunCreated,
		"tenant_id": tenant, "agent_id": "agt_echo", "run_id": run, "step_id": nil,
		"trace": map[string]any{"traceparent": "", "span_id": ""}, "payload": map[string]any{}}
}

func TestIngest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := map[string]any{
		"events": []any{
			ingestEvent("evt_1", "tnt_x", "run_r1", 1),
			map[string]any{"event": ingestEvent("evt_2", "tnt_x", "run_r1", 2)},
			ingestEvent("evt_3", "tnt_y", "run_r1", 3), // another tenant
			ingestEvent("evt_1", "tnt_x", "run_r1", 1), // duplicate
			map[string]any{"nonsense": true},
		},
		"ingest": map[string]any{"source_stack_id": "stk_external", "dedupe": map[string]any{"mode": "event_id"}},
	}
	resp, raw := call(t, b.a, "POST", "/v1/federation/events:ingest", "tnt_x", body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	var out struct {
		Accepted   int               `json:"accepted"`
		Rejected   int               `json:"rejected"`
		Rejections []IngestRejection `json:"rejections"`
	}
	require.NoError(t, json.Unmarshal(raw, &out))
	require.Equal(t, 2, out.Accepted)
	require.Equal(t, 3, out.Rejected)
	// Each rejection names the event's position in the batch, the
	// duplicate (found at write time) too, in batch order.
	require.Equal(t, []IngestRejection{
		{Index: 2, EventID: "evt_3", Reason: "tenant_mismatch"},
		{Index: 3, EventID: "evt_1", Reason: "duplicate"},
		{Index: 4, Reason: "invalid: event_id is required"},
	}, out.Rejections)
	require.Empty(t, ingestedIDs(t, b.a.store, "tnt_y", "run_r1", ""), "another tenant's event is never stored")
	require.Equal(t, []string{"evt_1", "evt_2"}, ingestedIDs(t, b.a.store, "tnt_x", "run_r1", "stk_external"))

	// stored for replay, tenant-scoped
	resp, raw = call(t, b.a, "GET", "/v1/federation/runs/run_r1/events", "tnt_x", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	frames, err := ParseSSE(raw)
	require.NoError(t, err)
	require.Len(t, frames, 2)
	resp, _ = call(t, b.a, "GET", "/v1/federation/runs/run_r1/events", "tnt_y", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// bad requests
	for name, bad := range map[string]any{
		"no events":  map[string]any{"ingest": map[string]any{"source_stack_id": "stk_b"}},
		"no source":  map[string]any{"events": []any{}},
		"bad dedupe": map[string]any{"events": []any{}, "ingest": map[string]any{"source_stack_id": "stk_b", "dedupe": map[string]any{"mode": "hash"}}},
	} {
		resp, raw := call(t, b.a, "POST", "/v1/federation/events:ingest", "tnt_x", bad)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, name+": "+string(raw))
	}
	resp, _ = call(t, b.a, "POST", "/v1/federation/events:ingest", "tnt_x", body, "X-Scopes", "runs:read")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, b.a.audit.actions(), "federation.ingest:success")

	// A configured peer's (or this node's) events come over the peer API:
	// a client may not write them, a platform admin may.
	for _, src := range []string{"stk_b", "stk_a"} {
		resp, raw = call(t, b.a, "POST", "/v1/federation/events:ingest", "tnt_x", map[string]any{
			"events": []any{ingestEvent("evt_p", "tnt_x", "run_r3", 1)}, "ingest": map[string]any{"source_stack_id": src}})
		require.Equal(t, http.StatusForbidden, resp.StatusCode, string(raw))
	}
	resp, raw = call(t, b.a, "POST", "/v1/federation/events:ingest", "tnt_x", map[string]any{
		"events": []any{ingestEvent("evt_p", "tnt_x", "run_r3", 1)}, "ingest": map[string]any{"source_stack_id": "stk_b"}},
		"X-Roles", "platform_admin")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))

	// over the peer API: the source is the calling peer
	tok, err := b.a.signer.Sign(identity.Claims{Audience: "stk_b", TenantID: "tnt_x", Subject: "svc_repl",
		Scopes: []string{"events:ingest"}}, time.Minute)
	require.NoError(t, err)
	resp, raw = peerCall(t, b, true, "POST", "/v1/federation/events:ingest", tok, map[string]any{
		"events": []any{ingestEvent("evt_9", "tnt_x", "run_r2", 1), ingestEvent("evt_10", "tnt_y", "run_r2", 2)},
		"ingest": map[string]any{"source_stack_id": "stk_a"}})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
	require.NoError(t, json.Unmarshal(raw, &out))
	require.Equal(t, 1, out.Accepted)
	require.Equal(t, 1, out.Rejected)
	require.Equal(t, []string{"evt_9"}, ingestedIDs(t, b.b.store, "tnt_x", "run_r2", "stk_a"))
	tok, _ = b.a.signer.Sign(identity.Claims{Audience: "stk_b", TenantID: "tnt_x", Subject: "svc_repl",
		Scopes: []string{"events:ingest"}}, time.Minute)
	resp, _ = peerCall(t, b, true, "POST", "/v1/federation/events:ingest", tok, map[string]any{
		"events": []any{}, "ingest": map[string]any{"source_stack_id": "stk_zz"}})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, b.b.audit.actions(), "federation.ingest:denied", "refusals after the token check are audited")
}

func TestDiscoveryAndHealth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, path := range []string{"/v1/federation/peer", "/v1/peer/info"} {
		resp, body := call(t, b.a, "GET", path, "tnt_x", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var out struct{ Peer PeerInfo }
		require.NoError(t, json.Unmarshal(body, &out))
		require.Equal(t, "stk_a", out.Peer.StackID)
		require.Equal(t, []string{"v1"}, out.Peer.APIVersions)
	}
	for _, path := range []string{"/v1/federation/peer/capabilities", "/v1/peer/capabilities"} {
		resp, body := call(t, b.a, "GET", path, "tnt_x", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var out struct{ Capabilities Capabilities }
		require.NoError(t, json.Unmarshal(body, &out))
		require.True(t, out.Capabilities.Has("runs.forward"))
	}
	for _, path := range []string{"/v1/federation/health", "/healthz", "/readyz", "/metrics"} {
		resp, body := call(t, b.a, "GET", path, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, path+": "+string(body))
	}
	resp, body := call(t, b.a, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.Contains(string(body), "agentos_federation_http_requests_total"))
	b.a.orch.srv.Close()
	resp, body = call(t, b.a, "GET", "/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, string(body), "agent-orchestrator")
}

func TestDirectoryReloadsPeersFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path := filepath.Join(t.TempDir(), "peers.yaml")
	d, err := NewDirectory(DirectoryConfig{Self: "stk_a", TLS: b.a.tls, PeersFile: path})
	require.NoError(t, err)
	_, ok := d.Key("stk_b")
	require.False(t, ok)
	_, err = peers.Add(path, peers.Peer{StackID: "stk_b", FederationURL: b.b.peer.URL,
		PublicKey: identity.EncodePublicKey(b.b.signer.PublicKey())})
	require.NoError(t, err)
	k, ok := d.Key("stk_b")
	require.True(t, ok)
	require.True(t, k.Equal(ed25519.PublicKey(b.b.signer.PublicKey())))
	info, caps, err := d.Describe(context.Background(), "stk_b")
	require.NoError(t, err)
	require.Equal(t, "stk_b", info.StackID)
	require.True(t, caps.Has(CapEventsStream))
}

func TestEnsureIdentity(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	fa := FilesIn(filepath.Join(root, "a"))
	pubA, err := EnsureIdentity(fa, "stk_a", fa.CADir, nil)
	require.NoError(t, err)
	again, err := EnsureIdentity(fa, "stk_a", fa.CADir, nil)
	require.NoError(t, err)
	require.Equal(t, pubA, again, "the signing key is kept")

	// node B gets its certificate from A's CA; EnsureIdentity on B keeps it
	fb := FilesIn(filepath.Join(root, "b"))
	_, err = EnsureIdentity(fb, "stk_b", fa.CADir, nil)
	require.NoError(t, err)
	_, err = EnsureIdentity(fb, "stk_b", fb.CADir, nil)
	require.NoError(t, err)
	nb, err := pki.LoadNodeTLS(fb.CA, fb.Cert, fb.Key)
	require.NoError(t, err)
	caA, err := pki.ReadCert(fa.CA)
	require.NoError(t, err)
	require.NoError(t, nb.Leaf.CheckSignatureFrom(caA))

	p, err := PeerEntry(fb, "stk_b", "https://127.0.0.1:1", "local")
	require.NoError(t, err)
	require.Equal(t, "stk_b", p.StackID)
	_, err = EnsureIdentity(Files{Dir: root}, "stk_c", fa.CADir, nil)
	require.Error(t, err)
}

// A peer may act only for the tenants its peers-file entry lists.
func TestPeerTenantsList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dir := b.b.server.cfg.Directory
	entry := dir.Peers()[0]
	entry.Tenants = []string{"tnt_y"}
	require.NoError(t, dir.set([]peers.Peer{entry}))

	resp, body := peerCall(t, b, true, "POST", "/v1/federation/runs:forward", sign(t, b.a.signer, "stk_b", "tnt_x"), forwardBody("tnt_x"))
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	var env struct {
		Error struct {
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &env))
	require.Equal(t, "tenant_not_federated", env.Error.Details["reason"])
	resp, body = peerCall(t, b, true, "POST", "/v1/federation/runs:forward", sign(t, b.a.signer, "stk_b", "tnt_y"), forwardBody("tnt_y"))
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))

	bad := entry
	bad.Tenants = []string{"not a tenant!"}
	require.ErrorContains(t, bad.Validate(), "tenants[0]")
}

func TestStreamCapsPerTenantAndNode(t *testing.T) {
	t.Parallel()
	srv := &Server{streams: events.NewGate(3), cfg: Config{TenantStreams: 2}, m: newMetrics(prometheus.NewRegistry())}
	a := store.Tenant{TenantID: "tnt_a"}
	var rel []func()
	for i := 0; i < 2; i++ {
		r, err := srv.acquireStream(a)
		require.NoError(t, err)
		rel = append(rel, r)
	}
	_, err := srv.acquireStream(a)
	require.Equal(t, errs.RateLimited, errs.CodeOf(err), "the node default per-tenant cap")
	b := store.Tenant{TenantID: "tnt_b", Quotas: store.Quotas{Runs: store.RunQuotas{MaxConcurrentStreams: 5}}}
	r, err := srv.acquireStream(b)
	require.NoError(t, err, "another tenant still gets a stream")
	rel = append(rel, r)
	_, err = srv.acquireStream(b)
	require.Equal(t, errs.Overloaded, errs.CodeOf(err), "the node-wide cap")
	for _, r := range rel {
		r()
	}
	total, _ := srv.streams.Open("tnt_a")
	require.Zero(t, total, "every slot released")
}

// TestProxyStreamCaps opens proxied streams of forwarded runs that are
// still going on the client API: a tenant gets 429 rate_limited with
// Retry-After at its max_concurrent_streams, any tenant 503 overloaded at
// the service's cap, and closed streams free their slots.
func TestProxyStreamCaps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.b.orch.hold.Store(true)
	updateTenant(t, b.a.store, "tnt_x", func(tn *store.Tenant) { tn.Quotas.Runs.MaxConcurrentStreams = 2 })
	b.a.server.streams = events.NewGate(3)
	fx, fy := forward(t, b, "tnt_x"), forward(t, b, "tnt_y")

	open := func(tenant string, f Forwarded) (*http.Response, string) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", b.a.client.URL+"/v1/federation/runs/"+f.RemoteRunID+"/events", nil)
		require.NoError(t, err)
		req.Header.Set("X-Tenant-Id", tenant)
		req.Header.Set("X-Principal-Id", "usr_1")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		if resp.StatusCode == http.StatusOK {
			return resp, ""
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, errCode(t, body)
	}
	var held []*http.Response
	for i := 0; i < 2; i++ {
		resp, code := open("tnt_x", fx)
		require.Equal(t, http.StatusOK, resp.StatusCode, code)
		held = append(held, resp)
	}
	resp, code := open("tnt_x", fx)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "rate_limited", code)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))

	resp, code = open("tnt_y", fy)
	require.Equal(t, http.StatusOK, resp.StatusCode, code, "another tenant still gets a stream")
	held = append(held, resp)
	resp, code = open("tnt_y", fy)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "overloaded", code)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))

	for _, h := range held {
		h.Body.Close()
	}
	require.Eventually(t, func() bool {
		total, _ := b.a.server.streams.Open("")
		return total == 0
	}, 10*time.Second, 20*time.Millisecond, "every slot is released when its client goes away")
	for i := 0; i < 2; i++ {
		resp, code := open("tnt_x", fx)
		require.Equal(t, http.StatusOK, resp.StatusCode, code)
		defer resp.Body.Close()
	}
}

// An event this node holds as the replica of a stream it proxied (stored
// from the peer's stack) is accepted when a client then ingests it, as the
// original API's federation e2e script expects (and again on a redelivery:
// nothing is stored twice); a repeat within the request is a duplicate.
func TestIngestOfAnEventHeldAsAProxyReplica(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := ingestEvent("evt_px", "tnt_x", "run_px", 1)
	var held store.Event
	raw, err := json.Marshal(ev)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &held))
	ok, err := b.a.store.IngestEvent(context.Background(), store.IngestedEvent{Event: held, SourceStack: "stk_peer_b"})
	require.NoError(t, err)
	require.True(t, ok)
	type counts struct {
		Accepted   int               `json:"accepted"`
		Rejected   int               `json:"rejected"`
		Rejections []IngestRejection `json:"rejections"`
	}
	body := map[string]any{"peer_id": "peer_ci", "events": []any{map[string]any{"event": ev}, map[string]any{"event": ev}}}
	for i, want := range []counts{
		{Accepted: 1, Rejected: 1, Rejections: []IngestRejection{{Index: 1, EventID: "evt_px", Reason: "duplicate"}}},
		{Accepted: 1, Rejected: 1, Rejections: []IngestRejection{{Index: 1, EventID: "evt_px", Reason: "duplicate"}}},
	} {
		resp, raw := call(t, b.a, "POST", "/v1/federation/events:ingest", "tnt_x", body)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
		var got counts
		require.NoError(t, json.Unmarshal(raw, &got))
		require.Equal(t, want, got, "request %d", i)
	}
}
