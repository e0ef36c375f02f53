package httpx

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
)

func serve(t *testing.T, h http.Handler, req *http.Request) (*http.Response, Envelope) {
	t.Helper()
	rec := httptest.NewRecorder()
	Chain(h, Standard(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)...).ServeHTTP(rec, req)
	resp := rec.Result()
	var env Envelope
	if resp.StatusCode >= 400 {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&env))
	}
	return resp, env
}

func TestErrorEnvelopeAndStatusTable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err    error
		status int
		code   string
		retry  bool
		typ    string
	}{
		{errs.Field("input", "is required"), 400, "invalid_request", false, "invalid_request_error"},
		{errs.E(errs.Unauthorized, "no"), 401, "unauthorized", false, "authentication_error"},
		{errs.E(errs.Forbidden, "no"), 403, "forbidden", false, "permission_error"},
		{errs.E(errs.PolicyBlocked, "pii"), 403, "policy_blocked", false, "permission_error"},
		{errs.E(errs.NotFound, "x"), 404, "not_found", false, "not_found_error"},
		{errs.E(errs.MethodNotAllowed, "x"), 405, "method_not_allowed", false, "invalid_request_error"},
		{errs.E(errs.Conflict, "x"), 409, "conflict", false, "invalid_request_error"},
		{errs.E(errs.RateLimited, "x"), 429, "rate_limited", true, "rate_limit_error"},
		{errs.E(errs.QuotaExceeded, "x"), 429, "quota_exceeded", false, "insufficient_quota"},
		{errs.E(errs.DependencyUnavailable, "x"), 503, "dependency_unavailable", true, "server_error"},
		{errs.E(errs.Overloaded, "x"), 503, "overloaded", true, "server_error"},
		{errs.E(errs.Timeout, "x"), 504, "timeout", true, "server_error"},
		{io.ErrUnexpectedEOF, 500, "internal_error", true, "server_error"},
	}
	for _, tc := range cases {
		h := H(func(w http.ResponseWriter, r *http.Request) error { return tc.err })
		resp, env := serve(t, h, httptest.NewRequest("GET", "/openai/v1/models", nil))
		require.Equal(t, tc.status, resp.StatusCode, tc.code)
		require.Equal(t, tc.code, env.Error.Code)
		require.Equal(t, tc.retry, env.Error.Retryable)
		require.NotNil(t, env.Error.Details)
		require.Equal(t, tc.typ, env.Error.Type, tc.code)
		if tc.code == "invalid_request" {
			require.NotNil(t, env.Error.Param)
			require.Equal(t, "input", *env.Error.Param)
		} else {
			require.Nil(t, env.Error.Param, tc.code)
		}
		require.True(t, strings.HasPrefix(env.CorrelationID, "corr_"))
		if tc.code == "internal_error" {
			require.Equal(t, "internal error", env.Error.Message, "internal causes are hidden")
		}
	}
}

// On the OpenAI surface the param key is always present (null when no
// field is at fault), as in OpenAI's error object; elsewhere neither type
// nor param is sent (the original API's error object allows no others).
func TestParamIsNullWithoutField(t *testing.T) {
	t.Parallel()
	h := H(func(w http.ResponseWriter, r *http.Request) error { return errs.E(errs.NotFound, "x") })
	for _, path := range []string{"/openai/v1/models/x", "/v1/chat/completions", "/v1/embeddings"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", path, nil))
		require.Contains(t, rec.Body.String(), `"param":null`, path)
		require.Contains(t, rec.Body.String(), `"type":"not_found_error"`, path)
	}
	for _, path := range []string{"/v1/models", "/v1/runs/run_x", "/v1/federation/peer"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		require.NotContains(t, rec.Body.String(), `"param"`, path)
		require.NotContains(t, rec.Body.String(), `"type"`, path)
	}
}

