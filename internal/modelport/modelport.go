// Package modelport is the orchestrator's port to model-policy: chat, embed,
// policy check and model listing, each carrying the caller's Auth Context.
// The types are the canonical wire shapes of CONTRACT §5 (/v1/models:invoke,
// /v1/policy:check), shared by the HTTP client here and the model-policy
// server.
package modelport

import (
	"context"
	"encoding/json"

	"github.com/nexixai/agentos/internal/auth"
)

// Port is what the orchestrator needs from model-policy. Errors are
// *errs.Error: transport failures are dependency_unavailable (retryable),
// and model-policy's own error envelopes keep their code.
type Port interface {
	Chat(ctx context.Context, ac auth.Context, req ChatRequest) (ChatResponse, error)
	Embed(ctx context.Context, ac auth.Context, req EmbedRequest) (EmbedResponse, error)
	PolicyCheck(ctx context.Context, ac auth.Context, req PolicyCheckRequest) (PolicyCheckResult, error)
	ListModels(ctx context.Context, ac auth.Context) ([]Model, error)
}

// Requirements constrain routing.
type Requirements struct {
	MaxLatencyMs     int     `json:"max_latency_ms,omitempty"`
	MaxCostUSD       float64 `json:"max_cost_usd,omitempty"`
	MinContextTokens int     `json:"min_context_tokens,omitempty"`
}

// Message is one chat message.
type Message struct {
	Role       string     `json:"role"` // system, user, assistant, tool
	Content    string     `json:"content"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolSpec describes a tool offered to the model.
type ToolSpec struct {
	ToolID      string          `json:"tool_id"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
}

// ToolCall is a tool call planned by the model.
type ToolCall struct {
	ID        string          `json:"id"`
	ToolID    string          `json:"tool_id"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// Generation holds sampling settings.
type Generation struct {
	Temperature     *float64 `json:"temperature,omitempty"`
	TopP            *float64 `json:"top_p,omitempty"`
	MaxOutputTokens int      `json:"max_output_tokens,omitempty"`
}

// ChatInput is the input of a chat operation.
type ChatInput struct {
	Messages   []Message  `json:"messages"`
	Tools      []ToolSpec `json:"tools,omitempty"`
	ToolChoice string     `json:"tool_choice,omitempty"`
}

// ChatRequest is the request object of /v1/models:invoke for operation chat.
type ChatRequest struct {
	RequestID    string       `json:"request_id"`
	Operation    string       `json:"operation"` // "chat"
	ModelRef     string       `json:"model_ref"`
	Requirements Requirements `json:"requirements"`
	Input        ChatInput    `json:"input"`
	Generation   Generation   `json:"generation"`
	// AgentID and RunID attribute usage; optional.
	AgentID string `json:"agent_id,omitempty"`
	RunID   string `json:"run_id,omitempty"`
}

// Usage counts tokens.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
	// Estimated is true when the backend reported no usage and the counts
	// were estimated (about four characters per token). On the wire it is
	// the response's usage_estimated: the original API's Usage object
	// admits no other properties.
	Estimated bool `json:"-"`
}

// Redaction counts redacted items of one type.
type Redaction struct {
	Type  string `json:"type"`
	Count int    `json:"count"`
}

// PolicyOutcome is the governance result of a call.
type PolicyOutcome struct {
	Decision   string      `json:"decision"` // allowed, blocked, redacted
	Reasons    []string    `json:"reasons"`
	Redactions []Redaction `json:"redactions"`
}

// Route says which backend served a call.
type Route struct {
	Backend      string `json:"backend"`
	Model        string `json:"model"`
	Node         string `json:"node"`
	FallbackUsed bool   `json:"fallback_used"`
}

// ChatOutput is the output of a chat operation.
type ChatOutput struct {
	Type      string     `json:"type"` // "chat"
	Message   Message    `json:"message"`
	ToolCalls []ToolCall `json:"tool_calls"`
}

// ChatResponse is the response object of /v1/models:invoke for chat.
type ChatResponse struct {
	RequestID     string        `json:"request_id"`
	Status        string        `json:"status"`
	Output        ChatOutput    `json:"output"`
	Usage         Usage         `json:"usage"`
	LatencyMs     int64         `json:"latency_ms"`
	PolicyOutcome PolicyOutcome `json:"policy_outcome"`
	Route         Route         `json:"route"`
	// UsageEstimated carries Usage.Estimated on the wire.
	UsageEstimated bool `json:"usage_estimated,omitempty"`
}

// EmbedInput is the input of an embed operation.
type EmbedInput struct {
	Texts          []string `json:"texts"`
	EncodingFormat string   `json:"encoding_format,omitempty"`
}

// EmbedRequest is the request object of /v1/models:invoke for operation embed.
type EmbedRequest struct {
	RequestID    string       `json:"request_id"`
	Operation    string       `json:"operation"` // "embed"
	ModelRef     string       `json:"model_ref"`
	Requirements Requirements `json:"requirements"`
	Input        EmbedInput   `json:"input"`
	AgentID      string       `json:"agent_id,omitempty"`
	RunID        string       `json:"run_id,omitempty"`
}

// Embedding is one vector.
type Embedding struct {
	Index  int       `json:"index"`
	Vector []float32 `json:"vector"`
}

// EmbedOutput is the output of an embed operation.
type EmbedOutput struct {
	Type       string      `json:"type"` // "embedding"
	Embeddings []Embedding `json:"embeddings"`
}

// EmbedResponse is the response object of /v1/models:invoke for embed.
type EmbedResponse struct {
	RequestID     string        `json:"request_id"`
	Status        string        `json:"status"`
	Output        EmbedOutput   `json:"output"`
	Usage         Usage         `json:"usage"`
	LatencyMs     int64         `json:"latency_ms"`
	PolicyOutcome PolicyOutcome `json:"policy_outcome"`
	Route         Route         `json:"route"`
	// UsageEstimated carries Usage.Estimated on the wire.
	UsageEstimated bool `json:"usage_estimated,omitempty"`
}

// Content is text under policy check.
type Content struct {
	Type string `json:"type"` // "text"
	Text string `json:"text"`
}

// PolicyCheckRequest is the policy_check object of /v1/policy:check.
type PolicyCheckRequest struct {
	RequestID string  `json:"request_id"`
	Content   Content `json:"content"`
	Ruleset   string  `json:"ruleset,omitempty"`
	// IncludeContent asks for the redacted text even when the request is
	// in the original API's complete form (request_id and ruleset set),
	// whose PolicyResult admits no content property.
	IncludeContent *bool `json:"include_content,omitempty"`
}

// PolicyCheckResult is the policy_result object of /v1/policy:check.
type PolicyCheckResult struct {
	RequestID  string      `json:"request_id"`
	Decision   string      `json:"decision"`
	Reasons    []string    `json:"reasons"`
	Redactions []Redaction `json:"redactions"`
	Content    *Content    `json:"content,omitempty"`
}

// Model is one entry of GET /v1/models.
type Model struct {
	ModelID             string   `json:"model_id"`
	Provider            string   `json:"provider"`
	Capabilities        []string `json:"capabilities"`
	MaxOutputTokens     int      `json:"max_output_tokens"`
	ContextWindowTokens int      `json:"context_window_tokens"`
	Tiers               []string `json:"tiers"`
}
