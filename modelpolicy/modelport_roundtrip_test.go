package modelpolicy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
)

// TestModelPortRoundTrip drives the orchestrator's HTTP client against the
// real server.
func TestModelPortRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a", func(t *store.Tenant) { t.DefaultPolicyID = "pol_strict" }))
	c := modelport.NewHTTPClient(b.url, func(req *http.Request, ac auth.Context) error {
		req.Header.Set("X-Test-Tenant", ac.TenantID)
		req.Header.Set("X-Test-Principal", ac.Principal.PrincipalID)
		return nil
	}, nil)
	ac := auth.Context{TenantID: "tnt_a", Principal: auth.Principal{PrincipalID: "usr_1", PrincipalType: "user"}}
	ctx := context.Background()
	tools := []modelport.ToolSpec{{ToolID: "tool.echo", Name: "tool.echo", InputSchema: []byte(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`)}}
	resp, err := c.Chat(ctx, ac, modelport.ChatRequest{RequestID: "req_rt", ModelRef: "tier:balanced", AgentID: "agt_1", RunID: "run_1",
		Input: modelport.ChatInput{Messages: []modelport.Message{{Role: "user", Content: "hello"}}, Tools: tools}})
	require.NoError(t, err)
	require.Equal(t, "req_rt", resp.RequestID)
	require.Len(t, resp.Output.ToolCalls, 1)
	require.JSONEq(t, `{"text":"hello"}`, string(resp.Output.ToolCalls[0].Arguments))
	require.Equal(t, "builtin/echo-balanced", resp.Route.Model)

	emb, err := c.Embed(ctx, ac, modelport.EmbedRequest{ModelRef: "tier:embed", Input: modelport.EmbedInput{Texts: []string{"a"}}})
	require.NoError(t, err)
	require.Len(t, emb.Output.Embeddings[0].Vector, 64)

	pr, err := c.PolicyCheck(ctx, ac, modelport.PolicyCheckRequest{Content: modelport.Content{Type: "text", Text: "a@b.io"}})
	require.NoError(t, err)
	require.Equal(t, "redacted", pr.Decision)

	models, err := c.ListModels(ctx, ac)
	require.NoError(t, err)
	require.Len(t, models, 4)

	_, err = c.Chat(ctx, ac, modelport.ChatRequest{ModelRef: "tier:fast",
		Input: modelport.ChatInput{Messages: []modelport.Message{{Role: "user", Content: "ssn 123-45-6789"}}}})
	require.Equal(t, errs.PolicyBlocked, errs.CodeOf(err))

	b.flush()
	recs, err := b.db.ListUsage(ctx, store.UsageFilter{TenantID: "tnt_a", RunID: "run_1"})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, "agt_1", recs[0].AgentID)
}

// TestModelPortStreamRoundTrip drives the client's ChatStream against the
// real server: deltas add up to the answer; an error before the stream is
// the same error as Chat's; an error after deltas arrived keeps its code.
func TestModelPortStreamRoundTrip(t *testing.T) {
	t.Parallel()
	text := filler + "my card is 4111 1111 1111 1111 thanks. " + filler
	up := streamingOpenAI(t, text)
	cat, err := ParseCatalogue(fmt.Appendf(nil, "backends:\n  - {name: builtin, type: builtin}\n  - {name: up, type: openai, base_url: %q}\nmodels:\n  - {name: m, backend: up, tiers: [fast]}\n  - {name: echo, backend: builtin, tiers: [balanced]}\n", up.URL+"/v1"))
	require.NoError(t, err)
	b := setup(t, setupOpts{cat: cat})
	b.addTenant(tenant("tnt_a"))
	b.addTenant(tenant("tnt_s", func(t *store.Tenant) { t.DefaultPolicyID = "pol_strict" }))
	c := modelport.NewHTTPClient(b.url, func(req *http.Request, ac auth.Context) error {
		req.Header.Set("X-Test-Tenant", ac.TenantID)
		req.Header.Set("X-Test-Principal", ac.Principal.PrincipalID)
		return nil
	}, nil)
	ctx := context.Background()
	ac := auth.Context{TenantID: "tnt_a", Principal: auth.Principal{PrincipalID: "usr_1", PrincipalType: "user"}}
	req := modelport.ChatRequest{ModelRef: "tier:fast", Input: modelport.ChatInput{Messages: []modelport.Message{{Role: "user", Content: "hi"}}}}
	var got strings.Builder
	n := 0
	resp, err := c.ChatStream(ctx, ac, req, func(d modelport.Delta) error { n++; got.WriteString(d.Content); return nil })
	require.NoError(t, err)
	require.Greater(t, n, 1)
	require.Equal(t, resp.Output.Message.Content, got.String())
	require.Contains(t, got.String(), "[REDACTED:credit_card]")
	require.EqualValues(t, 53, resp.Usage.TotalTokens)

	// Refused before streaming: the code of the error envelope.
	_, err = c.ChatStream(ctx, ac, modelport.ChatRequest{ModelRef: "nope/none", Input: req.Input}, func(modelport.Delta) error { return nil })
	require.Equal(t, errs.NotFound, errs.CodeOf(err))

	// Blocked by the output policy after deltas were sent: policy_blocked.
	acS := auth.Context{TenantID: "tnt_s", Principal: ac.Principal}
	got.Reset()
	_, err = c.ChatStream(ctx, acS, req, func(d modelport.Delta) error { got.WriteString(d.Content); return nil })
	require.Equal(t, errs.PolicyBlocked, errs.CodeOf(err), "%v", err)
	require.NotEmpty(t, got.String())
	require.NotContains(t, got.String(), "4111")
}