// A known path with the wrong method is 405 with Allow, checked against
// every mux given (the orchestrator splits its routes over two); unknown
// paths stay 404.
func TestWrongMethodIs405WithAllow(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	public, api := http.NewServeMux(), http.NewServeMux()
	public.Handle("GET /v1/health", ok)
	api.Handle("GET /v1/runs/{id}", ok)
	api.Handle("POST /v1/runs/{id}", ok)
	api.Handle("/", NotFoundHandler(public, api))
	public.Handle("/", MethodCheck(api, public, api))

	resp, env := serve(t, public, httptest.NewRequest("DELETE", "/v1/runs/run_1", nil))
	require.Equal(t, 405, resp.StatusCode)
	require.Equal(t, "method_not_allowed", env.Error.Code)
	require.Equal(t, "GET, HEAD, POST", resp.Header.Get("Allow"))
	require.Equal(t, []any{"GET", "HEAD", "POST"}, env.Error.Details["allow"])

	resp, _ = serve(t, public, httptest.NewRequest("POST", "/v1/health", nil))
	require.Equal(t, 405, resp.StatusCode)
	require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))

	resp, env = serve(t, public, httptest.NewRequest("GET", "/v1/nope", nil))
	require.Equal(t, 404, resp.StatusCode)
	require.Equal(t, "not_found", env.Error.Code)
	require.Empty(t, resp.Header.Get("Allow"))

	resp, _ = serve(t, public, httptest.NewRequest("POST", "/v1/runs/run_1", nil))
	require.Equal(t, 204, resp.StatusCode)
}

func TestRateLimitedSetsRetryAfter(t *testing.T) {
	t.Parallel()
	h := H(func(w http.ResponseWriter, r *http.Request) error {
		return &errs.Error{Code: errs.RateLimited, Message: "slow down", RetryAfter: 1500e6}
	})
	resp, _ := serve(t, h, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, 429, resp.StatusCode)
	require.Equal(t, "2", resp.Header.Get("Retry-After"))
}

func TestOverloadedSetsRetryAfter(t *testing.T) {
	t.Parallel()
	h := H(func(w http.ResponseWriter, r *http.Request) error {
		return &errs.Error{Code: errs.Overloaded, Message: "too many streams"}
	})
	resp, env := serve(t, h, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, 503, resp.StatusCode)
	require.Equal(t, "overloaded", env.Error.Code)
	require.True(t, env.Error.Retryable)
	require.Equal(t, "1", resp.Header.Get("Retry-After"), "at least one second when none is given")
}

func TestDecodeNamesTheField(t *testing.T) {
	t.Parallel()
	type inner struct {
		Max int `json:"max_steps"`
	}
	var dst struct {
		Opts inner `json:"run_options"`
	}
	err := DecodeBytes([]byte(`{"run_options":{"max_steps":"x"},"unknown":1}`), &dst)
	require.Equal(t, "run_options.max_steps", errs.As(err).Details["field"])
	require.ErrorIs(t, DecodeBytes([]byte(`{"run_options":`), &dst), errs.ErrInvalid)
	require.ErrorIs(t, DecodeBytes([]byte(` `), &dst), errs.ErrInvalid)
	require.NoError(t, DecodeBytes([]byte(`{"unknown":{"deep":true}}`), &dst), "unknown fields are ignored")
}

func TestBodyLimitIs413(t *testing.T) {
	t.Parallel()
	h := H(func(w http.ResponseWriter, r *http.Request) error {
		var v map[string]any
		return Decode(r, &v)
	})
	big := bytes.Repeat([]byte("a"), MaxBodyBytes+10)
	resp, env := serve(t, h, httptest.NewRequest("POST", "/", bytes.NewReader(big)))
	require.Equal(t, 413, resp.StatusCode)
	require.Equal(t, "invalid_request", env.Error.Code)
}

func TestRecoverKeepsServing(t *testing.T) {
	t.Parallel()
	h := H(func(w http.ResponseWriter, r *http.Request) error { panic("boom") })
	resp, env := serve(t, h, httptest.NewRequest("GET", "/", nil))
	require.Equal(t, 500, resp.StatusCode)
	require.Equal(t, "internal_error", env.Error.Code)
	require.NotContains(t, env.Error.Message, "boom")
}

