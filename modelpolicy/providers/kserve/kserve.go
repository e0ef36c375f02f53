// Package kserve is model-policy's adapter for NVIDIA Triton Inference
// Server and any server of the KServe Open Inference Protocol (v2) that
// serves a text-generation model: the prompt goes in a BYTES tensor
// (text_input) and the answer comes back in another (text_output).
//
//   - Chat: POST {base}/v2/models/{model}/infer. The messages are rendered
//     to one prompt ("<role>: <content>" per line, then "assistant: "):
//     the protocol carries text, not roles. Token counts come from the
//     outputs input_tokens and output_tokens when the model returns them,
//     else they are estimated (Usage.Estimated).
//   - ChatStream: POST {base}/v2/models/{model}/generate_stream (Triton's
//     generate extension, server-sent events each with an incremental
//     text_output); a server without it (404) gets infer, and the whole
//     answer is one fragment.
//   - Tools cannot be offered (invalid_request), nor embeddings.
//   - Health: GET {base}/v2/health/ready.
package kserve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// Config configures a KServe v2 backend.
type Config struct {
	// Name labels errors.
	Name string
	// BaseURL is the server root, e.g. http://127.0.0.1:8000.
	BaseURL string
	// Headers are extra request headers.
	Headers map[string]string
	// InputName and OutputName are the text tensors (default text_input,
	// text_output, Triton's LLM convention).
	InputName, OutputName string
	// HTTPClient defaults to outbound.ModelClient(outbound.ModelDefaults()).
	HTTPClient *http.Client
}

// Provider is a KServe v2 backend.
type Provider struct{ cfg Config }

var _ providers.Provider = (*Provider)(nil)

// New returns the backend.
func New(cfg Config) *Provider {
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.Name == "" {
		cfg.Name = "kserve"
	}
	if cfg.InputName == "" {
		cfg.InputName = "text_input"
	}
	if cfg.OutputName == "" {
		cfg.OutputName = "text_output"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = outbound.ModelClient(outbound.ModelDefaults())
	}
	return &Provider{cfg: cfg}
}

// Kind returns "kserve".
func (p *Provider) Kind() string { return "kserve" }

// Prompt renders messages as the one text the protocol carries.
func Prompt(msgs []modelport.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.Role)
		b.WriteString(": ")
		b.WriteString(m.Content)
		b.WriteByte('\n')
	}
	b.WriteString("assistant: ")
	return b.String()
}

