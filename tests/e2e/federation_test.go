package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestFederationTwoNodes starts two nodes as real processes on loopback,
// peers them over mTLS with certificates from `agentos certs`, forwards a
// run from A to B and streams it back through A, then checks that forged,
// replayed or misdirected forwards and cross-tenant reads are refused with
// the contract's codes and create nothing on B.
func TestFederationTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	a := &fedNode{Node: testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_STACK_ID=stk_local_node_a"}}), stackID: "stk_local_node_a"}
	b := &fedNode{Node: testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_STACK_ID=stk_local_node_b"}}), stackID: "stk_local_node_b"}

	// PKI: one CA (on A), a certificate and signing key per node, each the other's peer.
	fedCLI(t, a, "certs", "init")
	fedCLI(t, a, "certs", "issue")
	fedCLI(t, a, "certs", "issue", "--stack-id", b.stackID, "--out", filepath.Join(b.Home, "federation"))
	fedCLI(t, a, "peers", "add", b.stackID, "--url", b.fedPeerURL(), "--peer-region", "local",
		"--public-key-file", filepath.Join(b.Home, "federation", "signing.pub"))
	fedCLI(t, b, "peers", "add", a.stackID, "--url", a.fedPeerURL(), "--peer-region", "local",
		"--public-key-file", filepath.Join(a.Home, "federation", "signing.pub"))
	require.Contains(t, fedCLI(t, a, "peers", "list"), b.stackID)
	a.StartService("federation")
	b.StartService("federation")

	// Tenants: tnt_other on both nodes, tnt_only_a only on A, tnt_off active on A and disabled on B.
	mkTenant := func(n *fedNode, id string) {
		admin := map[string]string{"Authorization": "Bearer " + n.Credentials().PlatformAdmin.Token}
		code, _, body := fedDo(t, nil, "POST", n.URL("orchestrator")+"/v1/admin/tenants", admin, map[string]any{
			"tenant_create": map[string]any{"tenant_id": id, "name": id, "plan_tier": "pro",
				"entitlements": map[string]any{"model_tiers_allowed": []string{"*"}, "model_backends_allowed": []string{"*"},
					"tool_ids_allowed": []string{"*"}}}})
		require.Equal(t, http.StatusCreated, code, string(body))
	}
	mkTenant(a, "tnt_other")
	mkTenant(b, "tnt_other")
	mkTenant(a, "tnt_only_a")
	mkTenant(a, "tnt_off")
	mkTenant(b, "tnt_off")
	admin := map[string]string{"Authorization": "Bearer " + b.Credentials().PlatformAdmin.Token}
	code, _, body := fedDo(t, nil, "PATCH", b.URL("orchestrator")+"/v1/admin/tenants/tnt_off", admin, map[string]any{"status": "disabled"})
	require.Equal(t, http.StatusOK, code, string(body))

	as := func(tenant string) map[string]string {
		return map[string]string{"X-Tenant-Id": tenant, "X-Principal-Id": "usr_e2e"}
	}
	countRunsOnB := func() int {
		code, _, body := fedDo(t, nil, "GET", b.URL("orchestrator")+"/v1/runs?limit=200", as("tnt_demo"), nil)
		require.Equal(t, http.StatusOK, code, string(body))
		var out struct {
			Runs []json.RawMessage `json:"runs"`
		}
		require.NoError(t, json.Unmarshal(body, &out))
		return len(out.Runs)
	}
	forwardBody := func(tenant string) map[string]any {
		return map[string]any{"forward": map[string]any{
			"target_selector": map[string]any{"stack_id": b.stackID, "required_capabilities": []string{"runs.forward", "events_stream"}},
			"auth":            map[string]any{"tenant_id": tenant},
			"run_request": map[string]any{"agent_id": "agt_sample_echo_v1",
				"input": map[string]any{"type": "text", "text": "hello from node A"}},
		}}
	}

	// 1. A run forwarded from A completes on B; its events come back through A.
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	hdr := as("tnt_demo")
	hdr["traceparent"] = "00-" + traceID + "-b7ad6b7169203331-01"
	code, _, body = fedDo(t, nil, "POST", a.URL("federation")+"/v1/federation/runs:forward", hdr, forwardBody("tnt_demo"))
	require.Equal(t, http.StatusCreated, code, "%s\nA:\n%s\nB:\n%s", body, a.Log("federation"), b.Log("federation"))
	var fwd struct {
		Forwarded struct {
			TenantID        string `json:"tenant_id"`
			RemoteStackID   string `json:"remote_stack_id"`
			RemoteRunID     string `json:"remote_run_id"`
			RemoteEventsURL string `json:"remote_events_url"`
		} `json:"forwarded"`
	}
	require.NoError(t, json.Unmarshal(body, &fwd))
	require.Equal(t, "tnt_demo", fwd.Forwarded.TenantID)
	require.Equal(t, b.stackID, fwd.Forwarded.RemoteStackID)
	runID := fwd.Forwarded.RemoteRunID

	code, h, body := fedDo(t, nil, "GET", a.URL("federation")+fwd.Forwarded.RemoteEventsURL, as("tnt_demo"), nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, "text/event-stream", h.Get("Content-Type"))
	evs := fedEvents(t, body)
	require.NotEmpty(t, evs)
	for _, e := range evs {
		t.Logf("event %d %s %s", e.Sequence, e.Type, e.Trace.Traceparent)
	}
	for i, e := range evs {
		require.Equal(t, int64(i+1), e.Sequence, "gapless sequence")
		require.Equal(t, "tnt_demo", e.TenantID)
		require.Equal(t, runID, e.RunID)
		require.Contains(t, e.Trace.Traceparent, traceID, "traceparent survives the trip (event %d)", e.Sequence)
	}
	require.True(t, store.IsTerminalEvent(evs[len(evs)-1].Type), "terminal event last, got %s", evs[len(evs)-1].Type)
	require.Equal(t, store.EventRunCompleted, evs[len(evs)-1].Type)

	code, _, body = fedDo(t, nil, "GET", b.URL("orchestrator")+"/v1/runs/"+runID, as("tnt_demo"), nil)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Contains(t, string(body), `"status":"completed"`)
	require.Contains(t, string(body), `"principal_id":"usr_e2e"`)

	// Resume through A's proxy.
	resume := as("tnt_demo")
	resume["Last-Event-ID"] = "1"
	code, _, body = fedDo(t, nil, "GET", a.URL("federation")+fwd.Forwarded.RemoteEventsURL, resume, nil)
	require.Equal(t, http.StatusOK, code)
	resumed := fedEvents(t, body)
	require.Len(t, resumed, len(evs)-1)
	require.Equal(t, int64(2), resumed[0].Sequence)

	// 2. Another tenant cannot read the forwarded run through either node.
	for _, url := range []string{
		a.URL("federation") + fwd.Forwarded.RemoteEventsURL,
		b.URL("federation") + fwd.Forwarded.RemoteEventsURL,
		b.URL("orchestrator") + "/v1/runs/" + runID + "/events",
	} {
		code, _, body = fedDo(t, nil, "GET", url, as("tnt_other"), nil)
		require.Equal(t, http.StatusNotFound, code, "%s: %s", url, body)
		require.Equal(t, "not_found", fedErrCode(t, body))
	}
	asA := fedLoadIdentity(t, a)
	code, _, body = fedDo(t, asA.client(true), "GET", b.fedPeerURL()+fwd.Forwarded.RemoteEventsURL,
		map[string]string{"Authorization": "Bearer " + asA.token(t, b.stackID, "tnt_other")}, nil)
	require.Equal(t, http.StatusNotFound, code, string(body))
	require.Equal(t, "not_found", fedErrCode(t, body))

	// 3. Forged, expired, replayed or misdirected forwards are refused; nothing is created on B.
	before := countRunsOnB()
	peerForward := func(client *http.Client, token string, tenant string) (int, []byte) {
		hdr := map[string]string{}
		if token != "" {
			hdr["Authorization"] = "Bearer " + token
		}
		code, _, body := fedDo(t, client, "POST", b.fedPeerURL()+"/v1/federation/runs:forward", hdr, forwardBody(tenant))
		return code, body
	}
	outsiderKey, err := identity.GenerateKey()
	require.NoError(t, err)
	forger := identity.NewSigner(a.stackID, outsiderKey)
	expired := identity.NewSigner(a.stackID, nil)
	*expired = *asA.signer
	expired.SetClock(func() time.Time { return time.Now().Add(-time.Hour) })
	used := asA.token(t, b.stackID, "tnt_demo")
	code, _ = peerForward(asA.client(true), used, "tnt_demo")
	require.Equal(t, http.StatusCreated, code, "a genuine forward from A is accepted")
	before++

	cases := []struct {
		name   string
		cert   bool
		token  string
		tenant string
		status int
		code   string
	}{
		{"no client certificate", false, asA.token(t, b.stackID, "tnt_demo"), "tnt_demo", 401, "unauthorized"},
		{"JWT signed by an unknown key", true, func() string {
			tok, err := forger.Sign(identityClaims(b.stackID, "tnt_demo"), time.Minute)
			require.NoError(t, err)
			return tok
		}(), "tnt_demo", 401, "unauthorized"},
		{"wrong audience", true, asA.token(t, "stk_somewhere_else", "tnt_demo"), "tnt_demo", 401, "unauthorized"},
		{"expired", true, func() string {
			tok, err := expired.Sign(identityClaims(b.stackID, "tnt_demo"), time.Minute)
			require.NoError(t, err)
			return tok
		}(), "tnt_demo", 401, "unauthorized"},
		{"replayed", true, used, "tnt_demo", 401, "unauthorized"},
		{"tenant does not exist on B", true, asA.token(t, b.stackID, "tnt_only_a"), "tnt_only_a", 403, "forbidden"},
		{"tenant disabled on B", true, asA.token(t, b.stackID, "tnt_off"), "tnt_off", 403, "forbidden"},
	}
	for _, tc := range cases {
		code, body := peerForward(asA.client(tc.cert), tc.token, tc.tenant)
		require.Equal(t, tc.status, code, "%s: %s", tc.name, body)
		require.Equal(t, tc.code, fedErrCode(t, body), tc.name)
	}
	// The same tenant cases through A's client API.
	for _, tenant := range []string{"tnt_only_a", "tnt_off"} {
		code, _, body = fedDo(t, nil, "POST", a.URL("federation")+"/v1/federation/runs:forward", as(tenant), forwardBody(tenant))
		require.Equal(t, http.StatusForbidden, code, "%s: %s", tenant, body)
		require.Equal(t, "forbidden", fedErrCode(t, body))
	}
	require.Equal(t, before, countRunsOnB(), "rejected forwards created nothing on B")

	// A run of B's own, never forwarded, is not served to A's peer API
	// calls, even for the right tenant.
	code, _, body = fedDo(t, nil, "POST", b.URL("orchestrator")+"/v1/agents/agt_sample_echo_v1/runs", as("tnt_demo"),
		map[string]any{"input": "local to B"})
	require.Equal(t, http.StatusCreated, code, string(body))
	var localRun struct {
		Run struct {
			RunID string `json:"run_id"`
		} `json:"run"`
	}
	require.NoError(t, json.Unmarshal(body, &localRun))
	code, _, body = fedDo(t, asA.client(true), "GET", b.fedPeerURL()+federation.EventsPath(localRun.Run.RunID),
		map[string]string{"Authorization": "Bearer " + asA.token(t, b.stackID, "tnt_demo")}, nil)
	require.Equal(t, http.StatusNotFound, code, string(body))
	require.Equal(t, "not_found", fedErrCode(t, body))

	// Audit on both nodes names the peer, tenant and principal.
	for _, n := range []*fedNode{a, b} {
		code, _, body = fedDo(t, nil, "GET", n.URL("orchestrator")+"/v1/admin/audit?tenant_id=tnt_demo&limit=500",
			map[string]string{"Authorization": "Bearer " + n.Credentials().PlatformAdmin.Token}, nil)
		require.Equal(t, http.StatusOK, code, string(body))
		require.Contains(t, string(body), "federation.")
	}

	// 4. With B stopped, a forward to B fails with 503 dependency_unavailable
	// (bounded: federation.PeerDialTimeout, PeerTLSHandshakeTimeout), and A
	// keeps serving its own runs.
	b.Stop("federation")
	code, _, body = fedDo(t, nil, "POST", a.URL("federation")+"/v1/federation/runs:forward", as("tnt_demo"), forwardBody("tnt_demo"))
	require.Equal(t, http.StatusServiceUnavailable, code, string(body))
	require.Equal(t, "dependency_unavailable", fedErrCode(t, body))
	code, _, body = fedDo(t, nil, "POST", a.URL("orchestrator")+"/v1/agents/agt_sample_echo_v1/runs", as("tnt_demo"),
		map[string]any{"input": "still serving"})
	require.Equal(t, http.StatusCreated, code, string(body))
	var ownRun struct {
		Run struct {
			RunID string `json:"run_id"`
		} `json:"run"`
	}
	require.NoError(t, json.Unmarshal(body, &ownRun))
	code, _, body = fedDo(t, nil, "GET", a.URL("orchestrator")+"/v1/runs/"+ownRun.Run.RunID, as("tnt_demo"), nil)
	require.Equal(t, http.StatusOK, code, string(body))
	code, _, body = fedDo(t, nil, "GET", a.URL("federation")+"/v1/federation/health", nil, nil)
	require.Equal(t, http.StatusOK, code, string(body))
}

func identityClaims(aud, tenant string) identity.Claims {
	return identity.Claims{Audience: aud, TenantID: tenant, Subject: "usr_e2e", PrincipalType: "user",
		Scopes: []string{"runs:forward", "runs:create"}}
}
