package anthropic

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

var echoSpec = modelport.ToolSpec{ToolID: "tool.echo", Name: "tool.echo", InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`)}

func server(t *testing.T, fn func(w http.ResponseWriter, r *http.Request, body map[string]any)) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every backend request carries a W3C traceparent.
		require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`, r.Header.Get("traceparent"))
		require.Equal(t, "/v1/messages", r.URL.Path)
		require.Equal(t, APIVersion, r.Header.Get("anthropic-version"))
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		fn(w, r, body)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestMessagesWireFormat(t *testing.T) {
	t.Parallel()
	var got map[string]any
	var key string
	ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		got, key = body, r.Header.Get("x-api-key")
		_, _ = io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"Let me echo."},{"type":"tool_use","id":"toolu_1","name":"tool_echo","input":{"text":"hi"}}],"stop_reason":"tool_use","usage":{"input_tokens":20,"output_tokens":9}}`)
	})
	p := New(Config{BaseURL: ts.URL + "/v1", APIKey: "k"})
	resp, err := p.Chat(context.Background(), providers.ChatRequest{Model: "claude", ToolChoice: "required", Tools: []modelport.ToolSpec{echoSpec},
		Messages: []modelport.Message{{Role: "system", Content: "sys"}, {Role: "user", Content: "hi"},
			{Role: "assistant", ToolCalls: []modelport.ToolCall{{ID: "toolu_0", Name: "tool.echo", Arguments: json.RawMessage(`{"text":"x"}`)}}},
			{Role: "tool", ToolCallID: "toolu_0", Content: "x"}}})
	require.NoError(t, err)
	require.Equal(t, "k", key)
	require.Equal(t, "sys", got["system"])
	require.EqualValues(t, 1024, got["max_tokens"])
	require.Equal(t, "any", got["tool_choice"].(map[string]any)["type"])
	msgs := got["messages"].([]any)
	require.Len(t, msgs, 3)
	require.Equal(t, "tool_use", msgs[1].(map[string]any)["content"].([]any)[0].(map[string]any)["type"])
	tr := msgs[2].(map[string]any)
	require.Equal(t, "user", tr["role"])
	require.Equal(t, "toolu_0", tr["content"].([]any)[0].(map[string]any)["tool_use_id"])
	require.Equal(t, "Let me echo.", resp.Message.Content)
	require.Equal(t, "tool.echo", resp.ToolCalls[0].ToolID)
	require.JSONEq(t, `{"text":"hi"}`, string(resp.ToolCalls[0].Arguments))
	require.Equal(t, "tool_calls", resp.FinishReason)
	require.EqualValues(t, 29, resp.Usage.TotalTokens)
}

func TestMessagesStream(t *testing.T) {
	t.Parallel()
	ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		require.Equal(t, true, body["stream"])
		w.Header().Set("Content-Type", "text/event-stream")
		events := [][2]string{
			{"message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","usage":{"input_tokens":25,"output_tokens":1}}}`},
			{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
			{"ping", `{"type":"ping"}`},
			{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`},
			{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}`},
			{"content_block_stop", `{"type":"content_block_stop","index":0}`},
			{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"tool_echo","input":{}}}`},
			{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"text\": "}}`},
			{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"a\"}"}}`},
			{"content_block_stop", `{"type":"content_block_stop","index":1}`},
			{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":15}}`},
			{"message_stop", `{"type":"message_stop"}`},
		}
		for _, e := range events {
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e[0], e[1])
			w.(http.Flusher).Flush()
		}
	})
	p := New(Config{BaseURL: ts.URL})
	var text strings.Builder
	resp, err := p.ChatStream(context.Background(), providers.ChatRequest{Model: "claude", Tools: []modelport.ToolSpec{echoSpec},
		Messages: []modelport.Message{{Role: "user", Content: "hi"}}}, func(d providers.Delta) error {
		text.WriteString(d.Content)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, "Hello", text.String())
	require.Equal(t, "Hello", resp.Message.Content)
	require.Len(t, resp.ToolCalls, 1)
	require.Equal(t, "toolu_1", resp.ToolCalls[0].ID)
	require.Equal(t, "tool.echo", resp.ToolCalls[0].ToolID)
	require.JSONEq(t, `{"text":"a"}`, string(resp.ToolCalls[0].Arguments))
	require.Equal(t, modelport.Usage{InputTokens: 25, OutputTokens: 15, TotalTokens: 40}, resp.Usage)
	require.Equal(t, "tool_calls", resp.FinishReason)
}

func TestStreamErrorsAndStatus(t *testing.T) {
	t.Parallel()
	ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		fmt.Fprint(w, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
	})
	_, err := New(Config{BaseURL: ts.URL}).ChatStream(context.Background(), providers.ChatRequest{}, func(providers.Delta) error { return nil })
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err))
	require.Contains(t, err.Error(), "Overloaded")

	over := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		w.WriteHeader(529)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
	})
	_, err = New(Config{BaseURL: over.URL}).Chat(context.Background(), providers.ChatRequest{})
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err))

	bad := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		w.WriteHeader(400)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens too large"}}`)
	})
	_, err = New(Config{BaseURL: bad.URL}).Chat(context.Background(), providers.ChatRequest{})
	require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
	require.Contains(t, errs.As(err).Message, "max_tokens too large")

	_, err = New(Config{}).Embed(context.Background(), providers.EmbedRequest{})
	require.Equal(t, errs.InvalidRequest, errs.CodeOf(err))
}
