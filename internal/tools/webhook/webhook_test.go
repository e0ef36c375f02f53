package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/toolstest"
	"github.com/nexixai/agentos/internal/tools/webhook"
)

const secret = "a-shared-secret-of-enough-length"

var schema = json.RawMessage(`{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer"}},"required":["q"]}`)

// received is what the test webhook saw.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a webhook that verifies every call and answers by input.q:
// "hang" waits for the caller to give up, "fail" answers 500, otherwise it
// answers {"answer": "re: <q>"}.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []received
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Header.Clone(), body})
		rc.mu.Unlock()
		if err := webhook.Verify(r.Header.Get(webhook.SignatureHeader), secret, body, time.Now(), 5*time.Minute); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"message":"` + err.Error() + `"}}`))
			return
		}
		var req struct {
			Input struct {
				Q string `json:"q"`
			} `json:"input"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		switch req.Input.Q {
		case "hang":
			<-r.Context().Done()
			return
		case "fail":
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`{"message":"upstream broke"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"answer": "re: " + req.Input.Q})
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) calls() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func loopbackClient(t *testing.T) *http.Client {
	allow, err := builtin.ParseAllow("127.0.0.1")
	require.NoError(t, err)
	return builtin.GuardedClient(builtin.HTTPFetchConfig{Allow: allow})
}

func def(url string) store.ToolDef {
	return store.ToolDef{TenantID: toolstest.DefaultTenant, ToolID: "tool.lookup", Name: "lookup",
		Description: "Looks a question up.", InputSchema: schema, Kind: store.ToolKindWebhook, URL: url,
		Secret: secret, Idempotent: true, TimeoutMs: 10000}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	client := loopbackClient(t)
	toolstest.Run(t, func(t *testing.T) tools.Tool { return webhook.New(def(rc.srv.URL), client) },
		toolstest.Case{Name: "ok", Input: json.RawMessage(`{"q":"hello","n":2}`), Check: func(t *testing.T, out json.RawMessage) {
			require.JSONEq(t, `{"answer":"re: hello"}`, string(out))
		}},
		toolstest.Case{Name: "upstream_5xx", Input: json.RawMessage(`{"q":"fail"}`), WantCode: errs.DependencyUnavailable},
		toolstest.Case{Name: "hang", Input: json.RawMessage(`{"q":"hang"}`), Blocks: true},
	)
}

func TestSignatureVerifiableByReceiver(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	tl := webhook.New(def(rc.srv.URL), loopbackClient(t))
	trace := httpx.ParseTraceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	ctx := httpx.WithTrace(context.Background(), trace)
	c := toolstest.Call("tnt_a", json.RawMessage(`{"q":"sig"}`))
	out, err := tl.Invoke(ctx, c)
	require.NoError(t, err)
	require.JSONEq(t, `{"answer":"re: sig"}`, string(out))

	got := rc.calls()
	require.Len(t, got, 1)
	h := got[0].header
	require.Equal(t, "application/json", h.Get("Content-Type"))
	require.True(t, strings.HasPrefix(h.Get("traceparent"), "00-"+trace.TraceID+"-"), h.Get("traceparent"))
	require.NotContains(t, h.Get("traceparent"), trace.SpanID, "the webhook gets a child span")
	sig := h.Get(webhook.SignatureHeader)
	require.NoError(t, webhook.Verify(sig, secret, got[0].body, time.Now(), time.Minute))
	require.Error(t, webhook.Verify(sig, "another-secret-entirely", got[0].body, time.Now(), time.Minute))
	require.Error(t, webhook.Verify(sig, secret, append([]byte(" "), got[0].body...), time.Now(), time.Minute))
	require.Error(t, webhook.Verify(sig, secret, got[0].body, time.Now().Add(time.Hour), time.Minute), "stale timestamp")

	// The scheme in the package doc, recomputed by hand.
	ts, _, err := webhook.ParseSignature(sig)
	require.NoError(t, err)
	require.Equal(t, webhook.Sign(secret, ts, got[0].body), sig)

	var body map[string]any
	require.NoError(t, json.Unmarshal(got[0].body, &body))
	require.Equal(t, map[string]any{"tool_id": "tool.lookup", "tool_call_id": c.ToolCallID, "run_id": c.RunID,
		"agent_id": c.AgentID, "tenant_id": "tnt_a", "input": map[string]any{"q": "sig"}}, body)
}

func TestWrongSecretIsForbidden(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	d := def(rc.srv.URL)
	d.Secret = "not-the-receivers-secret"
	_, err := webhook.New(d, loopbackClient(t)).Invoke(context.Background(), toolstest.Call("", json.RawMessage(`{"q":"x"}`)))
	require.Equal(t, errs.Forbidden, errs.CodeOf(err), "err: %v", err)
	require.Contains(t, err.Error(), "signature: does not match", "the webhook's message is passed on")
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	d := def(rc.srv.URL)
	d.TimeoutMs = 50
	_, err := webhook.New(d, loopbackClient(t)).Invoke(context.Background(), toolstest.Call("", json.RawMessage(`{"q":"hang"}`)))
	require.Equal(t, errs.Timeout, errs.CodeOf(err), "err: %v", err)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

// answer serves one fixed response.
func answer(t *testing.T, status int, body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestResponses(t *testing.T) {
	t.Parallel()
	client := loopbackClient(t)
	big := `{"x":"` + strings.Repeat("a", webhook.MaxResponseBytes) + `"}`
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		code    errs.Code
		message string
		out     string
	}{
		{name: "ok", status: 200, body: " {\"a\": [1, 2]}\n", out: `{"a":[1,2]}`},
		{name: "created_scalar", status: 201, body: `"done"`, out: `"done"`},
		{name: "non_json", status: 200, body: "hello", code: errs.DependencyUnavailable, message: "not JSON"},
		{name: "empty", status: 200, body: "", code: errs.DependencyUnavailable, message: "not JSON"},
		{name: "too_large", status: 200, body: big, code: errs.DependencyUnavailable, message: "exceeds"},
		{name: "500", status: 500, body: "database down", code: errs.DependencyUnavailable, message: "database down"},
		{name: "503", status: 503, body: `{"error":"maintenance"}`, code: errs.DependencyUnavailable, message: "maintenance"},
		{name: "400", status: 400, body: `{"error":{"message":"q must be a city"}}`, code: errs.InvalidRequest, message: "q must be a city"},
		{name: "422", status: 422, body: `{"message":"unknown city"}`, code: errs.InvalidRequest, message: "unknown city"},
		{name: "401", status: 401, body: "", code: errs.Forbidden},
		{name: "403", status: 403, body: "no", code: errs.Forbidden, message: "no"},
		{name: "429", status: 429, body: "", code: errs.RateLimited},
		{name: "redirect", status: 307, body: "", code: errs.DependencyUnavailable, message: "307"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := webhook.New(def(answer(t, tc.status, tc.body)), client).
				Invoke(context.Background(), toolstest.Call("", json.RawMessage(`{"q":"x"}`)))
			if tc.code == "" {
				require.NoError(t, err)
				require.Equal(t, tc.out, string(out))
				return
			}
			require.Equal(t, tc.code, errs.CodeOf(err), "err: %v", err)
			require.Contains(t, err.Error(), tc.message)
			require.Equal(t, tc.status, errs.As(err).Details["status"])
		})
	}
}

func TestSSRFRefusedWithoutAllowlist(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	for _, client := range []*http.Client{nil, builtin.GuardedClient(builtin.HTTPFetchConfig{})} {
		for _, url := range []string{rc.srv.URL, "http://169.254.169.254/latest/meta-data", "http://localhost:1/x", "http://[::1]:1/"} {
			_, err := webhook.New(def(url), client).Invoke(context.Background(), toolstest.Call("", json.RawMessage(`{"q":"x"}`)))
			require.Equal(t, errs.Forbidden, errs.CodeOf(err), "%s: %v", url, err)
			require.Contains(t, err.Error(), "AGENTOS_HTTP_FETCH_ALLOW")
		}
	}
	require.Empty(t, rc.calls(), "the guard refused before connecting")
}

func TestUnreachableIsDependencyUnavailable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := webhook.New(def(url), loopbackClient(t)).Invoke(context.Background(), toolstest.Call("", json.RawMessage(`{"q":"x"}`)))
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err), "err: %v", err)
}

func TestSpec(t *testing.T) {
	t.Parallel()
	d := def("https://hooks.example.com/x")
	d.TimeoutMs = 0
	s := webhook.New(d, nil).Spec()
	require.Equal(t, webhook.DefaultTimeout, s.DefaultTimeout)
	require.NoError(t, tools.CheckSpec(s))
	d.TimeoutMs = 1500
	require.Equal(t, 1500*time.Millisecond, webhook.New(d, nil).Spec().DefaultTimeout)
}

func FuzzVerify(f *testing.F) {
	f.Add("t=1700000000,v1=00", []byte(`{}`))
	f.Add(webhook.Sign(secret, 1700000000, []byte(`{"a":1}`)), []byte(`{"a":1}`))
	f.Add("v1=zz,t=-1", []byte(nil))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		now := time.Unix(1700000000, 0)
		if err := webhook.Verify(header, secret, body, now, time.Minute); err == nil {
			ts, _, perr := webhook.ParseSignature(header)
			require.NoError(t, perr)
			// Only a real signature of this body verifies.
			require.Contains(t, header, strings.TrimPrefix(webhook.Sign(secret, ts, body), "t="+itoa(ts)+","))
		}
		ts := int64(1700000000)
		require.NoError(t, webhook.Verify(webhook.Sign(secret, ts, body), secret, body, now, time.Minute))
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A 429 or 503's Retry-After (seconds) reaches the executor, which waits
// at least that long before calling an idempotent webhook again.
func TestRetryAfterIsKept(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	_, err := webhook.New(def(srv.URL), loopbackClient(t)).
		Invoke(context.Background(), toolstest.Call("", json.RawMessage(`{"q":"x"}`)))
	require.Equal(t, errs.RateLimited, errs.CodeOf(err))
	require.Equal(t, 7*time.Second, errs.As(err).RetryAfter)
}
