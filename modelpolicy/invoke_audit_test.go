package modelpolicy

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/providers/builtin"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// scripted is the builtin provider with a chat answer of the test's own.
type scripted struct {
	*builtin.Provider
	chat func(providers.ChatRequest) (providers.ChatResponse, error)
}

func (p scripted) Chat(_ context.Context, req providers.ChatRequest) (providers.ChatResponse, error) {
	return p.chat(req)
}

const auditPathsCatalogue = `
backends:
  - {name: builtin, type: builtin}
  - {name: alt, type: builtin}
models:
  - {name: echo, backend: builtin, tiers: [fast], price_per_1k_input_usd: 0.5, price_per_1k_output_usd: 1.5}
  - {name: vectors, backend: builtin, capabilities: [embed], tiers: [embed], price_per_1k_input_usd: 0.1}
  - {name: first, backend: alt, tiers: [first], price_per_1k_input_usd: 2, price_per_1k_output_usd: 4}
tiers:
  fallback: [alt/first, builtin/echo]
`

// TestInvokeAuditAndMetricsPerPath pins, for every way a governed call can
// end, the audit record it leaves (action, target, outcome, details) and
// the usage it records and the metrics it counts, against testdata/invoke_audit.golden.json (run
// with -update to rewrite it after a deliberate change).
func TestInvokeAuditAndMetricsPerPath(t *testing.T) {
	t.Parallel()
	cat, err := ParseCatalogue([]byte(auditPathsCatalogue))
	require.NoError(t, err)
	chat := func(tenantID, ref, text string) map[string]any {
		return chatBody(tenantID, ref, []map[string]any{user(text)}, nil)
	}
	type path struct {
		name      string
		tenant    func(*store.Tenant)
		mutate    func(*Config)
		calls     func(b *bundle, codes *[]int) // the calls, made as tenant tnt_p; their statuses
		wantCodes []int
	}
	fail := func(code errs.Code, msg string) func(providers.ChatRequest) (providers.ChatResponse, error) {
		return func(providers.ChatRequest) (providers.ChatResponse, error) {
			return providers.ChatResponse{}, errs.E(code, "%s", msg)
		}
	}
	provider := func(backend string, p providers.Provider) func(*Config) {
		return func(c *Config) { c.Providers = map[string]providers.Provider{backend: p} }
	}
	invoke := func(b *bundle, codes *[]int, body map[string]any) {
		*codes = append(*codes, b.do("POST", "/v1/models:invoke", "tnt_p", body).status)
	}
	paths := []path{
		{name: "served_redacted", calls: func(b *bundle, codes *[]int) { invoke(b, codes, chat("tnt_p", "tier:fast", "mail bob@example.com")) },
			wantCodes: []int{200}},
		{name: "served_embed", calls: func(b *bundle, codes *[]int) {
			invoke(b, codes, map[string]any{"auth": map[string]any{"tenant_id": "tnt_p"}, "request": map[string]any{"request_id": "req_emb",
				"operation": "embed", "model_ref": "tier:embed", "input": map[string]any{"texts": []string{"alpha beta", "gamma"}}}})
		}, wantCodes: []int{200}},
		{name: "unknown_model", calls: func(b *bundle, codes *[]int) { invoke(b, codes, chat("tnt_p", "builtin/nope", "x")) }, wantCodes: []int{404}},
		{name: "tokens_per_request", tenant: func(tn *store.Tenant) { tn.Quotas.Models.MaxTokensPerRequest = 5 },
			calls: func(b *bundle, codes *[]int) {
				invoke(b, codes, chat("tnt_p", "tier:fast", strings.Repeat("word ", 30)))
			}, wantCodes: []int{400}},
		{name: "invoke_qps", mutate: func(c *Config) { c.DefaultInvokeQPS = 0.001 }, calls: func(b *bundle, codes *[]int) {
			invoke(b, codes, chat("tnt_p", "tier:fast", "one"))
			invoke(b, codes, chat("tnt_p", "tier:fast", "two"))
		}, wantCodes: []int{200, 429}},
		{name: "requests_per_minute", tenant: func(tn *store.Tenant) { tn.Quotas.Models.MaxRequestsPerMinute = 1 }, calls: func(b *bundle, codes *[]int) {
			invoke(b, codes, chat("tnt_p", "tier:fast", "one"))
			invoke(b, codes, chat("tnt_p", "tier:fast", "two"))
		}, wantCodes: []int{200, 429}},
		{name: "requirements", calls: func(b *bundle, codes *[]int) {
			body := chat("tnt_p", "tier:fast", "x")
			body["request"].(map[string]any)["requirements"] = map[string]any{"min_context_tokens": 1 << 30}
			invoke(b, codes, body)
		}, wantCodes: []int{400}},
		{name: "budget_exceeded", tenant: func(tn *store.Tenant) { tn.Quotas.Models.TokenBudget = store.TokenBudget{Window: "day", MaxTokens: 3} },
			calls: func(b *bundle, codes *[]int) {
				invoke(b, codes, chat("tnt_p", "tier:fast", "a longer prompt than three tokens"))
			}, wantCodes: []int{429}},
		{name: "input_blocked", tenant: func(tn *store.Tenant) { tn.DefaultPolicyID = "pol_strict" },
			calls: func(b *bundle, codes *[]int) {
				invoke(b, codes, chat("tnt_p", "tier:fast", "ssn 123-45-6789, mail bob@example.com"))
			}, wantCodes: []int{403}},
		{name: "backend_refused", mutate: provider("builtin", scripted{builtin.New(0), fail(errs.InvalidRequest, "the backend refused the prompt")}),
			calls: func(b *bundle, codes *[]int) { invoke(b, codes, chat("tnt_p", "tier:fast", "x")) }, wantCodes: []int{400}},
		{name: "fallback_after_charged_timeout", mutate: provider("alt", scripted{builtin.New(0), fail(errs.Timeout, "backend timed out")}),
			calls: func(b *bundle, codes *[]int) { invoke(b, codes, chat("tnt_p", "tier:fallback", "hello there")) }, wantCodes: []int{200}},
		{name: "all_backends_failed", mutate: provider("alt", scripted{builtin.New(0), fail(errs.DependencyUnavailable, "backend down")}),
			calls: func(b *bundle, codes *[]int) { invoke(b, codes, chat("tnt_p", "alt/first", "hello")) }, wantCodes: []int{503}},
		{name: "stream_failed_charged", mutate: provider("builtin", streamThenFail{builtin.New(0)}),
			tenant: func(tn *store.Tenant) { tn.DefaultPolicyID = "pol_permissive" }, calls: func(b *bundle, codes *[]int) {
				req, err := http.NewRequest("POST", b.url+"/v1/chat/completions", strings.NewReader(
					`{"model":"tier:fast","stream":true,"messages":[{"role":"user","content":"tell me a story"}]}`))
				require.NoError(t, err)
				req.Header.Set("X-Test-Tenant", "tnt_p")
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				_, _ = io.ReadAll(resp.Body) // to the end: the call, and its audit, are done
				resp.Body.Close()
				*codes = append(*codes, resp.StatusCode)
			}, wantCodes: []int{200}},
		{name: "output_blocked", tenant: func(tn *store.Tenant) { tn.DefaultPolicyID = "pol_strict" },
			mutate: provider("builtin", scripted{builtin.New(0), func(providers.ChatRequest) (providers.ChatResponse, error) {
				return providers.ChatResponse{Message: modelport.Message{Role: "assistant", Content: "it is 123-45-6789, mail bob@example.com"},
					Usage: modelport.Usage{InputTokens: 4, OutputTokens: 9, TotalTokens: 13}}, nil
			}}),
			calls: func(b *bundle, codes *[]int) { invoke(b, codes, chat("tnt_p", "tier:fast", "what is my ssn?")) }, wantCodes: []int{403}},
	}
	var mu sync.Mutex
	got := map[string]any{}
	t.Run("paths", func(t *testing.T) {
		for _, p := range paths {
			t.Run(p.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, setupOpts{cat: cat, mutate: p.mutate})
				tn := tenant("tnt_p")
				if p.tenant != nil {
					p.tenant(&tn)
				}
				b.addTenant(tn)
				var codes []int
				p.calls(b, &codes)
				require.Equal(t, p.wantCodes, codes)
				b.flush()
				aud, err := b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_p"})
				require.NoError(t, err)
				var recs []map[string]any
				for _, a := range aud {
					if id, _ := a.Details["request_id"].(string); strings.HasPrefix(id, "req_01") {
						a.Details["request_id"] = "req_<generated>" // the OpenAI surface makes one up
					}
					recs = append(recs, map[string]any{"action": a.Action, "target": a.Target, "outcome": a.Outcome, "details": a.Details})
				}
				usage, err := b.db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_p"})
				require.NoError(t, err)
				var ledger []string
				for _, u := range usage {
					ledger = append(ledger, fmt.Sprintf("%s %s in=%d out=%d cost=%g", u.Operation, u.ModelID, u.InputTokens, u.OutputTokens, u.CostUSD))
				}
				slices.Sort(ledger)
				mu.Lock()
				got[p.name] = map[string]any{"audit": recs, "ledger": ledger, "metrics": metricLines(t, b.srv)}
				mu.Unlock()
			})
		}
	})
	if t.Failed() {
		return
	}
	raw, err := json.MarshalIndent(got, "", "  ")
	require.NoError(t, err)
	raw = append(raw, '\n')
	golden := filepath.Join("testdata", "invoke_audit.golden.json")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(golden, raw, 0o644))
	}
	raw, err = os.ReadFile(golden)
	require.NoError(t, err)
	var want map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &want))
	require.Len(t, want, len(got))
	for name, g := range got { // path by path, for a short line diff
		gotJSON, err := json.MarshalIndent(g, "", "  ")
		require.NoError(t, err)
		var wantJSON bytes.Buffer
		require.NoError(t, json.Indent(&wantJSON, want[name], "", "  "))
		require.Equal(t, wantJSON.String(), string(gotJSON), "path %s (rewrite with -update only for a deliberate change)", name)
	}
}

// metricLines renders the governance counters of srv as sorted
// "name{label=value,...} value" lines.
func metricLines(t *testing.T, srv *Server) []string {
	t.Helper()
	mfs, err := srv.gatherer.Gather()
	require.NoError(t, err)
	keep := []string{"agentos_model_requests_total", "agentos_model_routes_total", "agentos_model_tokens_total",
		"agentos_model_cost_usd_total", "agentos_policy_blocks_total", "agentos_policy_redactions_total"}
	var lines []string
	for _, mf := range mfs {
		if !slices.Contains(keep, mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			lines = append(lines, fmt.Sprintf("%s{%s} %g", mf.GetName(), strings.Join(ls, ","), m.GetCounter().GetValue()))
		}
	}
	slices.Sort(lines)
	return lines
}
