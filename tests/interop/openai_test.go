// Package interop drives model-policy with stock third-party clients: the
// official OpenAI Go SDK (github.com/openai/openai-go) against the
// OpenAI-compatible endpoints, non-streaming, streaming, tool calls and
// embeddings. Everything runs in-process on 127.0.0.1.
package interop

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/node"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/sqlite"
	"github.com/nexixai/agentos/modelpolicy"
)

// gateway is a running model-policy with a real SQLite store and the real
// Authenticator (prod mode: API tokens only).
type gateway struct {
	baseURL string
	db      *sqlite.DB
	srv     *modelpolicy.Server
}

func startGateway(t *testing.T) *gateway {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "agentos.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	now := time.Now().UTC()
	for _, tn := range []store.Tenant{
		{TenantID: "tnt_interop"},
		{TenantID: "tnt_live", DefaultPolicyID: "pol_permissive"},
		{TenantID: "tnt_broke", Quotas: store.Quotas{Models: store.ModelQuotas{TokenBudget: store.TokenBudget{Window: "day", MaxTokens: 5}}}},
	} {
		tn.Name, tn.Status, tn.PlanTier, tn.CreatedAt, tn.UpdatedAt = tn.TenantID, store.TenantActive, "standard", now, now
		tn.Entitlements = store.Entitlements{ModelTiersAllowed: []string{"*"}, ModelBackendsAllowed: []string{"*"}, ToolIDsAllowed: []string{"*"}}
		require.NoError(t, db.CreateTenant(ctx, tn))
	}
	tenants := modelpolicy.NewTenantCache(db, time.Second)
	authn, err := auth.New(auth.Config{Mode: auth.ModeProd, Tenants: tenants, Tokens: db})
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := modelpolicy.New(modelpolicy.Config{Store: db, Tenants: tenants, Authenticate: authn.Middleware,
		Registry: prometheus.NewRegistry(), Logger: log, NodeID: "stk_interop"})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	require.NoError(t, srv.Start())
	// The node's listener path: its server limits and graceful drain.
	go func() { done <- node.ServeListener(sctx, config.Config{Mode: config.ModeProd}, ln, srv.Handler(), log) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, srv.Stop())
	})
	return &gateway{baseURL: "http://" + ln.Addr().String() + "/v1", db: db, srv: srv}
}

// client returns the official OpenAI client authenticated with a real API
// token issued for tenantID.
func (g *gateway) client(t *testing.T, tenantID string) openai.Client {
	t.Helper()
	_, secret, err := auth.IssueToken(context.Background(), g.db, auth.IssueParams{TenantID: tenantID, PrincipalID: "usr_sdk",
		Scopes: []string{auth.ScopeModelsInvoke, auth.ScopeModelsList}})
	require.NoError(t, err)
	return openai.NewClient(option.WithBaseURL(g.baseURL), option.WithAPIKey(secret), option.WithRequestTimeout(30*time.Second))
}

var weatherTool = openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: openai.String("Current weather for a city"),
	Parameters: openai.FunctionParameters{
		"type":       "object",
		"properties": map[string]any{"city": map[string]any{"type": "string"}},
		"required":   []string{"city"},
	},
})