type tensor struct {
	Name     string          `json:"name"`
	Datatype string          `json:"datatype,omitempty"`
	Shape    []int           `json:"shape,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

type inferResponse struct {
	Outputs []tensor `json:"outputs"`
}

func (p *Provider) parameters(req providers.ChatRequest) map[string]any {
	params := map[string]any{}
	if req.MaxOutputTokens > 0 {
		params["max_tokens"] = req.MaxOutputTokens
	}
	if req.Temperature != nil {
		params["temperature"] = *req.Temperature
	}
	if req.TopP != nil {
		params["top_p"] = *req.TopP
	}
	return params
}

func (p *Provider) check(req providers.ChatRequest) error {
	if len(req.Tools) > 0 && req.ToolChoice != "none" {
		return errs.Field("tools", "backend %s (KServe v2) carries text only: it cannot be offered tools", p.cfg.Name)
	}
	return nil
}

// Chat runs one inference.
func (p *Provider) Chat(ctx context.Context, req providers.ChatRequest) (providers.ChatResponse, error) {
	if err := p.check(req); err != nil {
		return providers.ChatResponse{}, err
	}
	return p.infer(ctx, req)
}

func (p *Provider) infer(ctx context.Context, req providers.ChatRequest) (providers.ChatResponse, error) {
	prompt := Prompt(req.Messages)
	data, _ := json.Marshal([]string{prompt})
	body := map[string]any{"id": ids.New("inf_"),
		"inputs":  []tensor{{Name: p.cfg.InputName, Datatype: "BYTES", Shape: []int{1}, Data: data}},
		"outputs": []map[string]string{{"name": p.cfg.OutputName}}}
	if params := p.parameters(req); len(params) > 0 {
		body["parameters"] = params
	}
	resp, err := p.post(ctx, "/v2/models/"+url.PathEscape(req.Model)+"/infer", body, "application/json")
	if err != nil {
		return providers.ChatResponse{}, err
	}
	defer providers.DrainClose(resp.Body)
	var ir inferResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&ir); err != nil {
		return providers.ChatResponse{}, p.readError(ctx, err)
	}
	var text string
	var in, out int64
	found := false
	for _, o := range ir.Outputs {
		switch o.Name {
		case p.cfg.OutputName:
			var texts []string
			if err := json.Unmarshal(o.Data, &texts); err != nil || len(texts) != 1 {
				return providers.ChatResponse{}, providers.BadResponse(p.cfg.Name, fmt.Errorf("output %s: want one string: %v", o.Name, err))
			}
			text, found = texts[0], true
		case "input_tokens", "output_tokens":
			var n []int64
			if json.Unmarshal(o.Data, &n) == nil && len(n) == 1 {
				if o.Name == "input_tokens" {
					in = n[0]
				} else {
					out = n[0]
				}
			}
		}
	}
	if !found {
		return providers.ChatResponse{}, providers.BadResponse(p.cfg.Name, fmt.Errorf("no output named %s", p.cfg.OutputName))
	}
	return p.response(req, text, in, out), nil
}

// response assembles an answer; counts of 0 are estimated.
func (p *Provider) response(req providers.ChatRequest, text string, in, out int64) providers.ChatResponse {
	u := modelport.Usage{InputTokens: in, OutputTokens: out}
	if in == 0 || out == 0 {
		u = modelport.Usage{InputTokens: providers.EstimateMessages(req.Messages, nil), OutputTokens: providers.EstimateTokens(text), Estimated: true}
	}
	u.TotalTokens = u.InputTokens + u.OutputTokens
	return providers.ChatResponse{Message: modelport.Message{Role: "assistant", Content: text}, Usage: u, FinishReason: "stop"}
}

// ChatStream streams through the generate extension, or falls back to
// infer as one fragment.
func (p *Provider) ChatStream(ctx context.Context, req providers.ChatRequest, onDelta func(providers.Delta) error) (providers.ChatResponse, error) {
	if err := p.check(req); err != nil {
		return providers.ChatResponse{}, err
	}
	params := p.parameters(req)
	params["stream"] = true
	resp, err := providers.PostJSON(ctx, p.cfg.HTTPClient, p.cfg.Name, p.cfg.BaseURL+"/v2/models/"+url.PathEscape(req.Model)+"/generate_stream",
		map[string]any{p.cfg.InputName: Prompt(req.Messages), "parameters": params}, "text/event-stream", p.headers)
	if err != nil {
		return providers.ChatResponse{}, err
	}
	defer providers.DrainClose(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		out, err := p.infer(ctx, req)
		if err != nil {
			return out, err
		}
		if out.Message.Content != "" {
			if err := onDelta(providers.Delta{Content: out.Message.Content}); err != nil {
				return out, err
			}
		}
		return out, nil
	}
	if resp.StatusCode/100 != 2 {
		return providers.ChatResponse{}, p.statusError(resp)
	}
	var text strings.Builder
	err = providers.ReadSSE(resp.Body, func(ev providers.SSEEvent) error {
		chunk, err := ParseChunk(ev.Data, p.cfg.OutputName)
		if err != nil {
			return providers.BadResponse(p.cfg.Name, err)
		}
		if chunk == "" {
			return nil
		}
		text.WriteString(chunk)
		return onDelta(providers.Delta{Content: chunk})
	})
	if err != nil {
		var e *errs.Error
		if errors.As(err, &e) {
			return providers.ChatResponse{}, err
		}
		return providers.ChatResponse{}, p.readError(ctx, err)
	}
	return p.response(req, text.String(), 0, 0), nil
}

// ParseChunk reads one generate_stream event: its text fragment, or the
// server's error.
func ParseChunk(data, outputName string) (string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		return "", fmt.Errorf("stream event: %w", err)
	}
	if raw, ok := m["error"]; ok {
		var msg string
		_ = json.Unmarshal(raw, &msg)
		return "", fmt.Errorf("the server reported: %s", msg)
	}
	raw, ok := m[outputName]
	if !ok {
		return "", nil // an event without text (e.g. final statistics)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("stream event %s: %w", outputName, err)
	}
	return s, nil
}

// Embed is not offered by this adapter.
func (p *Provider) Embed(context.Context, providers.EmbedRequest) (providers.EmbedResponse, error) {
	return providers.EmbedResponse{}, errs.E(errs.InvalidRequest, "backend %s (KServe v2) serves no embeddings", p.cfg.Name)
}

// Health asks the server whether it is ready.
func (p *Provider) Health(ctx context.Context) error {
	return providers.ProbeHealth(ctx, p.cfg.HTTPClient, p.cfg.Name, p.cfg.BaseURL+"/v2/health/ready", p.headers)
}

func (p *Provider) post(ctx context.Context, path string, body any, accept string) (*http.Response, error) {
	resp, err := providers.PostJSON(ctx, p.cfg.HTTPClient, p.cfg.Name, p.cfg.BaseURL+path, body, accept, p.headers)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer providers.DrainClose(resp.Body)
		return nil, p.statusError(resp)
	}
	return resp, nil
}

func (p *Provider) headers(req *http.Request) {
	for k, v := range p.cfg.Headers {
		req.Header.Set(k, v)
	}
}

// statusError reads the protocol's error body {"error": "..."}.
func (p *Provider) statusError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var we struct {
		Error string `json:"error"`
	}
	msg := string(raw)
	if json.Unmarshal(raw, &we) == nil && we.Error != "" {
		msg = we.Error
	}
	return providers.StatusError(p.cfg.Name, resp.StatusCode, msg)
}

// readError maps a failure while reading an answer: the caller's
// deadline or departure as such, anything else a malformed answer.
func (p *Provider) readError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return providers.TransportError(ctx, p.cfg.Name, err)
	}
	return providers.BadResponse(p.cfg.Name, err)
}
