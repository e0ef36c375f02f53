package modelport_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/modelport"
)

var ac = auth.Context{TenantID: "tnt_a", Principal: auth.Principal{PrincipalID: "usr_1", PrincipalType: "user"},
	Scopes: []string{auth.ScopeModelsInvoke}, Roles: []string{auth.RoleTenantUser}}

type seen struct {
	mu      sync.Mutex
	headers http.Header
	body    map[string]any
	path    string
}

// fakeModelPolicy speaks the canonical contract.
func fakeModelPolicy(t *testing.T, s *seen, handler func(w http.ResponseWriter, r *http.Request, body map[string]any)) *httptest.Server {
	ts := httptest.NewServer(httpx.Chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		s.mu.Lock()
		s.headers, s.body, s.path = r.Header.Clone(), body, r.URL.Path
		s.mu.Unlock()
		handler(w, r, body)
	}), httpx.IDs))
	t.Cleanup(ts.Close)
	return ts
}

func TestClientChatSendsCanonicalBody(t *testing.T) {
	t.Parallel()
	var s seen
	ts := fakeModelPolicy(t, &s, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		httpx.JSON(w, r, 200, map[string]any{"response": modelport.ChatResponse{RequestID: "req_1", Status: "completed",
			Output: modelport.ChatOutput{Type: "chat", Message: modelport.Message{Role: "assistant", Content: "hi"},
				ToolCalls: []modelport.ToolCall{{ID: "call_1", ToolID: "tool.echo", Name: "tool.echo", Arguments: json.RawMessage(`{"text":"x"}`)}}},
			Route: modelport.Route{Backend: "builtin", Model: "builtin/echo-fast"}}})
	})
	c := modelport.NewHTTPClient(ts.URL+"/", func(req *http.Request, a auth.Context) error {
		req.Header.Set("X-Tenant-Id", a.TenantID)
		return nil
	}, nil)
	parent := httpx.ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	ctx := httpx.WithCorrelationID(httpx.WithTrace(context.Background(), parent), "corr_abc")
	resp, err := c.Chat(ctx, ac, modelport.ChatRequest{RequestID: "req_1", ModelRef: "tier:fast",
		Input: modelport.ChatInput{Messages: []modelport.Message{{Role: "user", Content: "x"}}}})
	require.NoError(t, err)
	require.Equal(t, "hi", resp.Output.Message.Content)
	require.Equal(t, "tool.echo", resp.Output.ToolCalls[0].ToolID)
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Equal(t, "/v1/models:invoke", s.path)
	require.Equal(t, "tnt_a", s.headers.Get("X-Tenant-Id"))
	require.Equal(t, "corr_abc", s.headers.Get("X-Correlation-Id"))
	tp := httpx.ParseTraceparent(s.headers.Get("traceparent"))
	require.Equal(t, parent.TraceID, tp.TraceID)
	require.NotEqual(t, parent.SpanID, tp.ParentID, "the downstream call is a new child span")
	require.Equal(t, "tnt_a", s.body["auth"].(map[string]any)["tenant_id"])
	require.Equal(t, "chat", s.body["request"].(map[string]any)["operation"])
	require.Equal(t, s.headers.Get("traceparent"), s.body["traceparent"])
}

