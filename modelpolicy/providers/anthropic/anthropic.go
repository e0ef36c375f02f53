// Package anthropic is the model provider for Anthropic's Messages API:
// POST {base}/v1/messages, whole and streamed (SSE events message_start,
// content_block_start/delta/stop, message_delta, message_stop), with tool
// use. Anthropic has no embeddings. BaseURL defaults to
// https://api.anthropic.com.
package anthropic

import (
	"bytes"
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

// APIVersion is the anthropic-version header sent on every call.
const APIVersion = "2023-06-01"

// Config configures an Anthropic backend.
type Config struct {
	Name    string
	BaseURL string // default https://api.anthropic.com
	APIKey  string
	Headers map[string]string
	// HTTPClient defaults to outbound.ModelClient(outbound.ModelDefaults()).
	HTTPClient *http.Client
	// DefaultMaxTokens is sent when the request sets none (the API requires
	// max_tokens; default 1024).
	DefaultMaxTokens int
}

// Provider is an Anthropic backend.
type Provider struct{ cfg Config }

var _ providers.Provider = (*Provider)(nil)

// New returns a provider for cfg.
func New(cfg Config) *Provider {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.anthropic.com"
	}
	cfg.BaseURL = strings.TrimSuffix(strings.TrimRight(cfg.BaseURL, "/"), "/v1")
	if cfg.Name == "" {
		cfg.Name = "anthropic"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = outbound.ModelClient(outbound.ModelDefaults())
	}
	if cfg.DefaultMaxTokens <= 0 {
		cfg.DefaultMaxTokens = 1024
	}
	return &Provider{cfg: cfg}
}

// Kind returns "anthropic".
func (p *Provider) Kind() string { return "anthropic" }

type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   string          `json:"content,omitempty"`
}

type message struct {
	Role    string  `json:"role"`
	Content []block `json:"content"`
}

type tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

type response struct {
	Content    []block `json:"content"`
	StopReason string  `json:"stop_reason"`
	Usage      usage   `json:"usage"`
}

type toolMap map[string]modelport.ToolSpec

func (p *Provider) body(req providers.ChatRequest, stream bool) (map[string]any, toolMap) {
	tm := toolMap{}
	var tools []tool
	for _, t := range req.Tools {
		name := providers.WireName(t.Name)
		schema := t.InputSchema
		if len(schema) == 0 {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		tm[name] = t
		tools = append(tools, tool{Name: name, Description: t.Description, InputSchema: schema})
	}
	var system []string
	var msgs []message
	add := func(role string, b block) {
		if n := len(msgs); n > 0 && msgs[n-1].Role == role {
			msgs[n-1].Content = append(msgs[n-1].Content, b)
			return
		}
		msgs = append(msgs, message{Role: role, Content: []block{b}})
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "system":
			system = append(system, m.Content)
		case "tool":
			add("user", block{Type: "tool_result", ToolUseID: m.ToolCallID, Content: m.Content})
		case "assistant":
			if m.Content != "" {
				add("assistant", block{Type: "text", Text: m.Content})
			}
			for _, tc := range m.ToolCalls {
				in := tc.Arguments
				if len(in) == 0 || !json.Valid(in) || !bytes.HasPrefix(bytes.TrimSpace(in), []byte("{")) {
					in = json.RawMessage(`{}`)
				}
				add("assistant", block{Type: "tool_use", ID: tc.ID, Name: providers.WireName(tc.Name), Input: in})
			}
		default:
			add("user", block{Type: "text", Text: m.Content})
		}
	}
	maxTokens := req.MaxOutputTokens
	if maxTokens <= 0 {
		maxTokens = p.cfg.DefaultMaxTokens
	}
	b := map[string]any{"model": req.Model, "messages": msgs, "max_tokens": maxTokens}
	if len(system) > 0 {
		b["system"] = strings.Join(system, "\n\n")
	}
	if len(tools) > 0 {
		b["tools"] = tools
		switch req.ToolChoice {
		case "", "auto":
		case "none":
			b["tool_choice"] = map[string]string{"type": "none"}
		case "required":
			b["tool_choice"] = map[string]string{"type": "any"}
		default:
			b["tool_choice"] = map[string]string{"type": "tool", "name": providers.WireName(req.ToolChoice)}
		}
	}
	if req.Temperature != nil {
		b["temperature"] = *req.Temperature
	}
	if req.TopP != nil {
		b["top_p"] = *req.TopP
	}
	if stream {
		b["stream"] = true
	}
	return b, tm
}

