package modelpolicy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/outbound"
)

// silentBackend accepts connections and never writes a byte: a model
// backend that hung. It returns its base URL.
func silentBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	return "http://" + ln.Addr().String() + "/v1"
}

func silentCatalogue(t *testing.T) *Catalogue {
	t.Helper()
	cat, err := ParseCatalogue(fmt.Appendf(nil, `
backends:
  - {name: builtin, type: builtin}
  - {name: vllm, type: openai, base_url: %q}
models:
  - {name: llama, backend: vllm, tiers: [balanced], latency_ms: 50}
  - {name: echo, backend: builtin, tiers: [balanced], latency_ms: 1}
tiers:
  balanced: [vllm/llama, builtin/echo]
breaker: {failure_threshold: 1, cooldown: 1h}
`, silentBackend(t)))
	require.NoError(t, err)
	return cat
}

// TestSilentBackendIsUnavailable: a backend that accepts and never answers
// fails the call with dependency_unavailable once the configured
// response-header bound runs out (well before the catalogue's 60 s call
// timeout), counts as a breaker failure, and a tier falls back past it.
func TestSilentBackendIsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{cat: silentCatalogue(t), mutate: func(c *Config) {
		c.HTTPClient = outbound.ModelClient(outbound.Timeouts{ResponseHeader: 300 * time.Millisecond})
	}})
	b.addTenant(tenant("tnt_a"))

	r := b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "vllm/llama", []map[string]any{user("hi")}, nil))
	require.Equal(t, http.StatusServiceUnavailable, r.status, string(r.raw))
	require.Equal(t, "dependency_unavailable", errCode(r))
	require.Contains(t, dig(r.body, "error", "message"), "backend vllm did not answer in time")
	require.Equal(t, "open", b.srv.breakers.State("vllm"), "the hung backend counts as a breaker failure")

	r = b.do("POST", "/v1/models:invoke", "tnt_a", chatBody("tnt_a", "tier:balanced", []map[string]any{user("hi")}, nil))
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "builtin", dig(r.body, "response", "route", "backend"))
	require.Equal(t, true, dig(r.body, "response", "route", "fallback_used"))
}

// TestCallerHangsUpOnSlowBackend: a client that gives up while model-policy
// waits on a backend is counted as 499 in agentos_http_requests_total, not
// as a 5xx, and the backend is not blamed for it (its breaker stays
// closed).
func TestCallerHangsUpOnSlowBackend(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, setupOpts{cat: silentCatalogue(t), mutate: func(c *Config) {
		c.Registry = reg
		c.HTTPClient = outbound.ModelClient(outbound.Timeouts{ResponseHeader: time.Hour})
	}})
	b.addTenant(tenant("tnt_a"))

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	body := `{"auth":{"tenant_id":"tnt_a","principal_id":"usr_test"},"request":{"request_id":"req_1","operation":"chat","model_ref":"vllm/llama","input":{"messages":[{"role":"user","content":"hi"}]}}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/v1/models:invoke", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-Test-Tenant", "tnt_a")
	_, err = http.DefaultClient.Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the client gave up")

	// The server notices the hang-up, answers into the void and counts it.
	codes := func() map[string]float64 {
		out := map[string]float64{}
		fams, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range fams {
			if f.GetName() != "agentos_http_requests_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "code" {
						out[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return codes()["499"] == 1 }, 10*time.Second, 10*time.Millisecond)
	for code := range codes() {
		require.False(t, strings.HasPrefix(code, "5"), "no 5xx counted: %v", codes())
	}
	require.Equal(t, "closed", b.srv.breakers.State("vllm"), "the caller's leaving is not the backend's failure")
}
