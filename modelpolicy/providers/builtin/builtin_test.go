package builtin

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

var echo = modelport.ToolSpec{ToolID: "tool.echo", Name: "tool.echo",
	InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`)}

func TestToolThenAnswer(t *testing.T) {
	t.Parallel()
	p := New(0)
	msgs := []modelport.Message{{Role: "user", Content: "hello"}}
	r1, err := p.Chat(context.Background(), providers.ChatRequest{Messages: msgs, Tools: []modelport.ToolSpec{echo}})
	require.NoError(t, err)
	require.Len(t, r1.ToolCalls, 1)
	require.Equal(t, "tool.echo", r1.ToolCalls[0].ToolID)
	require.JSONEq(t, `{"text":"hello"}`, string(r1.ToolCalls[0].Arguments))
	again, _ := p.Chat(context.Background(), providers.ChatRequest{Messages: msgs, Tools: []modelport.ToolSpec{echo}})
	require.Equal(t, r1, again, "deterministic")
	msgs = append(msgs, modelport.Message{Role: "assistant", ToolCalls: r1.ToolCalls},
		modelport.Message{Role: "tool", ToolCallID: r1.ToolCalls[0].ID, Content: `{"text":"hello"}`})
	r2, err := p.Chat(context.Background(), providers.ChatRequest{Messages: msgs, Tools: []modelport.ToolSpec{echo}})
	require.NoError(t, err)
	require.Empty(t, r2.ToolCalls)
	require.Equal(t, "Echo: hello", r2.Message.Content)
	require.True(t, r2.Usage.Estimated)
	require.Equal(t, r2.Usage.InputTokens+r2.Usage.OutputTokens, r2.Usage.TotalTokens)
	// A new user turn plans a new call.
	msgs = append(msgs, modelport.Message{Role: "user", Content: "again"})
	r3, _ := p.Chat(context.Background(), providers.ChatRequest{Messages: msgs, Tools: []modelport.ToolSpec{echo}})
	require.Len(t, r3.ToolCalls, 1)
	// No tools: echo the user.
	r4, _ := p.Chat(context.Background(), providers.ChatRequest{Messages: []modelport.Message{{Role: "user", Content: "plain"}}})
	require.Equal(t, "Echo: plain", r4.Message.Content)
	// tool_choice none: no call.
	r5, _ := p.Chat(context.Background(), providers.ChatRequest{Messages: []modelport.Message{{Role: "user", Content: "x"}}, Tools: []modelport.ToolSpec{echo}, ToolChoice: "none"})
	require.Empty(t, r5.ToolCalls)
}

func TestFillArguments(t *testing.T) {
	t.Parallel()
	cases := []struct {
		schema string
		want   string
		ok     bool
	}{
		{``, `{"text":"t"}`, true},
		{`{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer","minimum":1},"f":{"type":"boolean"}},"required":["q","n","f"]}`, `{"q":"t","n":1,"f":false}`, true},
		{`{"type":"object","properties":{"mode":{"type":"string","enum":["fast","slow"]}},"required":["mode"]}`, `{"mode":"fast"}`, true},
		{`{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"string"}}}`, `{"a":"t"}`, true},
		{`{"type":"object","properties":{"x":{"type":"weird"}},"required":["x"]}`, ``, false},
	}
	for _, tc := range cases {
		got, ok := FillArguments(json.RawMessage(tc.schema), "t")
		require.Equal(t, tc.ok, ok, tc.schema)
		if ok {
			require.JSONEq(t, tc.want, string(got), tc.schema)
		}
	}
	// The first tool whose schema cannot be filled is skipped.
	bad := modelport.ToolSpec{ToolID: "tool.bad", Name: "bad", InputSchema: json.RawMessage(`{"type":"object","properties":{"x":{"type":"weird"}},"required":["x"]}`)}
	r, _ := New(0).Chat(context.Background(), providers.ChatRequest{Messages: []modelport.Message{{Role: "user", Content: "x"}}, Tools: []modelport.ToolSpec{bad, echo}})
	require.Equal(t, "tool.echo", r.ToolCalls[0].ToolID)
}