func (p *Provider) headers(req *http.Request) {
	if p.cfg.APIKey != "" {
		req.Header.Set("x-api-key", p.cfg.APIKey)
	}
	req.Header.Set("anthropic-version", APIVersion)
	for k, v := range p.cfg.Headers {
		req.Header.Set(k, v)
	}
}

func (p *Provider) post(ctx context.Context, body any, accept string) (*http.Response, error) {
	resp, err := providers.PostJSON(ctx, p.cfg.HTTPClient, p.cfg.Name, p.cfg.BaseURL+"/v1/messages", body, accept, p.headers)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := string(raw)
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		status := resp.StatusCode
		if status == 529 { // overloaded
			status = http.StatusServiceUnavailable
		}
		return nil, providers.StatusError(p.cfg.Name, status, msg)
	}
	return resp, nil
}

func (p *Provider) result(blocks []block, tm toolMap) (modelport.Message, []modelport.ToolCall) {
	msg := modelport.Message{Role: "assistant"}
	var calls []modelport.ToolCall
	var text []string
	for _, b := range blocks {
		switch b.Type {
		case "text":
			text = append(text, b.Text)
		case "tool_use":
			call := modelport.ToolCall{ID: b.ID, Name: b.Name, Arguments: providers.ArgumentsJSON(string(b.Input))}
			if t, ok := tm[b.Name]; ok {
				call.ToolID, call.Name = t.ToolID, t.Name
			}
			calls = append(calls, call)
		}
	}
	msg.Content = strings.Join(text, "")
	msg.ToolCalls = calls
	return msg, calls
}

func finish(stop string) string {
	switch stop {
	case "tool_use":
		return "tool_calls"
	case "max_tokens":
		return "length"
	}
	return "stop"
}

// Chat calls the Messages API.
func (p *Provider) Chat(ctx context.Context, req providers.ChatRequest) (providers.ChatResponse, error) {
	body, tm := p.body(req, false)
	resp, err := p.post(ctx, body, "application/json")
	if err != nil {
		return providers.ChatResponse{}, err
	}
	defer providers.DrainClose(resp.Body)
	var r response
	if err := json.NewDecoder(io.LimitReader(resp.Body, 32<<20)).Decode(&r); err != nil {
		if ctx.Err() != nil {
			return providers.ChatResponse{}, providers.TransportError(ctx, p.cfg.Name, err)
		}
		return providers.ChatResponse{}, providers.BadResponse(p.cfg.Name, err)
	}
	msg, calls := p.result(r.Content, tm)
	out := providers.ChatResponse{Message: msg, ToolCalls: calls, FinishReason: finish(r.StopReason)}
	out.Usage = modelport.Usage{InputTokens: r.Usage.InputTokens, OutputTokens: r.Usage.OutputTokens,
		TotalTokens: r.Usage.InputTokens + r.Usage.OutputTokens}
	return out, nil
}