func TestIDsAndTraceparent(t *testing.T) {
	t.Parallel()
	var seen Trace
	h := H(func(w http.ResponseWriter, r *http.Request) error {
		seen = TraceFrom(r.Context())
		JSON(w, r, 200, map[string]any{"ok": true})
		return nil
	})
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Correlation-Id", "corr_keep_me")
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, _ := serve(t, h, req)
	require.Equal(t, "corr_keep_me", resp.Header.Get("X-Correlation-Id"))
	require.True(t, strings.HasPrefix(resp.Header.Get("X-Request-Id"), "req_"), "none sent: a new one")
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", seen.TraceID)
	require.Equal(t, "00f067aa0ba902b7", seen.ParentID)
	require.Equal(t, seen.Traceparent(), resp.Header.Get("traceparent"))
	child := seen.Child()
	require.Equal(t, seen.TraceID, child.TraceID)
	require.NotEqual(t, seen.SpanID, child.SpanID)

	// A hostile correlation id is replaced, an invalid traceparent restarts the trace.
	req = httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Correlation-Id", "bad id\nwith newline")
	req.Header.Set("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")
	resp, _ = serve(t, h, req)
	require.True(t, strings.HasPrefix(resp.Header.Get("X-Correlation-Id"), "corr_"))
	require.NotEqual(t, strings.Repeat("0", 32), seen.TraceID)

	// A well-formed request id (a gateway's) is kept; a malformed one or
	// one over 128 characters is replaced.
	for id, kept := range map[string]bool{"req_from_gateway": true, "9f2c-41d0.a:b_c": true,
		"has space": false, "req_" + strings.Repeat("x", 125): false} {
		req = httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-Request-Id", id)
		resp, _ = serve(t, h, req)
		if kept {
			require.Equal(t, id, resp.Header.Get("X-Request-Id"))
		} else {
			require.True(t, strings.HasPrefix(resp.Header.Get("X-Request-Id"), "req_"), id)
			require.NotEqual(t, id, resp.Header.Get("X-Request-Id"))
		}
	}
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("ff-zz")
	f.Fuzz(func(t *testing.T, s string) {
		tr := ParseTraceparent(s)
		require.Len(t, tr.TraceID, 32)
		require.Len(t, tr.SpanID, 16)
		require.Equal(t, tr, ParseTraceparent(tr.Traceparent()).withSpan(tr.SpanID).withParent(tr.ParentID))
	})
}

func (t Trace) withSpan(s string) Trace   { t.SpanID = s; return t }
func (t Trace) withParent(p string) Trace { t.ParentID = p; return t }

func FuzzDecodeBytes(f *testing.F) {
	f.Add([]byte(`{"input":"x","run_options":{"max_steps":3}}`))
	f.Add([]byte(`{"input":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var dst struct {
			Input any `json:"input"`
			Opts  struct {
				Max int `json:"max_steps"`
			} `json:"run_options"`
		}
		if err := DecodeBytes(b, &dst); err != nil {
			require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
		}
	})
}

func TestJSONFieldPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"model":                 "model",
		"tools.0.name":          "tools[0].name",
		"a.b.12":                "a.b[12]",
		"messages.3.content.10": "messages[3].content[10]",
		"v2":                    "v2",
	} {
		if got := JSONFieldPath(in); got != want {
			t.Errorf("JSONFieldPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkMethodCheckRouted is the cost MethodCheck adds to every routed
// request of the orchestrator (public mux falling through to the API mux).
func BenchmarkMethodCheckRouted(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	public, api := http.NewServeMux(), http.NewServeMux()
	public.Handle("GET /v1/health", ok)
	api.Handle("GET /v1/runs/{id}", ok)
	api.Handle("POST /v1/agents/{id}/runs", ok)
	api.Handle("/", NotFoundHandler(public, api))
	h := MethodCheck(ok, public, api)
	req := httptest.NewRequest("POST", "/v1/agents/agt_x/runs", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
