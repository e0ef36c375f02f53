// Package providers is model-policy's Provider port: chat (whole or
// streamed) and embeddings against one model backend. Adapters live in
// subpackages named after the wire they speak: builtin (offline,
// deterministic), openai (any OpenAI-compatible endpoint: vLLM, TGI, Ollama,
// llama.cpp server, OpenAI) and anthropic (Messages API).
//
// Errors are *errs.Error. A retryable code (dependency_unavailable, timeout,
// rate_limited, internal_error) lets the router fall back to the next
// backend; invalid_request means the request itself was refused and no
// other backend is tried.
package providers

import (
	"context"
	"encoding/json"

	"github.com/nexixai/agentos/internal/modelport"
)

// ChatRequest is one chat call to a backend. Model is the backend's own
// model name (the catalogue's upstream name).
type ChatRequest struct {
	Model           string
	Messages        []modelport.Message
	Tools           []modelport.ToolSpec
	ToolChoice      string // "", auto, none, required, or a tool name
	Temperature     *float64
	TopP            *float64
	MaxOutputTokens int
}

// ChatResponse is a backend's answer. Usage.Estimated is true when the
// backend reported no usage and the counts are estimates.
type ChatResponse struct {
	Message      modelport.Message // role assistant; Content may be ""
	ToolCalls    []modelport.ToolCall
	Usage        modelport.Usage
	FinishReason string // stop, tool_calls, length
}

// ToolCallDelta is a fragment of a streamed tool call. Index identifies the
// call within the response; ID and Name come with its first fragment.
type ToolCallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

// Delta is one streamed fragment: text content or a tool-call fragment.
type Delta struct {
	Content  string
	ToolCall *ToolCallDelta
}

// EmbedRequest asks for one vector per text.
type EmbedRequest struct {
	Model string
	Texts []string
}

// EmbedResponse holds the vectors in input order.
type EmbedResponse struct {
	Vectors [][]float32
	Usage   modelport.Usage
}

// Provider is one model backend.
type Provider interface {
	// Kind names the adapter: builtin, openai or anthropic.
	Kind() string
	// Chat runs a chat completion.
	Chat(ctx context.Context, req ChatRequest) (ChatResponse, error)
	// ChatStream runs a chat completion, calling onDelta for each fragment
	// as it arrives, and returns the assembled response. An error from
	// onDelta stops the stream and is returned.
	ChatStream(ctx context.Context, req ChatRequest, onDelta func(Delta) error) (ChatResponse, error)
	// Embed computes embeddings; adapters without embeddings return
	// invalid_request.
	Embed(ctx context.Context, req EmbedRequest) (EmbedResponse, error)
	// Health reports whether the backend answers.
	Health(ctx context.Context) error
}

// EstimateTokens estimates the token count of s at about four characters
// per token (at least one token for non-empty text). Used only where a
// backend reports no usage.
func EstimateTokens(s string) int64 {
	if s == "" {
		return 0
	}
	return int64((len([]rune(s)) + 3) / 4)
}

// EstimateMessages estimates the prompt tokens of a conversation with tools:
// content, tool-call arguments and tool schemas, plus a small per-message
// overhead.
func EstimateMessages(msgs []modelport.Message, tools []modelport.ToolSpec) int64 {
	return countMessages(msgs, tools, EstimateTokens)
}

// TokenBound is an upper bound of the tokens of s: byte-level tokenizers
// (BPE over UTF-8 bytes, as the GPT, Llama and Claude families use) never
// make more tokens than bytes, while EstimateTokens can be several times
// short for some scripts. Budgets reserve with it.
func TokenBound(s string) int64 { return int64(len(s)) }

// BoundMessages is EstimateMessages with TokenBound.
func BoundMessages(msgs []modelport.Message, tools []modelport.ToolSpec) int64 {
	return countMessages(msgs, tools, TokenBound)
}

func countMessages(msgs []modelport.Message, tools []modelport.ToolSpec, count func(string) int64) int64 {
	var n int64
	for _, m := range msgs {
		n += 4 + count(m.Content)
		for _, tc := range m.ToolCalls {
			n += count(tc.Name) + count(string(tc.Arguments))
		}
	}
	for _, t := range tools {
		n += count(t.Name) + count(t.Description) + count(string(t.InputSchema))
	}
	return n
}

// Assembler builds a ChatResponse from streamed deltas.
type Assembler struct {
	content []byte
	calls   []modelport.ToolCall
	args    []string
}

// Add folds d into the response being built.
func (a *Assembler) Add(d Delta) {
	a.content = append(a.content, d.Content...)
	if tc := d.ToolCall; tc != nil {
		for len(a.calls) <= tc.Index {
			a.calls = append(a.calls, modelport.ToolCall{})
			a.args = append(a.args, "")
		}
		c := &a.calls[tc.Index]
		if tc.ID != "" {
			c.ID = tc.ID
		}
		if tc.Name != "" {
			c.Name = tc.Name
		}
		a.args[tc.Index] += tc.Arguments
	}
}

// Result returns the assembled message and tool calls. Tool-call arguments
// that are not valid JSON are kept as a JSON string.
func (a *Assembler) Result() (modelport.Message, []modelport.ToolCall) {
	calls := make([]modelport.ToolCall, 0, len(a.calls))
	for i, c := range a.calls {
		if c.Name == "" && c.ID == "" {
			continue
		}
		c.Arguments = ArgumentsJSON(a.args[i])
		calls = append(calls, c)
	}
	msg := modelport.Message{Role: "assistant", Content: string(a.content)}
	if len(calls) > 0 {
		msg.ToolCalls = calls
	}
	return msg, calls
}

// ArgumentsJSON turns a backend's argument string into JSON: valid JSON is
// kept, "" becomes {}, anything else becomes a JSON string.
func ArgumentsJSON(s string) json.RawMessage {
	if s == "" {
		return json.RawMessage(`{}`)
	}
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	b, _ := json.Marshal(s)
	return b
}