type streamEvent struct {
	Type    string `json:"type"`
	Index   int    `json:"index"`
	Message *struct {
		Usage usage `json:"usage"`
	} `json:"message"`
	ContentBlock *block `json:"content_block"`
	Delta        *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *usage `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// ChatStream calls the Messages API with stream:true.
func (p *Provider) ChatStream(ctx context.Context, req providers.ChatRequest, onDelta func(providers.Delta) error) (providers.ChatResponse, error) {
	body, tm := p.body(req, true)
	resp, err := p.post(ctx, body, "text/event-stream")
	if err != nil {
		return providers.ChatResponse{}, err
	}
	defer resp.Body.Close()
	var asm providers.Assembler
	var u usage
	stop := ""
	done := false
	toolIdx := map[int]int{} // content block index -> tool call index
	var cbErr error
	errDone := fmt.Errorf("done")
	err = providers.ReadSSE(resp.Body, func(se providers.SSEEvent) error {
		if strings.TrimSpace(se.Data) == "" {
			return nil
		}
		var ev streamEvent
		if err := json.Unmarshal([]byte(se.Data), &ev); err != nil {
			return providers.BadResponse(p.cfg.Name, err)
		}
		emit := func(d providers.Delta) error {
			asm.Add(d)
			cbErr = onDelta(d)
			return cbErr
		}
		switch ev.Type {
		case "message_start":
			if ev.Message != nil {
				u.InputTokens = ev.Message.Usage.InputTokens
				u.OutputTokens = ev.Message.Usage.OutputTokens
			}
		case "content_block_start":
			if ev.ContentBlock != nil && ev.ContentBlock.Type == "tool_use" {
				i := len(toolIdx)
				toolIdx[ev.Index] = i
				name := ev.ContentBlock.Name
				if t, ok := tm[name]; ok {
					name = t.Name
				}
				return emit(providers.Delta{ToolCall: &providers.ToolCallDelta{Index: i, ID: ev.ContentBlock.ID, Name: name}})
			}
			if ev.ContentBlock != nil && ev.ContentBlock.Type == "text" && ev.ContentBlock.Text != "" {
				return emit(providers.Delta{Content: ev.ContentBlock.Text})
			}
		case "content_block_delta":
			if ev.Delta == nil {
				return nil
			}
			switch ev.Delta.Type {
			case "text_delta":
				return emit(providers.Delta{Content: ev.Delta.Text})
			case "input_json_delta":
				if i, ok := toolIdx[ev.Index]; ok {
					return emit(providers.Delta{ToolCall: &providers.ToolCallDelta{Index: i, Arguments: ev.Delta.PartialJSON}})
				}
			}
		case "message_delta":
			if ev.Delta != nil && ev.Delta.StopReason != "" {
				stop = ev.Delta.StopReason
			}
			if ev.Usage != nil {
				u.OutputTokens = ev.Usage.OutputTokens
				if ev.Usage.InputTokens > 0 {
					u.InputTokens = ev.Usage.InputTokens
				}
			}
		case "message_stop":
			done = true
			return errDone
		case "error":
			msg := "stream error"
			if ev.Error != nil {
				msg = ev.Error.Type + ": " + ev.Error.Message
			}
			return providers.StatusError(p.cfg.Name, http.StatusBadGateway, msg)
		}
		return nil
	})
	if err != nil && err != errDone {
		if cbErr != nil && err == cbErr {
			return providers.ChatResponse{}, err
		}
		if _, ok := err.(*errs.Error); ok {
			return providers.ChatResponse{}, err
		}
		return providers.ChatResponse{}, providers.TransportError(ctx, p.cfg.Name, err)
	}
	if !done {
		if ctx.Err() != nil {
			return providers.ChatResponse{}, providers.TransportError(ctx, p.cfg.Name, ctx.Err())
		}
		return providers.ChatResponse{}, providers.BadResponse(p.cfg.Name, fmt.Errorf("stream ended without message_stop"))
	}
	msg, calls := asm.Result()
	for i := range calls {
		for _, t := range tm {
			if t.Name == calls[i].Name {
				calls[i].ToolID = t.ToolID
			}
		}
	}
	out := providers.ChatResponse{Message: msg, ToolCalls: calls, FinishReason: finish(stop)}
	out.Usage = modelport.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, TotalTokens: u.InputTokens + u.OutputTokens}
	return out, nil
}

// Embed is not offered by Anthropic.
func (p *Provider) Embed(context.Context, providers.EmbedRequest) (providers.EmbedResponse, error) {
	return providers.EmbedResponse{}, errs.E(errs.InvalidRequest, "backend %s (anthropic) has no embeddings", p.cfg.Name)
}

// Health calls GET {base}/v1/models.
func (p *Provider) Health(ctx context.Context) error {
	return providers.ProbeHealth(ctx, p.cfg.HTTPClient, p.cfg.Name, p.cfg.BaseURL+"/v1/models", p.headers)
}
