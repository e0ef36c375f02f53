package federation

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
)

// stranger is a node with a certificate from the federation CA and its own
// identity key, but no federation service of its own.
type stranger struct {
	id     string
	tls    *pki.NodeTLS
	signer *identity.Signer
}

func newStranger(t *testing.T, b testBundle, id string) stranger {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	_, err := pki.IssueNodeCert(b.caDir, id, nil, dir)
	require.NoError(t, err)
	nt, err := pki.LoadNodeTLS(filepath.Join(dir, pki.CAFile), filepath.Join(dir, pki.NodeFile), filepath.Join(dir, pki.NodeKeyFile))
	require.NoError(t, err)
	key, err := identity.GenerateKey()
	require.NoError(t, err)
	return stranger{id: id, tls: nt, signer: identity.NewSigner(id, key)}
}

// knowPeers replaces n's peer list with the given entries.
func knowPeers(t *testing.T, n *testNode, list ...peers.Peer) {
	t.Helper()
	require.NoError(t, n.server.cfg.Directory.set(list))
}

func peerEntry(id, url string, pub []byte) peers.Peer {
	return peers.Peer{StackID: id, FederationURL: url, Region: "local", PublicKey: identity.EncodePublicKey(pub)}
}

// peerDo calls target's peer API with nt's client certificate; hdr are
// extra header name/value pairs.
func peerDo(t *testing.T, nt *pki.NodeTLS, target *testNode, method, path, token string, body any, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: nt.ClientConfig(nil, "")}}
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, target.peer.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, out
}

func errDetails(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var env struct {
		Error struct {
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(b, &env), string(b))
	return env.Error.Details
}

// TestPeerEventsOnlyForForwardingStack: the receiving node serves a run's
// events over the peer API only to the stack that forwarded it, for the
// tenant it forwarded it for. Another peer with a valid certificate and
// key (C), the forwarding peer acting for another tenant, and any run not
// forwarded by the caller all get 404, and nothing is streamed.
func TestPeerEventsOnlyForForwardingStack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := newStranger(t, b, "stk_c")
	knowPeers(t, b.b, peerEntry("stk_a", "https://"+b.a.peer.Listener.Addr().String(), b.a.signer.PublicKey()),
		peerEntry("stk_c", "https://127.0.0.1:1", c.signer.PublicKey()))

	fw := forward(t, b, "tnt_x")
	// The receiving node recorded who forwarded the run.
	in, err := b.b.store.GetForward(t.Context(), "tnt_x", inboundKey(fw.RemoteRunID))
	require.NoError(t, err)
	require.Equal(t, "stk_a", in.PeerStackID)
	require.Equal(t, "usr_1", in.PrincipalID)

	// A, for the tenant it forwarded the run for: served.
	resp, body := peerDo(t, b.a.tls, b.b, "GET", fw.RemoteEventsURL, sign(t, b.a.signer, "stk_b", "tnt_x"), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	frames, err := ParseSSE(body)
	require.NoError(t, err)
	require.NotEmpty(t, frames)

	denied := []struct {
		name   string
		tls    *pki.NodeTLS
		signer *identity.Signer
		tenant string
	}{
		{"peer C: valid certificate and key, another stack", c.tls, c.signer, "tnt_x"},
		{"peer A acting for another tenant", b.a.tls, b.a.signer, "tnt_y"},
	}
	for _, tc := range denied {
		for _, accept := range []string{"text/event-stream", "application/json"} {
			resp, body := peerDo(t, tc.tls, b.b, "GET", fw.RemoteEventsURL, sign(t, tc.signer, "stk_b", tc.tenant), nil, "Accept", accept)
			require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", tc.name, body)
			require.Equal(t, "not_found", errCode(t, body), tc.name)
			require.NotContains(t, string(body), "agentos.run", tc.name)
		}
	}
	// C may forward its own run, which then only C can read.
	resp, body = peerDo(t, c.tls, b.b, "POST", "/v1/federation/runs:forward", sign(t, c.signer, "stk_b", "tnt_x"), forwardBody("tnt_x"))
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var cfw struct{ Forwarded Forwarded }
	require.NoError(t, json.Unmarshal(body, &cfw))
	resp, body = peerDo(t, b.a.tls, b.b, "GET", cfw.Forwarded.RemoteEventsURL, sign(t, b.a.signer, "stk_b", "tnt_x"), nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "A cannot read C's run: %s", body)
	resp, body = peerDo(t, c.tls, b.b, "GET", cfw.Forwarded.RemoteEventsURL, sign(t, c.signer, "stk_b", "tnt_x"), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))

	// A run of B's own (never forwarded) is not served to any peer.
	tok, err := jsonMinter{}.Mint(auth.Context{TenantID: "tnt_x", Principal: auth.Principal{PrincipalID: "usr_local"},
		Scopes: []string{auth.ScopeRunsCreate}}, "", 0)
	require.NoError(t, err)
	req, err := http.NewRequest("POST", b.b.orch.srv.URL+"/v1/agents/agt_echo/runs", bytes.NewReader([]byte(`{"input":"local"}`)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	lr, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var local struct{ Run store.Run }
	require.NoError(t, json.NewDecoder(lr.Body).Decode(&local))
	lr.Body.Close()
	require.NotEmpty(t, local.Run.RunID)
	resp, body = peerDo(t, b.a.tls, b.b, "GET", EventsPath(local.Run.RunID), sign(t, b.a.signer, "stk_b", "tnt_x"), nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "a local run of B: %s", body)

	// A client of B cannot reach the inbound records through the client API.
	resp, _ = call(t, b.b, "GET", "/v1/federation/runs/inbound%2F"+fw.RemoteRunID+"/events", "tnt_x", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	require.Contains(t, b.b.audit.actions(), "federation.events.serve:denied")
}

// TestForwardReplayThroughAnotherStackConflicts: the same tenant,
// principal and idempotency key used through two stacks do not hand one
// stack the other's run.
func TestForwardReplayThroughAnotherStackConflicts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := newStranger(t, b, "stk_c")
	knowPeers(t, b.b, peerEntry("stk_a", "https://"+b.a.peer.Listener.Addr().String(), b.a.signer.PublicKey()),
		peerEntry("stk_c", "https://127.0.0.1:1", c.signer.PublicKey()))
	body := forwardBody("tnt_x")
	body["forward"].(map[string]any)["run_request"].(map[string]any)["idempotency_key"] = "same-key"
	resp, raw := peerDo(t, b.a.tls, b.b, "POST", "/v1/federation/runs:forward", sign(t, b.a.signer, "stk_b", "tnt_x"), body)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(raw))
	resp, raw = peerDo(t, b.a.tls, b.b, "POST", "/v1/federation/runs:forward", sign(t, b.a.signer, "stk_b", "tnt_x"), body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "a replay by the same stack: %s", raw)
	resp, raw = peerDo(t, c.tls, b.b, "POST", "/v1/federation/runs:forward", sign(t, c.signer, "stk_b", "tnt_x"), body)
	require.Equal(t, http.StatusConflict, resp.StatusCode, string(raw))
	require.Equal(t, 1, b.b.orch.runCount())
}

// TestPeerRefusalMapping: the client's credential was fine, so a peer
// refusing this node's credentials is 503 dependency_unavailable, while a
// policy refusal by the peer stays 403; both name the peer and its code.
func TestPeerRefusalMapping(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// B refuses forwards of a tenant disabled there: 403, with details.
	resp, body := call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_off", forwardBody("tnt_off"))
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(body))
	d := errDetails(t, body)
	require.Equal(t, "stk_b", d["peer_stack_id"])
	require.Equal(t, "forbidden", d["peer_error_code"])
	require.Equal(t, "tenant_disabled", d["reason"])

	// B no longer knows A's key: it answers 401 to A, and A's client gets 503.
	knowPeers(t, b.b)
	resp, body = call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_x", forwardBody("tnt_x"))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Equal(t, "dependency_unavailable", errCode(t, body))
	d = errDetails(t, body)
	require.Equal(t, "stk_b", d["peer_stack_id"])
	require.Equal(t, "unauthorized", d["peer_error_code"])
	require.Equal(t, 0, b.b.orch.runCount())
	require.Empty(t, resp.Header.Get("WWW-Authenticate"))
}

