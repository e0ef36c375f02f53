// Package openai is the model provider for any OpenAI-compatible endpoint:
// vLLM, TGI, Ollama, llama.cpp server and OpenAI itself. It speaks
// POST {base}/chat/completions (whole and stream:true SSE, tools and
// tool_calls, usage), POST {base}/embeddings and GET {base}/models for
// health. BaseURL includes the version prefix, e.g. http://127.0.0.1:8000/v1.
package openai

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// Config configures one OpenAI-compatible backend.
type Config struct {
	// Name labels errors (the backend name of the catalogue).
	Name string
	// BaseURL, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1.
	BaseURL string
	// APIKey is sent as a bearer token when set.
	APIKey string
	// Headers are extra request headers.
	Headers map[string]string
	// MaxTokensField is the request field for the output limit: "max_tokens"
	// (default, understood by every server) or "max_completion_tokens".
	MaxTokensField string
	// NoStreamUsage stops sending stream_options.include_usage (for servers
	// that reject it); usage is then estimated.
	NoStreamUsage bool
	// HTTPClient defaults to outbound.ModelClient(outbound.ModelDefaults()):
	// connect, TLS and response-header bounds, no overall timeout (the
	// caller's context bounds calls, streams included).
	HTTPClient *http.Client
}

// Provider is an OpenAI-compatible backend.
type Provider struct{ cfg Config }

var _ providers.Provider = (*Provider)(nil)

// New returns a provider for cfg.
func New(cfg Config) *Provider {
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.Name == "" {
		cfg.Name = "openai"
	}
	if cfg.MaxTokensField == "" {
		cfg.MaxTokensField = "max_tokens"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = outbound.ModelClient(outbound.ModelDefaults())
	}
	return &Provider{cfg: cfg}
}

// Kind returns "openai".
func (p *Provider) Kind() string { return "openai" }

// Wire types of the OpenAI chat API.

type wireFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type wireToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function wireFunction `json:"function"`
}

