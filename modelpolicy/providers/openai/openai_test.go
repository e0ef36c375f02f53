package openai

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
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		fn(w, r, body)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestChatWireFormat(t *testing.T) {
	t.Parallel()
	var got map[string]any
	var authz string
	ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		require.Equal(t, "/v1/chat/completions", r.URL.Path)
		got, authz = body, r.Header.Get("Authorization")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_9","type":"function","function":{"name":"tool_echo","arguments":"{\"text\":\"hi\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}`)
	})
	p := New(Config{Name: "vllm", BaseURL: ts.URL + "/v1/", APIKey: "sk-test"})
	temp := 0.2
	resp, err := p.Chat(context.Background(), providers.ChatRequest{Model: "llama", Temperature: &temp, MaxOutputTokens: 64, ToolChoice: "tool.echo",
		Messages: []modelport.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"},
			{Role: "assistant", ToolCalls: []modelport.ToolCall{{ID: "c0", Name: "tool.echo", Arguments: json.RawMessage(`{"text":"x"}`)}}},
			{Role: "tool", ToolCallID: "c0", Content: "x"}},
		Tools: []modelport.ToolSpec{echoSpec}})
	require.NoError(t, err)
	require.Equal(t, "Bearer sk-test", authz)
	require.Equal(t, "llama", got["model"])
	require.EqualValues(t, 64, got["max_tokens"])
	require.Equal(t, "tool_echo", dig(got, "tools", 0, "function", "name"))
	require.Equal(t, "tool_echo", dig(got, "tool_choice", "function", "name"))
	require.Nil(t, dig(got, "messages", 2, "content"))
	require.Equal(t, `{"text":"x"}`, dig(got, "messages", 2, "tool_calls", 0, "function", "arguments"))
	require.Equal(t, "c0", dig(got, "messages", 3, "tool_call_id"))
	require.Len(t, resp.ToolCalls, 1)
	require.Equal(t, "tool.echo", resp.ToolCalls[0].ToolID)
	require.Equal(t, "tool.echo", resp.ToolCalls[0].Name)
	require.JSONEq(t, `{"text":"hi"}`, string(resp.ToolCalls[0].Arguments))
	require.Equal(t, modelport.Usage{InputTokens: 12, OutputTokens: 5, TotalTokens: 17}, resp.Usage)
	require.Equal(t, "tool_calls", resp.FinishReason)
}

func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func TestChatStream(t *testing.T) {
	t.Parallel()
	var got map[string]any
	ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		got = body
		w.Header().Set("Content-Type", "text/event-stream")
		chunks := []string{
			`{"id":"1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
			`{"id":"1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}`,
			`{"id":"1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}`,
			`{"id":"1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"tool_echo","arguments":""}}]},"finish_reason":null}]}`,
			`{"id":"1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"te"}}]},"finish_reason":null}]}`,
			`{"id":"1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"xt\":\"a\"}"}}]},"finish_reason":"tool_calls"}]}`,
			`{"id":"1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`,
		}
		for _, c := range chunks {
			fmt.Fprintf(w, "data: %s\n\n", c)
			w.(http.Flusher).Flush()
		}
		fmt.Fprint(w, ": keep-alive\n\ndata: [DONE]\n\n")
	})
	p := New(Config{BaseURL: ts.URL + "/v1"})
	var text strings.Builder
	var deltas int
	resp, err := p.ChatStream(context.Background(), providers.ChatRequest{Model: "m", Tools: []modelport.ToolSpec{echoSpec},
		Messages: []modelport.Message{{Role: "user", Content: "hi"}}}, func(d providers.Delta) error {
		deltas++
		text.WriteString(d.Content)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, true, got["stream"])
	require.Equal(t, true, dig(got, "stream_options", "include_usage"))
	require.Equal(t, "Hello", text.String())
	require.Equal(t, "Hello", resp.Message.Content)
	require.Equal(t, 5, deltas)
	require.Len(t, resp.ToolCalls, 1)
	require.Equal(t, "call_1", resp.ToolCalls[0].ID)
	require.Equal(t, "tool.echo", resp.ToolCalls[0].ToolID)
	require.JSONEq(t, `{"text":"a"}`, string(resp.ToolCalls[0].Arguments))
	require.EqualValues(t, 13, resp.Usage.TotalTokens)
	require.False(t, resp.Usage.Estimated)
}

func TestStreamWithoutUsageIsEstimated(t *testing.T) {
	t.Parallel()
	ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"abcdefgh\"}}]}\n\ndata: [DONE]\n\n")
	})
	p := New(Config{BaseURL: ts.URL, NoStreamUsage: true})
	resp, err := p.ChatStream(context.Background(), providers.ChatRequest{Messages: []modelport.Message{{Role: "user", Content: "hi"}}},
		func(providers.Delta) error { return nil })
	require.NoError(t, err)
	require.True(t, resp.Usage.Estimated)
	require.EqualValues(t, 2, resp.Usage.OutputTokens)
}

func TestEmbeddings(t *testing.T) {
	t.Parallel()
	ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		require.Equal(t, "/v1/embeddings", r.URL.Path)
		require.Equal(t, []any{"a", "b"}, body["input"])
		_, _ = io.WriteString(w, `{"object":"list","data":[{"object":"embedding","index":1,"embedding":[0.3,0.4]},{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"e","usage":{"prompt_tokens":2,"total_tokens":2}}`)
	})
	p := New(Config{BaseURL: ts.URL + "/v1"})
	resp, err := p.Embed(context.Background(), providers.EmbedRequest{Model: "e", Texts: []string{"a", "b"}})
	require.NoError(t, err)
	require.Equal(t, [][]float32{{0.1, 0.2}, {0.3, 0.4}}, resp.Vectors)
	require.EqualValues(t, 2, resp.Usage.InputTokens)
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		code   errs.Code
	}{{429, errs.DependencyUnavailable}, {500, errs.DependencyUnavailable}, {401, errs.DependencyUnavailable},
		{400, errs.InvalidRequest}, {504, errs.Timeout}} {
		ts := server(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, `{"error":{"message":"upstream says no","type":"x"}}`)
		})
		_, err := New(Config{BaseURL: ts.URL}).Chat(context.Background(), providers.ChatRequest{})
		require.Equal(t, tc.code, errs.CodeOf(err), "status %d", tc.status)
		require.Contains(t, errs.As(err).Message, "upstream says no")
	}
	_, err := New(Config{BaseURL: "http://127.0.0.1:1"}).Chat(context.Background(), providers.ChatRequest{})
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err))
	require.Error(t, New(Config{BaseURL: "http://127.0.0.1:1"}).Health(context.Background()))
	ok := server(t, func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		require.Equal(t, "/v1/models", r.URL.Path)
		_, _ = io.WriteString(w, `{"data":[]}`)
	})
	require.NoError(t, New(Config{BaseURL: ok.URL + "/v1"}).Health(context.Background()))
	// A malformed answer is dependency_unavailable.
	bad := server(t, func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		_, _ = io.WriteString(w, `{"choices":`)
	})
	_, err = New(Config{BaseURL: bad.URL}).Chat(context.Background(), providers.ChatRequest{})
	require.Equal(t, errs.DependencyUnavailable, errs.CodeOf(err))
}