func TestClientEmbedPolicyModels(t *testing.T) {
	t.Parallel()
	var s seen
	ts := fakeModelPolicy(t, &s, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		switch r.URL.Path {
		case "/v1/models:invoke":
			httpx.JSON(w, r, 200, map[string]any{"response": modelport.EmbedResponse{RequestID: "r", Status: "completed",
				Output: modelport.EmbedOutput{Type: "embedding", Embeddings: []modelport.Embedding{{Index: 0, Vector: []float32{0.5, -0.5}}}}}})
		case "/v1/policy:check":
			httpx.JSON(w, r, 200, map[string]any{"policy_result": modelport.PolicyCheckResult{RequestID: "p", Decision: "redacted",
				Redactions: []modelport.Redaction{{Type: "email", Count: 1}}, Content: &modelport.Content{Type: "text", Text: "[REDACTED:email]"}}})
		case "/v1/models":
			require.Equal(t, "GET", r.Method)
			httpx.JSON(w, r, 200, map[string]any{"models": []modelport.Model{{ModelID: "builtin/echo-fast", Tiers: []string{"fast"}}}})
		}
	})
	c := modelport.NewHTTPClient(ts.URL, nil, ts.Client())
	er, err := c.Embed(context.Background(), ac, modelport.EmbedRequest{ModelRef: "tier:embed", Input: modelport.EmbedInput{Texts: []string{"a"}}})
	require.NoError(t, err)
	require.Equal(t, []float32{0.5, -0.5}, er.Output.Embeddings[0].Vector)
	s.mu.Lock()
	require.Equal(t, "embed", s.body["request"].(map[string]any)["operation"])
	s.mu.Unlock()
	pr, err := c.PolicyCheck(context.Background(), ac, modelport.PolicyCheckRequest{RequestID: "p", Content: modelport.Content{Type: "text", Text: "a@b.io"}})
	require.NoError(t, err)
	require.Equal(t, "redacted", pr.Decision)
	s.mu.Lock()
	require.Equal(t, "a@b.io", s.body["policy_check"].(map[string]any)["content"].(map[string]any)["text"])
	s.mu.Unlock()
	ms, err := c.ListModels(context.Background(), ac)
	require.NoError(t, err)
	require.Equal(t, "builtin/echo-fast", ms[0].ModelID)
}

func TestClientErrorEnvelopes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		err    *errs.Error
		status int
		raw    string
	}{
		{"quota", errs.E(errs.QuotaExceeded, "token budget exceeded").WithDetails(map[string]any{"limit": float64(100), "used": float64(90), "window": "hour"}), 429, ""},
		{"rate limited", &errs.Error{Code: errs.RateLimited, Message: "slow down", RetryAfter: 3 * time.Second}, 429, ""},
		{"policy", errs.E(errs.PolicyBlocked, "input blocked").WithDetails(map[string]any{"reasons": []any{"input_ssn_blocked"}}), 403, ""},
		{"no envelope", nil, 502, "bad gateway"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s seen
			ts := fakeModelPolicy(t, &s, func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
				if tc.err == nil {
					w.WriteHeader(tc.status)
					_, _ = w.Write([]byte(tc.raw))
					return
				}
				httpx.WriteError(w, r, tc.err)
			})
			c := modelport.NewHTTPClient(ts.URL, nil, nil)
			_, err := c.Chat(context.Background(), ac, modelport.ChatRequest{})
			var e *errs.Error
			require.True(t, errors.As(err, &e), "%v", err)
			if tc.err == nil {
				require.Equal(t, errs.DependencyUnavailable, e.Code)
				return
			}
			require.Equal(t, tc.err.Code, e.Code)
			require.Equal(t, tc.err.Message, e.Message)
			for k, v := range tc.err.Details {
				require.Equal(t, v, e.Details[k])
			}
			require.Equal(t, tc.err.RetryAfter, e.RetryAfter)
		})
	}
}

func TestClientTransportFailures(t *testing.T) {
	t.Parallel()
	// Server down: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c := modelport.NewHTTPClient("http://"+addr, nil, nil)
	_, err = c.ListModels(context.Background(), ac)
	require.ErrorIs(t, err, errs.ErrUnavailable)
	require.True(t, errs.CodeOf(err).Retryable())

	// Deadline and cancellation against a server that never answers.
	block := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(block); ts.Close() })
	c = modelport.NewHTTPClient(ts.URL, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Chat(ctx, ac, modelport.ChatRequest{})
	require.Equal(t, errs.Timeout, errs.CodeOf(err))

	ctx, cancel2 := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel2() }()
	_, err = c.Chat(ctx, ac, modelport.ChatRequest{})
	require.ErrorIs(t, err, context.Canceled)

	// Connection reset mid-response.
	rst := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.(*net.TCPConn).SetLinger(0)
			_ = conn.Close()
		}
	}))
	t.Cleanup(rst.Close)
	_, err = modelport.NewHTTPClient(rst.URL, nil, nil).ListModels(context.Background(), ac)
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "%v", err)
}