func TestOpenAIClientChat(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	c := g.client(t, "tnt_interop")
	ctx := context.Background()

	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "tier:fast",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are terse."),
			openai.UserMessage("Reach me at bob@example.com please"),
		},
	})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(resp.ID, "chatcmpl-"), resp.ID)
	require.Equal(t, "builtin/echo-fast", resp.Model)
	require.Len(t, resp.Choices, 1)
	require.Equal(t, "stop", resp.Choices[0].FinishReason)
	require.Equal(t, "Echo: Reach me at [REDACTED:email] please", resp.Choices[0].Message.Content,
		"the email was redacted before it reached the model")
	require.Positive(t, resp.Usage.PromptTokens)
	require.Positive(t, resp.Usage.CompletionTokens)
	require.Equal(t, resp.Usage.PromptTokens+resp.Usage.CompletionTokens, resp.Usage.TotalTokens)
	// The governance extension survives as an extra field.
	var gov struct {
		PolicyOutcome struct {
			Decision string `json:"decision"`
		} `json:"policy_outcome"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp.JSON.ExtraFields["agentos"].Raw()), &gov))
	require.Equal(t, "redacted", gov.PolicyOutcome.Decision)
}

func TestOpenAIClientStreaming(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	// tnt_live's policy lets output stream live (several content chunks);
	// tnt_interop's redacts output, so its content comes once checked.
	for tenantID, minContentChunks := range map[string]int{"tnt_live": 2, "tnt_interop": 1} {
		c := g.client(t, tenantID)
		stream := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:         "tier:fast",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream these few words back to me")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		chunks, contentChunks := 0, 0
		finish := ""
		for stream.Next() {
			chunk := stream.Current()
			require.True(t, acc.AddChunk(chunk))
			chunks++
			for _, ch := range chunk.Choices {
				if ch.Delta.Content != "" {
					contentChunks++
				}
				if ch.FinishReason != "" {
					finish = ch.FinishReason
				}
			}
		}
		// [DONE] ends the stream cleanly: no error, nothing after it.
		require.NoError(t, stream.Err(), tenantID)
		require.NoError(t, stream.Close())
		require.GreaterOrEqual(t, contentChunks, minContentChunks, tenantID)
		require.Greater(t, chunks, contentChunks)
		require.Equal(t, "stop", finish)
		require.Len(t, acc.Choices, 1)
		require.Equal(t, "Echo: stream these few words back to me", acc.Choices[0].Message.Content, tenantID)
		// include_usage: the final chunk carries the usage.
		require.Positive(t, acc.Usage.TotalTokens)
		require.Equal(t, acc.Usage.PromptTokens+acc.Usage.CompletionTokens, acc.Usage.TotalTokens)
	}
}

func TestOpenAIClientToolCallRoundTrip(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	c := g.client(t, "tnt_interop")
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:    "tier:balanced",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Lisbon")},
		Tools:    []openai.ChatCompletionToolUnionParam{weatherTool},
	}
	// 1. The model asks for the offered tool.
	resp, err := c.Chat.Completions.New(ctx, params)
	require.NoError(t, err)
	require.Equal(t, "tool_calls", resp.Choices[0].FinishReason)
	calls := resp.Choices[0].Message.ToolCalls
	require.Len(t, calls, 1)
	call := calls[0]
	require.Equal(t, "function", call.Type)
	require.NotEmpty(t, call.ID)
	require.Equal(t, "get_weather", call.Function.Name)
	var args struct {
		City string `json:"city"`
	}
	require.NoError(t, json.Unmarshal([]byte(call.Function.Arguments), &args))
	require.Equal(t, "Lisbon", args.City)

	// 2. The caller runs the tool and sends its result back.
	params.Messages = append(params.Messages, resp.Choices[0].Message.ToParam(),
		openai.ToolMessage(`{"city":"Lisbon","forecast":"sunny, 24 C"}`, call.ID))
	resp, err = c.Chat.Completions.New(ctx, params)
	require.NoError(t, err)
	require.Equal(t, "stop", resp.Choices[0].FinishReason)
	require.Empty(t, resp.Choices[0].Message.ToolCalls)
	require.Contains(t, resp.Choices[0].Message.Content, "sunny, 24 C", "the answer uses the tool result")

	// The same first turn streamed: the tool call arrives in chunks.
	params.Messages = params.Messages[:1]
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	require.NoError(t, stream.Err())
	require.Len(t, acc.Choices, 1)
	require.Equal(t, "tool_calls", acc.Choices[0].FinishReason)
	require.Len(t, acc.Choices[0].Message.ToolCalls, 1)
	require.Equal(t, "get_weather", acc.Choices[0].Message.ToolCalls[0].Function.Name)
	require.JSONEq(t, `{"city":"Lisbon"}`, acc.Choices[0].Message.ToolCalls[0].Function.Arguments)
}

func TestOpenAIClientEmbeddings(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	c := g.client(t, "tnt_interop")
	ctx := context.Background()
	resp, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "embed-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha beta", "alpha beta", "zeta"}},
	})
	require.NoError(t, err)
	require.Equal(t, "list", string(resp.Object))
	require.Equal(t, "builtin/embed-small", resp.Model)
	require.Len(t, resp.Data, 3)
	for i, d := range resp.Data {
		require.EqualValues(t, i, d.Index)
		require.Len(t, d.Embedding, 64)
	}
	require.Equal(t, resp.Data[0].Embedding, resp.Data[1].Embedding)
	require.NotEqual(t, resp.Data[0].Embedding, resp.Data[2].Embedding)
	require.Positive(t, resp.Usage.PromptTokens)

	one, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "tier:embed",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("alpha beta")},
	})
	require.NoError(t, err)
	require.Len(t, one.Data, 1)
	require.Equal(t, resp.Data[0].Embedding, one.Data[0].Embedding)
}

func TestOpenAIClientErrors(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	ctx := context.Background()
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a message long enough to need more than five tokens")}

	// An exhausted budget is quota_exceeded: the SDK sees x-should-retry:
	// false and does not retry a call that can never pass.
	broke := g.client(t, "tnt_broke")
	_, err := broke.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "tier:fast", Messages: msgs})
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 429, apiErr.StatusCode)
	require.Equal(t, "quota_exceeded", apiErr.Code)
	require.Equal(t, "false", apiErr.Response.Header.Get("x-should-retry"))

	// An unknown model is 404 with the contract's code.
	ok := g.client(t, "tnt_interop")
	_, err = ok.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "nope/never", Messages: msgs})
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 404, apiErr.StatusCode)
	require.Equal(t, "not_found", apiErr.Code)

	// A bad key is 401.
	bad := openai.NewClient(option.WithBaseURL(g.baseURL), option.WithAPIKey("not-a-token"), option.WithMaxRetries(0))
	_, err = bad.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "tier:fast", Messages: msgs})
	require.True(t, errors.As(err, &apiErr), "%v", err)
	require.Equal(t, 401, apiErr.StatusCode)
}
