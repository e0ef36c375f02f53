package modelpolicy

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

var fnEcho = map[string]any{"type": "function", "function": map[string]any{"name": "echo", "description": "echo text",
	"parameters": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}, "required": []string{"text"}}}}

func TestChatCompletions(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	r := b.do("POST", "/v1/chat/completions", "tnt_a", map[string]any{"model": "tier:fast",
		"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "ping me at a@b.io"}}}}})
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "chat.completion", r.body["object"])
	require.True(t, strings.HasPrefix(r.body["id"].(string), "chatcmpl-"))
	require.Equal(t, "Echo: ping me at [REDACTED:email]", dig(r.body, "choices", 0, "message", "content"))
	require.Equal(t, "stop", dig(r.body, "choices", 0, "finish_reason"))
	require.NotNil(t, dig(r.body, "usage", "total_tokens"))
	require.Equal(t, "redacted", dig(r.body, "agentos", "policy_outcome", "decision"))
	require.Equal(t, "redacted", r.header.Get("X-AgentOS-Policy-Decision"))
	require.Equal(t, "builtin", r.header.Get("X-AgentOS-Backend"))

	// Tools: a tool call first, then the answer from the tool result.
	r = b.do("POST", "/v1/chat/completions", "tnt_a", map[string]any{"model": "builtin/echo-fast",
		"messages": []any{map[string]any{"role": "user", "content": "hi"}}, "tools": []any{fnEcho}})
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "tool_calls", dig(r.body, "choices", 0, "finish_reason"))
	require.Nil(t, dig(r.body, "choices", 0, "message", "content"))
	call := dig(r.body, "choices", 0, "message", "tool_calls", 0).(map[string]any)
	require.Equal(t, "echo", dig(call, "function", "name"))
	require.JSONEq(t, `{"text":"hi"}`, dig(call, "function", "arguments").(string))
	r = b.do("POST", "/v1/chat/completions", "tnt_a", map[string]any{"model": "echo-fast", "tools": []any{fnEcho},
		"messages": []any{map[string]any{"role": "user", "content": "hi"},
			map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{call}},
			map[string]any{"role": "tool", "tool_call_id": call["id"], "content": `{"text":"hi"}`}}})
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "Echo: hi", dig(r.body, "choices", 0, "message", "content"))

	for _, tc := range []struct {
		body  any
		field string
	}{
		{map[string]any{"messages": []any{}}, "model"},
		{map[string]any{"model": "tier:fast", "messages": []any{}}, "messages"},
		{map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": "x"}}, "tool_choice": "sometimes"}, "tool_choice"},
		{map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": "x"}}, "max_tokens": -1}, "max_tokens"},
		{map[string]any{"model": "tier:fast", "messages": []any{map[string]any{"role": "user", "content": 7}}}, "messages[0].content"},
	} {
		r = b.do("POST", "/v1/chat/completions", "tnt_a", tc.body)
		require.Equal(t, 400, r.status, string(r.raw))
		require.Equal(t, tc.field, dig(r.body, "error", "details", "field"), string(r.raw))
	}
}

func readStream(t *testing.T, b *bundle, body any) (chunks []map[string]any, done bool, resp *http.Response) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", b.url+"/v1/chat/completions", strings.NewReader(string(raw)))
	req.Header.Set("X-Test-Tenant", "tnt_a")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		data := strings.TrimPrefix(line, "data: ")
		if data == "[DONE]" {
			done = true
			continue
		}
		var c map[string]any
		require.NoError(t, json.Unmarshal([]byte(data), &c))
		chunks = append(chunks, c)
	}
	return chunks, done, resp
}

func TestChatCompletionsStream(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	chunks, done, resp := readStream(t, b, map[string]any{"model": "tier:fast", "stream": true,
		"stream_options": map[string]any{"include_usage": true},
		"messages":       []any{map[string]any{"role": "user", "content": "stream this please"}}})
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.True(t, done)
	var text strings.Builder
	var finish any
	var usage any
	for _, c := range chunks {
		require.Equal(t, "chat.completion.chunk", c["object"])
		if s, ok := dig(c, "choices", 0, "delta", "content").(string); ok {
			text.WriteString(s)
		}
		if f := dig(c, "choices", 0, "finish_reason"); f != nil {
			finish = f
		}
		if u := c["usage"]; u != nil {
			usage = u
		}
	}
	require.Equal(t, "Echo: stream this please", text.String())
	require.Equal(t, "stop", finish)
	require.NotNil(t, usage)
	require.Equal(t, "assistant", dig(chunks[0], "choices", 0, "delta", "role"))

	// Tool calls stream as a tool_calls delta.
	chunks, done, _ = readStream(t, b, map[string]any{"model": "tier:fast", "stream": true, "tools": []any{fnEcho},
		"messages": []any{map[string]any{"role": "user", "content": "x"}}})
	require.True(t, done)
	var sawCall bool
	for _, c := range chunks {
		if tc := dig(c, "choices", 0, "delta", "tool_calls", 0); tc != nil {
			sawCall = true
			require.Equal(t, "echo", dig(tc, "function", "name"))
			require.EqualValues(t, 0, dig(tc, "index"))
		}
	}
	require.True(t, sawCall)

	// An error before streaming starts is a plain envelope.
	raw := b.do("POST", "/v1/chat/completions", "tnt_a", map[string]any{"model": "nope/none", "stream": true,
		"messages": []any{map[string]any{"role": "user", "content": "x"}}})
	require.Equal(t, 404, raw.status)
}

func TestEmbeddingsEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	r := b.do("POST", "/v1/embeddings", "tnt_a", map[string]any{"model": "builtin/embed-small", "input": "hello"})
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "list", r.body["object"])
	require.Len(t, dig(r.body, "data", 0, "embedding"), 64)
	r = b.do("POST", "/v1/embeddings", "tnt_a", map[string]any{"model": "tier:embed", "input": []string{"a", "b"}, "encoding_format": "base64"})
	require.Equal(t, 200, r.status, string(r.raw))
	require.IsType(t, "", dig(r.body, "data", 1, "embedding"))
	r = b.do("POST", "/v1/embeddings", "tnt_a", map[string]any{"model": "tier:embed", "input": 5})
	require.Equal(t, 400, r.status)
	require.Equal(t, "input", dig(r.body, "error", "details", "field"))
	r = b.do("POST", "/v1/embeddings", "tnt_a", map[string]any{"model": "tier:fast", "input": "x"})
	require.Equal(t, 403, r.status, "no embed model in the fast tier: %s", r.raw)
}

// The OpenAI base URL serves models in OpenAI's list and object shapes;
// retrieving a model the tenant may not use is as unknown as a missing one.
func TestOpenAIBaseURLModels(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_all"))
	b.addTenant(tenant("tnt_fast", func(t *store.Tenant) { t.Entitlements.ModelTiersAllowed = []string{"fast"} }))

	r := b.do("GET", "/openai/v1/models", "tnt_all", nil)
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "list", r.body["object"])
	require.NotContains(t, r.body, "models", "OpenAI's shape only")
	data := r.body["data"].([]any)
	require.NotEmpty(t, data)
	ids := []string{}
	for _, d := range data {
		m := d.(map[string]any)
		require.Equal(t, "model", m["object"])
		require.Equal(t, "builtin", m["owned_by"])
		require.Greater(t, m["created"].(float64), 0.0)
		ids = append(ids, m["id"].(string))
	}
	require.Contains(t, ids, "builtin/echo-balanced")

	r = b.do("GET", "/openai/v1/models/builtin/echo-balanced", "tnt_all", nil)
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, map[string]any{"id": "builtin/echo-balanced", "object": "model", "created": data[0].(map[string]any)["created"], "owned_by": "builtin"}, r.body)

	for _, c := range []struct{ tenant, id string }{{"tnt_all", "builtin/nope"}, {"tnt_fast", "builtin/echo-balanced"}} {
		r = b.do("GET", "/openai/v1/models/"+c.id, c.tenant, nil)
		require.Equal(t, 404, r.status, string(r.raw))
		require.Equal(t, "not_found", errCode(r))
		require.Equal(t, "not_found_error", dig(r.body, "error", "type"))
		require.Equal(t, "model", dig(r.body, "error", "param"))
	}

	// /v1/models keeps its own shape.
	r = b.do("GET", "/v1/models", "tnt_all", nil)
	require.Equal(t, 200, r.status)
	require.Contains(t, r.body, "models")

	// Chat and embeddings under the base URL.
	r = b.do("POST", "/openai/v1/chat/completions", "tnt_all", map[string]any{"model": "tier:fast", "messages": []any{user("hi")}})
	require.Equal(t, 200, r.status, string(r.raw))
	require.Equal(t, "chat.completion", r.body["object"])
	r = b.do("POST", "/openai/v1/embeddings", "tnt_all", map[string]any{"model": "tier:embed", "input": "hi"})
	require.Equal(t, 200, r.status, string(r.raw))

	// A wrong method on a known path is 405 with Allow.
	r = b.do("DELETE", "/openai/v1/models", "tnt_all", nil)
	require.Equal(t, 405, r.status, string(r.raw))
	require.Equal(t, "GET, HEAD", r.header.Get("Allow"))
	require.Equal(t, "method_not_allowed", errCode(r))
	r = b.do("GET", "/v1/chat/completions", "", nil)
	require.Equal(t, 405, r.status, "checked before authentication")
	require.Equal(t, "POST", r.header.Get("Allow"))
}