func TestStreamMatchesChat(t *testing.T) {
	t.Parallel()
	p := New(0)
	req := providers.ChatRequest{Messages: []modelport.Message{{Role: "user", Content: "one two three"}}}
	var b strings.Builder
	resp, err := p.ChatStream(context.Background(), req, func(d providers.Delta) error { b.WriteString(d.Content); return nil })
	require.NoError(t, err)
	require.Equal(t, "Echo: one two three", b.String())
	require.Equal(t, b.String(), resp.Message.Content)
}

func TestEmbeddings(t *testing.T) {
	t.Parallel()
	p := New(32)
	r, err := p.Embed(context.Background(), providers.EmbedRequest{Texts: []string{"the cat sat", "the cat sat", "a cat sat", "quantum chromodynamics"}})
	require.NoError(t, err)
	require.Len(t, r.Vectors[0], 32)
	require.Equal(t, r.Vectors[0], r.Vectors[1])
	var norm float64
	for _, v := range r.Vectors[0] {
		norm += float64(v) * float64(v)
	}
	require.InDelta(t, 1, math.Sqrt(norm), 1e-5)
	require.Greater(t, dot(r.Vectors[0], r.Vectors[2]), dot(r.Vectors[0], r.Vectors[3]))
	require.Equal(t, make([]float32, 8), Project("", 8))
}

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// TestNamedToolsAreCalledInOrder: a user message naming offered tools by
// id gets one call of each, in the order named; a longer id does not
// match a shorter one; the answer joins the results (MCP content too).
func TestNamedToolsAreCalledInOrder(t *testing.T) {
	t.Parallel()
	p := New(0)
	search := modelport.ToolSpec{ToolID: "mcp.memory.search_nodes", Name: "mcp_memory_search_nodes",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"query":{"type":"string"}},"required":["query"]}`)}
	mcpEcho := modelport.ToolSpec{ToolID: "mcp.everything.echo", Name: "mcp_everything_echo",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"message":{"type":"string"}},"required":["message"]}`)}
	offered := []modelport.ToolSpec{echo, search, mcpEcho}
	text := "call mcp.everything.echo, then mcp.memory.search_nodes."
	msgs := []modelport.Message{{Role: "user", Content: text}}
	r, err := p.Chat(context.Background(), providers.ChatRequest{Messages: msgs, Tools: offered})
	require.NoError(t, err)
	require.Len(t, r.ToolCalls, 2)
	require.Equal(t, "mcp.everything.echo", r.ToolCalls[0].ToolID)
	require.JSONEq(t, `{"message":"`+text+`"}`, string(r.ToolCalls[0].Arguments))
	require.Equal(t, "mcp.memory.search_nodes", r.ToolCalls[1].ToolID)
	require.NotEqual(t, r.ToolCalls[0].ID, r.ToolCalls[1].ID)
	require.Equal(t, "tool_calls", r.FinishReason)

	msgs = append(msgs, modelport.Message{Role: "assistant", ToolCalls: r.ToolCalls},
		modelport.Message{Role: "tool", ToolCallID: r.ToolCalls[0].ID, Content: `{"content":[{"type":"text","text":"Echo: hi"}]}`},
		modelport.Message{Role: "tool", ToolCallID: r.ToolCalls[1].ID, Content: `{"content":[{"type":"text","text":"{\"entities\":[]}"}]}`})
	r2, err := p.Chat(context.Background(), providers.ChatRequest{Messages: msgs, Tools: offered})
	require.NoError(t, err)
	require.Empty(t, r2.ToolCalls)
	require.Equal(t, `Echo: Echo: hi; {"entities":[]}`, r2.Message.Content)

	for _, miss := range []string{"mcp.everything.echoes please", "xmcp.everything.echo", "mcp.everything.echo.more"} {
		r, _ := p.Chat(context.Background(), providers.ChatRequest{Messages: []modelport.Message{{Role: "user", Content: miss}},
			Tools: offered})
		require.Len(t, r.ToolCalls, 1, miss)
		require.Equal(t, "tool.echo", r.ToolCalls[0].ToolID, "%q names no tool: the first offered one is called", miss)
	}
}