type wireMessage struct {
	Role       string         `json:"role"`
	Content    *string        `json:"content"`
	ToolCalls  []wireToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type wireTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

type wireUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

type wireChoice struct {
	Index   int          `json:"index"`
	Message *wireMessage `json:"message"`
	Delta   *struct {
		Content   *string        `json:"content"`
		ToolCalls []wireToolCall `json:"tool_calls"`
	} `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

type wireResponse struct {
	Choices []wireChoice `json:"choices"`
	Usage   *wireUsage   `json:"usage"`
	Error   *wireError   `json:"error"`
}

type wireError struct {
	Message string `json:"message"`
	Type    string `json:"type"`
}

// toolMap maps wire function names back to tool specs.
type toolMap map[string]modelport.ToolSpec

func (p *Provider) body(req providers.ChatRequest, stream bool) (map[string]any, toolMap) {
	tm := toolMap{}
	tools := make([]wireTool, 0, len(req.Tools))
	for _, t := range req.Tools {
		var wt wireTool
		wt.Type = "function"
		wt.Function.Name = providers.WireName(t.Name)
		wt.Function.Description = t.Description
		wt.Function.Parameters = t.InputSchema
		if len(wt.Function.Parameters) == 0 {
			wt.Function.Parameters = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		tm[wt.Function.Name] = t
		tools = append(tools, wt)
	}
	msgs := make([]wireMessage, 0, len(req.Messages))
	for _, m := range req.Messages {
		content := m.Content
		wm := wireMessage{Role: m.Role, Content: &content, ToolCallID: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			args := string(tc.Arguments)
			if args == "" {
				args = "{}"
			}
			wm.ToolCalls = append(wm.ToolCalls, wireToolCall{ID: tc.ID, Type: "function",
				Function: wireFunction{Name: providers.WireName(tc.Name), Arguments: args}})
		}
		if len(wm.ToolCalls) > 0 && content == "" {
			wm.Content = nil
		}
		msgs = append(msgs, wm)
	}
	b := map[string]any{"model": req.Model, "messages": msgs}
	if len(tools) > 0 {
		b["tools"] = tools
		switch req.ToolChoice {
		case "", "auto":
		case "none", "required":
			b["tool_choice"] = req.ToolChoice
		default:
			b["tool_choice"] = map[string]any{"type": "function", "function": map[string]string{"name": providers.WireName(req.ToolChoice)}}
		}
	}
	if req.Temperature != nil {
		b["temperature"] = *req.Temperature
	}
	if req.TopP != nil {
		b["top_p"] = *req.TopP
	}
	if req.MaxOutputTokens > 0 {
		b[p.cfg.MaxTokensField] = req.MaxOutputTokens
	}
	if stream {
		b["stream"] = true
		if !p.cfg.NoStreamUsage {
			b["stream_options"] = map[string]bool{"include_usage": true}
		}
	}
	return b, tm
}

func (p *Provider) post(ctx context.Context, path string, body any, accept string) (*http.Response, error) {
	resp, err := providers.PostJSON(ctx, p.cfg.HTTPClient, p.cfg.Name, p.cfg.BaseURL+path, body, accept, p.auth)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, p.statusError(resp)
	}
	return resp, nil
}

func (p *Provider) auth(req *http.Request) {
	if p.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	}
	for k, v := range p.cfg.Headers {
		req.Header.Set(k, v)
	}
}

func (p *Provider) statusError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var we struct {
		Error json.RawMessage `json:"error"`
	}
	msg := string(raw)
	if json.Unmarshal(raw, &we) == nil && len(we.Error) > 0 {
		var obj wireError
		var s string
		if json.Unmarshal(we.Error, &obj) == nil && obj.Message != "" {
			msg = obj.Message
		} else if json.Unmarshal(we.Error, &s) == nil {
			msg = s
		}
	}
	return providers.StatusError(p.cfg.Name, resp.StatusCode, msg)
}

func (p *Provider) toolCalls(wire []wireToolCall, tm toolMap) []modelport.ToolCall {
	var out []modelport.ToolCall
	for _, tc := range wire {
		out = append(out, p.toolCall(tc.ID, tc.Function.Name, tc.Function.Arguments, tm))
	}
	return out
}

func (p *Provider) toolCall(id, wireName, args string, tm toolMap) modelport.ToolCall {
	call := modelport.ToolCall{ID: id, Name: wireName, Arguments: providers.ArgumentsJSON(args)}
	if t, ok := tm[wireName]; ok {
		call.ToolID, call.Name = t.ToolID, t.Name
	}
	return call
}

// Chat runs a non-streaming chat completion.
func (p *Provider) Chat(ctx context.Context, req providers.ChatRequest) (providers.ChatResponse, error) {
	body, tm := p.body(req, false)
	resp, err := p.post(ctx, "/chat/completions", body, "application/json")
	if err != nil {
		return providers.ChatResponse{}, err
	}
	defer providers.DrainClose(resp.Body)
	var wr wireResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(&wr); err != nil {
		if ctx.Err() != nil {
			return providers.ChatResponse{}, providers.TransportError(ctx, p.cfg.Name, err)
		}
		return providers.ChatResponse{}, providers.BadResponse(p.cfg.Name, err)
	}
	if len(wr.Choices) == 0 || wr.Choices[0].Message == nil {
		return providers.ChatResponse{}, providers.BadResponse(p.cfg.Name, fmt.Errorf("no choices"))
	}
	c := wr.Choices[0]
	out := providers.ChatResponse{Message: modelport.Message{Role: "assistant"}, FinishReason: "stop"}
	if c.Message.Content != nil {
		out.Message.Content = *c.Message.Content
	}
	out.ToolCalls = p.toolCalls(c.Message.ToolCalls, tm)
	out.Message.ToolCalls = out.ToolCalls
	if c.FinishReason != nil && *c.FinishReason != "" {
		out.FinishReason = *c.FinishReason
	}
	out.Usage = usageOf(wr.Usage, req, out)
	return out, nil
}

func usageOf(u *wireUsage, req providers.ChatRequest, out providers.ChatResponse) modelport.Usage {
	if u != nil && (u.PromptTokens > 0 || u.CompletionTokens > 0) {
		total := u.TotalTokens
		if total == 0 {
			total = u.PromptTokens + u.CompletionTokens
		}
		return modelport.Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: total}
	}
	in := providers.EstimateMessages(req.Messages, req.Tools)
	o := providers.EstimateTokens(out.Message.Content)
	for _, tc := range out.ToolCalls {
		o += providers.EstimateTokens(tc.Name) + providers.EstimateTokens(string(tc.Arguments))
	}
	return modelport.Usage{InputTokens: in, OutputTokens: o, TotalTokens: in + o, Estimated: true}
}

// ChatStream runs a streaming chat completion (SSE "data:" chunks ending
// with "data: [DONE]").
func (p *Provider) ChatStream(ctx context.Context, req providers.ChatRequest, onDelta func(providers.Delta) error) (providers.ChatResponse, error) {
	body, tm := p.body(req, true)
	resp, err := p.post(ctx, "/chat/completions", body, "text/event-stream")
	if err != nil {
		return providers.ChatResponse{}, err
	}
	defer resp.Body.Close()
	var asm providers.Assembler
	var usage *wireUsage
	finish := "stop"
	done := false
	errStop := fmt.Errorf("stop")
	var cbErr error
	err = providers.ReadSSE(resp.Body, func(ev providers.SSEEvent) error {
		data := strings.TrimSpace(ev.Data)
		if data == "" {
			return nil
		}
		if data == "[DONE]" {
			done = true
			return errStop
		}
		var chunk wireResponse
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return providers.BadResponse(p.cfg.Name, err)
		}
		if chunk.Error != nil {
			return providers.StatusError(p.cfg.Name, http.StatusBadGateway, chunk.Error.Message)
		}
		if chunk.Usage != nil {
			usage = chunk.Usage
		}
		for _, c := range chunk.Choices {
			if c.FinishReason != nil && *c.FinishReason != "" {
				finish = *c.FinishReason
			}
			if c.Delta == nil {
				continue
			}
			if c.Delta.Content != nil && *c.Delta.Content != "" {
				d := providers.Delta{Content: *c.Delta.Content}
				asm.Add(d)
				if cbErr = onDelta(d); cbErr != nil {
					return cbErr
				}
			}
			for i, tc := range c.Delta.ToolCalls {
				idx := i
				if tc.Index != nil {
					idx = *tc.Index
				}
				d := providers.Delta{ToolCall: &providers.ToolCallDelta{Index: idx, ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments}}
				if t, ok := tm[tc.Function.Name]; ok {
					d.ToolCall.Name = t.Name
				}
				asm.Add(d)
				if cbErr = onDelta(d); cbErr != nil {
					return cbErr
				}
			}
		}
		return nil
	})
	if err != nil && err != errStop {
		if cbErr != nil && err == cbErr {
			return providers.ChatResponse{}, err
		}
		if _, ok := err.(*errs.Error); ok {
			return providers.ChatResponse{}, err
		}
		return providers.ChatResponse{}, providers.TransportError(ctx, p.cfg.Name, err)
	}
	if !done && ctx.Err() != nil {
		return providers.ChatResponse{}, providers.TransportError(ctx, p.cfg.Name, ctx.Err())
	}
	msg, calls := asm.Result()
	for i := range calls {
		for _, t := range tm {
			if t.Name == calls[i].Name {
				calls[i].ToolID = t.ToolID
			}
		}
	}
	out := providers.ChatResponse{Message: msg, ToolCalls: calls, FinishReason: finish}
	out.Usage = usageOf(usage, req, out)
	return out, nil
}

// Embed calls POST {base}/embeddings.
func (p *Provider) Embed(ctx context.Context, req providers.EmbedRequest) (providers.EmbedResponse, error) {
	resp, err := p.post(ctx, "/embeddings", map[string]any{"model": req.Model, "input": req.Texts, "encoding_format": "float"}, "application/json")
	if err != nil {
		return providers.EmbedResponse{}, err
	}
	defer providers.DrainClose(resp.Body)
	var wr struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
		Usage *wireUsage `json:"usage"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&wr); err != nil {
		return providers.EmbedResponse{}, providers.BadResponse(p.cfg.Name, err)
	}
	out := providers.EmbedResponse{Vectors: make([][]float32, len(req.Texts))}
	for i, d := range wr.Data {
		idx := d.Index
		if idx < 0 || idx >= len(req.Texts) {
			idx = i
		}
		if idx >= len(req.Texts) {
			return providers.EmbedResponse{}, providers.BadResponse(p.cfg.Name, fmt.Errorf("embedding index %d out of range", d.Index))
		}
		out.Vectors[idx] = d.Embedding
	}
	for i, v := range out.Vectors {
		if v == nil {
			return providers.EmbedResponse{}, providers.BadResponse(p.cfg.Name, fmt.Errorf("no embedding for input %d", i))
		}
	}
	if wr.Usage != nil && wr.Usage.PromptTokens > 0 {
		out.Usage = modelport.Usage{InputTokens: wr.Usage.PromptTokens, TotalTokens: wr.Usage.PromptTokens}
	} else {
		for _, t := range req.Texts {
			out.Usage.InputTokens += providers.EstimateTokens(t)
		}
		out.Usage.TotalTokens, out.Usage.Estimated = out.Usage.InputTokens, true
	}
	return out, nil
}

// Health calls GET {base}/models.
func (p *Provider) Health(ctx context.Context) error {
	return providers.ProbeHealth(ctx, p.cfg.HTTPClient, p.cfg.Name, p.cfg.BaseURL+"/models", p.auth)
}