// TestForwardToStoppedPeer: with B stopped, a forward fails with 503
// dependency_unavailable, both before A has cached B's capabilities and
// after, and A keeps serving.
func TestForwardToStoppedPeer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fw := forward(t, b, "tnt_x") // caches B's capabilities on A
	resp, _ := call(t, b.a, "GET", fw.RemoteEventsURL, "tnt_x", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b.b.peer.Close()
	resp, body := call(t, b.a, "POST", "/v1/federation/runs:forward", "tnt_x", forwardBody("tnt_x"))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Equal(t, "dependency_unavailable", errCode(t, body))
	require.Equal(t, "stk_b", errDetails(t, body)["peer_stack_id"])
	// A keeps serving: health, discovery, and the forwarded run from replicas.
	resp, _ = call(t, b.a, "GET", "/v1/federation/health", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = call(t, b.a, "GET", "/v1/federation/peer", "tnt_x", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = call(t, b.a, "GET", fw.RemoteEventsURL, "tnt_x", nil, "Accept", "application/json")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "replica", resp.Header.Get("X-AgentOS-Event-Source"))
}

// TestForwardToUnresponsivePeer: a peer that accepts connections but never
// completes the TLS handshake (a hung process) fails the forward with 503
// within the handshake bound; the defaults keep a forward to a stopped
// peer under 5 s.
func TestForwardToUnresponsivePeer(t *testing.T) {
	t.Parallel()
	require.Less(t, PeerDialTimeout, 5*time.Second)
	require.Less(t, PeerTLSHandshakeTimeout, 5*time.Second)

	b := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // never answered
		}
	}()
	dir, err := NewDirectory(DirectoryConfig{Self: "stk_a", TLS: b.a.tls, Timeouts: outbound.Timeouts{TLSHandshake: 200 * time.Millisecond},
		Peers: []peers.Peer{peerEntry("stk_hung", "https://"+ln.Addr().String(), b.b.signer.PublicKey())}})
	require.NoError(t, err)
	_, _, err = dir.Describe(t.Context(), "stk_hung")
	require.Error(t, err)
	require.Equal(t, "dependency_unavailable", string(errs.CodeOf(err)))

	// A federation service of A whose only peer is the hung one.
	srv, err := New(Config{StackID: "stk_a", Region: "local", Signer: b.a.signer, Directory: dir, Store: b.a.store,
		Audit: b.a.audit, Orchestrator: &Orchestrator{BaseURL: b.a.orch.srv.URL, Minter: jsonMinter{}},
		Authenticate: headerAuth(b.a.store), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	hungA := &testNode{id: "stk_a", client: httptest.NewServer(srv.ClientHandler())}
	t.Cleanup(hungA.client.Close)
	resp, body := call(t, hungA, "POST", "/v1/federation/runs:forward", "tnt_x", map[string]any{
		"target_selector": map[string]any{"stack_id": "stk_hung"},
		"run_request":     map[string]any{"agent_id": "agt_echo", "input": "hi"}})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Equal(t, "dependency_unavailable", errCode(t, body))
}
