package conformance

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/tests/testnode"
)

// TestFederationConformance starts two peered nodes as real processes and
// validates the live responses of both federation listeners (client API
// and mTLS peer API), success and error, against
// docs/api/federation/openapi.yaml.
func TestFederationConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	spec := LoadSpec(t, "federation")
	a, b := startFederationPair(t)

	base := a.URL("federation")
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo"}}
	anon := &Client{Spec: spec, BaseURL: base}
	status := func(resp *http.Response, want int, body []byte) {
		t.Helper()
		require.Equal(t, want, resp.StatusCode, string(body))
	}

	t.Run("health", func(t *testing.T) {
		for _, p := range []string{"/v1/federation/health", "/healthz", "/readyz", "/metrics"} {
			resp, body := anon.Do(t, "GET", p, nil)
			status(resp, 200, body)
		}
	})

	t.Run("wrong method", func(t *testing.T) {
		spec.CheckMethodNotAllowed(t, http.DefaultClient, "POST", base+"/v1/federation/health", "GET, HEAD")
		spec.CheckMethodNotAllowed(t, http.DefaultClient, "GET", base+"/v1/federation/events:ingest", "POST")
	})

	t.Run("discovery", func(t *testing.T) {
		for _, p := range []string{"/v1/federation/peer", "/v1/peer/info"} {
			resp, body := user.Do(t, "GET", p, nil)
			status(resp, 200, body)
			require.Equal(t, "stk_conf_a", JSON(t, body)["peer"].(map[string]any)["stack_id"])
		}
		for _, p := range []string{"/v1/federation/peer/capabilities", "/v1/peer/capabilities"} {
			resp, body := user.Do(t, "GET", p, nil)
			status(resp, 200, body)
		}
		resp, body := anon.Do(t, "GET", "/v1/federation/peer", nil)
		status(resp, 401, body)
	})

	var eventsURL string
	t.Run("forward", func(t *testing.T) {
		fwd := map[string]any{"forward": map[string]any{
			"target_selector": map[string]any{"stack_id": "stk_conf_b", "required_capabilities": []string{"runs.forward"}},
			"run_request":     map[string]any{"agent_id": "agt_sample_echo_v1", "input": "hi", "idempotency_key": "conf-1"},
		}}
		resp, body := user.Do(t, "POST", "/v1/federation/runs:forward", fwd)
		status(resp, 201, body)
		eventsURL = JSON(t, body)["forwarded"].(map[string]any)["remote_events_url"].(string)
		resp, body = user.Do(t, "POST", "/v1/federation/runs:forward", fwd)
		status(resp, 200, body)

		resp, body = user.Do(t, "POST", "/v1/federation/runs:forward", map[string]any{"forward": map[string]any{}})
		status(resp, 400, body)
		resp, body = user.Do(t, "POST", "/v1/federation/runs:forward", "{not json")
		status(resp, 400, body)
		resp, body = anon.Do(t, "POST", "/v1/federation/runs:forward", fwd)
		status(resp, 401, body)
		resp, body = user.Do(t, "POST", "/v1/federation/runs:forward", map[string]any{
			"target_selector": map[string]any{"required_capabilities": []string{"gpu.hosting"}},
			"run_request":     map[string]any{"agent_id": "agt_sample_echo_v1", "input": "hi"}})
		status(resp, 404, body)
		resp, body = user.Do(t, "POST", "/v1/federation/runs:forward", map[string]any{
			"auth":        map[string]any{"tenant_id": "tnt_someone_else"},
			"run_request": map[string]any{"agent_id": "agt_sample_echo_v1", "input": "hi"}})
		status(resp, 403, body)
		resp, body = user.Do(t, "POST", "/v1/federation/runs:forward", map[string]any{
			"run_request": map[string]any{"agent_id": "agt_nope", "input": "hi"}})
		status(resp, 404, body)
	})

	t.Run("events", func(t *testing.T) {
		require.NotEmpty(t, eventsURL)
		resp, body := user.Do(t, "GET", eventsURL, nil)
		status(resp, 200, body)
		req, _ := http.NewRequest("GET", base+eventsURL, nil)
		evs := spec.ValidateSSE(t, req, body)
		require.NotEmpty(t, evs)
		resp, body = user.Do(t, "GET", eventsURL+"?after_sequence=1", nil, map[string]string{"Accept": "application/json"})
		status(resp, 200, body)
		resp, body = user.Do(t, "GET", eventsURL+"?after_sequence=x", nil)
		status(resp, 400, body)
		resp, body = user.Do(t, "GET", "/v1/federation/runs/run_nope/events", nil)
		status(resp, 404, body)
	})

	t.Run("ingest", func(t *testing.T) {
		ev := map[string]any{"event_id": "evt_conf_1", "sequence": 1, "time": time.Now().UTC(), "type": "agentos.run.created",
			"tenant_id": "tnt_demo", "agent_id": "agt_sample_echo_v1", "run_id": "run_conf_1", "step_id": nil,
			"trace": map[string]any{"traceparent": "", "span_id": ""}, "payload": map[string]any{"status": "queued"}}
		admin := map[string]string{"Authorization": "Bearer " + a.Credentials().PlatformAdmin.Token, "X-Tenant-Id": "tnt_demo"}
		body := map[string]any{"events": []any{ev, ev}, "ingest": map[string]any{"source_stack_id": "stk_conf_b"}}
		resp, raw := anon.Do(t, "POST", "/v1/federation/events:ingest", body, admin)
		status(resp, 200, raw)
		require.EqualValues(t, 1, JSON(t, raw)["accepted"])
		resp, raw = anon.Do(t, "POST", "/v1/federation/events:ingest", map[string]any{"ingest": map[string]any{}}, admin)
		status(resp, 400, raw)
		resp, raw = user.Do(t, "POST", "/v1/federation/events:ingest", body)
		status(resp, 403, raw) // a demo header user has no events:ingest
	})

	t.Run("peer API", func(t *testing.T) {
		f := federation.FilesIn(a.Home)
		nt, err := pki.LoadNodeTLS(f.CA, f.Cert, f.Key)
		require.NoError(t, err)
		key, err := identity.LoadOrCreateKey(f.SigningKey, false)
		require.NoError(t, err)
		signer := identity.NewSigner("stk_conf_a", key)
		mtls := &http.Client{Transport: &http.Transport{TLSClientConfig: nt.ClientConfig(nil, "")}}
		noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: nt.CAs, MinVersion: tls.VersionTLS12}}}
		peerBase := "https://" + b.Addrs["federation-peer"]
		tok := func(aud string) map[string]string {
			s, err := signer.Sign(identity.Claims{Audience: aud, TenantID: "tnt_demo", Subject: "usr_conf",
				Scopes: []string{"runs:forward", "events:read"}}, time.Minute)
			require.NoError(t, err)
			return map[string]string{"Authorization": "Bearer " + s}
		}
		resp, body := spec.Do(t, mtls, "GET", peerBase+"/v1/federation/peer", nil, nil)
		status(resp, 200, body)
		resp, body = spec.Do(t, mtls, "GET", peerBase+"/v1/peer/capabilities", nil, nil)
		status(resp, 200, body)
		fwd := map[string]any{"run_request": map[string]any{"agent_id": "agt_sample_echo_v1", "input": "hi"}}
		resp, body = spec.Do(t, mtls, "POST", peerBase+"/v1/federation/runs:forward", tok("stk_conf_b"), fwd)
		status(resp, 201, body)
		runURL := JSON(t, body)["forwarded"].(map[string]any)["remote_events_url"].(string)
		resp, body = spec.Do(t, mtls, "GET", peerBase+runURL, tok("stk_conf_b"), nil)
		status(resp, 200, body)
		resp, body = spec.Do(t, noCert, "POST", peerBase+"/v1/federation/runs:forward", tok("stk_conf_b"), fwd)
		status(resp, 401, body)
		resp, body = spec.Do(t, mtls, "POST", peerBase+"/v1/federation/runs:forward", tok("stk_elsewhere"), fwd)
		status(resp, 401, body)
		resp, body = spec.Do(t, mtls, "POST", peerBase+"/v1/federation/runs:forward", nil, fwd)
		status(resp, 401, body)
	})
}

// startFederationPair starts two nodes, stk_conf_a and stk_conf_b, that
// are each other's peers, with their federation services running.
func startFederationPair(t *testing.T) (a, b *testnode.Node) {
	t.Helper()
	a = testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_STACK_ID=stk_conf_a"}})
	b = testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_STACK_ID=stk_conf_b"}})
	cli := func(n *testnode.Node, args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := n.Run(ctx, args...)
		require.NoError(t, err, out)
	}
	cli(a, "certs", "init")
	cli(a, "certs", "issue")
	cli(a, "certs", "issue", "--stack-id", "stk_conf_b", "--out", filepath.Join(b.Home, "federation"))
	cli(a, "peers", "add", "stk_conf_b", "--url", "https://"+b.Addrs["federation-peer"],
		"--public-key-file", filepath.Join(b.Home, "federation", "signing.pub"), "--peer-region", "local")
	cli(b, "peers", "add", "stk_conf_a", "--url", "https://"+a.Addrs["federation-peer"],
		"--public-key-file", filepath.Join(a.Home, "federation", "signing.pub"), "--peer-region", "local")
	a.StartService("federation")
	b.StartService("federation")

	return a, b
}
