package federation

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/outbound"
)

// hang answers nothing until release is called: a dependency that
// accepted the connection (and the TLS handshake) and then stopped. Call
// release before closing the server, which waits for its handlers.
func hang() (h http.HandlerFunc, release func()) {
	ch := make(chan struct{})
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-ch:
		case <-r.Context().Done():
		}
	}, func() { close(ch) }
}

// TestForwardToPeerThatNeverAnswers: a peer that completes the mTLS
// handshake and describes itself but never answers the forward fails it
// with dependency_unavailable once the configured response-header bound
// runs out (not the 504 of the caller's own deadline).
func TestForwardToPeerThatNeverAnswers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hung, release := hang()
	// stk_b's real peer API, except that the forward itself never answers.
	peerAPI := b.b.server.PeerHandler()
	peer := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "runs:forward") {
			hung(w, r)
			return
		}
		peerAPI.ServeHTTP(w, r)
	}))
	peer.TLS = b.b.tls.ServerConfig()
	peer.StartTLS()
	t.Cleanup(peer.Close)
	t.Cleanup(release) // before peer.Close

	dir, err := NewDirectory(DirectoryConfig{Self: "stk_a", TLS: b.a.tls,
		Timeouts: outbound.Timeouts{ResponseHeader: 300 * time.Millisecond},
		Peers:    []peers.Peer{peerEntry("stk_b", peer.URL, b.b.signer.PublicKey())}})
	require.NoError(t, err)
	_, _, err = dir.Describe(t.Context(), "stk_b")
	require.NoError(t, err, "the peer answers everything but the forward")

	srv, err := New(Config{StackID: "stk_a", Region: "local", Signer: b.a.signer, Directory: dir, Store: b.a.store,
		Audit: b.a.audit, Orchestrator: &Orchestrator{BaseURL: b.a.orch.srv.URL, Minter: jsonMinter{}},
		Authenticate: headerAuth(b.a.store), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	a := &testNode{id: "stk_a", client: httptest.NewServer(srv.ClientHandler())}
	t.Cleanup(a.client.Close)
	resp, body := call(t, a, "POST", "/v1/federation/runs:forward", "tnt_x", map[string]any{
		"target_selector": map[string]any{"stack_id": "stk_b"},
		"run_request":     map[string]any{"agent_id": "agt_echo", "input": "hi"}})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Equal(t, "dependency_unavailable", errCode(t, body))
	require.Contains(t, string(body), "peer stk_b did not answer in time")
	require.Equal(t, "stk_b", errDetails(t, body)["peer_stack_id"])
}

// TestOrchestratorThatNeverAnswers: the federation service's client of its
// own orchestrator is bounded too; one that accepts and never answers is
// dependency_unavailable, while the caller's own deadline stays timeout
// and the caller's leaving canceled.
func TestOrchestratorThatNeverAnswers(t *testing.T) {
	t.Parallel()
	hung, release := hang()
	orch := httptest.NewServer(hung)
	t.Cleanup(orch.Close)
	t.Cleanup(release) // before orch.Close
	o := &Orchestrator{BaseURL: orch.URL, Minter: jsonMinter{},
		HTTP: outbound.Client(outbound.Timeouts{ResponseHeader: 200 * time.Millisecond}, nil)}
	ac := auth.Context{TenantID: "tnt_x"}
	_, _, err := o.CreateRun(t.Context(), ac, "agt_echo", []byte(`{"input":"hi"}`), "", CallMeta{})
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "err: %v", err)

	slow := &Orchestrator{BaseURL: orch.URL, Minter: jsonMinter{},
		HTTP: outbound.Client(outbound.Timeouts{ResponseHeader: time.Hour}, nil)}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, _, err = slow.CreateRun(ctx, ac, "agt_echo", []byte(`{"input":"hi"}`), "", CallMeta{})
	require.Equal(t, errs.Timeout, errs.CodeOf(err), "err: %v", err)

	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, _, err = slow.CreateRun(ctx, ac, "agt_echo", []byte(`{"input":"hi"}`), "", CallMeta{})
	require.Equal(t, errs.Canceled, errs.CodeOf(err), "err: %v", err)
	require.ErrorIs(t, err, context.Canceled)
}

// A caller that hung up (499) has a status class of its own, not 4xx or 5xx.
func TestStatusClassOfCanceled(t *testing.T) {
	t.Parallel()
	require.Equal(t, "canceled", statusClass(499))
	require.Equal(t, "4xx", statusClass(404))
	require.Equal(t, "5xx", statusClass(503))
}

// A peer call cut by a deadline is the peer not answering
// (dependency_unavailable, so target selection skips it); one whose caller
// left is canceled.
func TestUnreachableMapping(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	err := unreachable(ctx, "stk_b", context.DeadlineExceeded)
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "err: %v", err)
	require.Equal(t, "stk_b", errs.As(err).Details["peer_stack_id"])

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	err = unreachable(ctx, "stk_b", context.Canceled)
	require.Equal(t, errs.Canceled, errs.CodeOf(err), "err: %v", err)
}
