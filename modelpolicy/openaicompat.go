package modelpolicy

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// oaContent is an OpenAI message content: a string, null, or an array of
// parts of which the text parts are used. A value of another shape is kept
// as invalid rather than failing the decode, so that the handler, which
// knows the message's index, can name the field (encoding/json does not
// put the path on an error returned by an UnmarshalJSON method).
type oaContent struct {
	text    string
	invalid bool
}

func (c *oaContent) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = oaContent{text: s}
		return nil
	}
	if string(b) == "null" {
		*c = oaContent{}
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		*c = oaContent{invalid: true}
		return nil
	}
	var out []string
	for _, p := range parts {
		if p.Type == "text" || p.Type == "input_text" {
			out = append(out, p.Text)
		}
	}
	*c = oaContent{text: strings.Join(out, "\n")}
	return nil
}

type oaToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaMessage struct {
	Role       string       `json:"role"`
	Content    oaContent    `json:"content"`
	ToolCalls  []oaToolCall `json:"tool_calls"`
	ToolCallID string       `json:"tool_call_id"`
}

type oaTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

type chatCompletionRequest struct {
	Model               string          `json:"model"`
	Messages            []oaMessage     `json:"messages"`
	Tools               []oaTool        `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	MaxTokens           int             `json:"max_tokens"`
	MaxCompletionTokens int             `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	User     string `json:"user"`
	Metadata struct {
		AgentID string `json:"agent_id"`
		RunID   string `json:"run_id"`
	} `json:"metadata"`
}

func toolChoice(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "auto", "none", "required":
			return s, nil
		}
		return "", errs.Field("tool_choice", "must be auto, none, required or a function object")
	}
	var obj struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(raw, &obj) != nil || obj.Function.Name == "" {
		return "", errs.Field("tool_choice", "must be auto, none, required or {\"type\":\"function\",\"function\":{\"name\":...}}")
	}
	return obj.Function.Name, nil
}

// shouldRetry sets x-should-retry on an OpenAI-compatible error answer:
// the official OpenAI SDKs honour it over the status code, so they do not
// retry a quota_exceeded (429) that can never pass, and do retry
// rate_limited.
func shouldRetry(w http.ResponseWriter, err error) error {
	if err != nil {
		w.Header().Set("x-should-retry", strconv.FormatBool(errs.As(err).Code.Retryable()))
	}
	return err
}

func (s *Server) handleChatCompletions(w http.ResponseWriter, r *http.Request) error {
	return shouldRetry(w, s.chatCompletions(w, r))
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) error {
	var body chatCompletionRequest
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	if body.Model == "" {
		return errs.Field("model", "is required")
	}
	c, err := s.resolveCaller(r.Context(), auth.ScopeModelsInvoke, nil)
	if err != nil {
		return err
	}
	choice, err := toolChoice(body.ToolChoice)
	if err != nil {
		return err
	}
	in := modelport.ChatInput{ToolChoice: choice}
	for i, m := range body.Messages {
		if m.Content.invalid {
			return errs.Field(fmt.Sprintf("messages[%d].content", i), "must be a string, null or an array of text parts")
		}
		msg := modelport.Message{Role: m.Role, Content: m.Content.text, ToolCallID: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, modelport.ToolCall{ID: tc.ID, ToolID: tc.Function.Name, Name: tc.Function.Name,
				Arguments: providers.ArgumentsJSON(tc.Function.Arguments)})
		}
		in.Messages = append(in.Messages, msg)
	}
	for i, t := range body.Tools {
		if t.Type != "" && t.Type != "function" {
			return errs.Field(fmt.Sprintf("tools[%d].type", i), "must be \"function\"")
		}
		if t.Function.Name == "" {
			return errs.Field(fmt.Sprintf("tools[%d].function.name", i), "is required")
		}
		in.Tools = append(in.Tools, modelport.ToolSpec{ToolID: t.Function.Name, Name: t.Function.Name,
			Description: t.Function.Description, InputSchema: t.Function.Parameters})
	}
	gen := modelport.Generation{Temperature: body.Temperature, TopP: body.TopP, MaxOutputTokens: body.MaxTokens}
	if body.MaxCompletionTokens > 0 {
		gen.MaxOutputTokens = body.MaxCompletionTokens
	}
	if err := validateChat("", in, gen); err != nil {
		e := errs.As(err)
		f, _ := e.Details["field"].(string)
		f = strings.TrimPrefix(strings.TrimPrefix(f, "."), "request.generation.")
		if f == "max_output_tokens" {
			f = "max_tokens"
		}
		return errs.Field(f, "%s", e.Message[strings.Index(e.Message, ": ")+2:])
	}
	inv := &invocation{action: "model.chat_completions", op: opChat, requestID: ids.New("req_"), modelRef: body.Model,
		agentID: body.Metadata.AgentID, runID: body.Metadata.RunID, maxTokensField: "max_tokens", inputField: "messages"}
	if body.MaxCompletionTokens > 0 {
		inv.maxTokensField = "max_completion_tokens"
	}
	inv.chat = providers.ChatRequest{Messages: in.Messages, Tools: in.Tools, ToolChoice: in.ToolChoice,
		Temperature: gen.Temperature, TopP: gen.TopP, MaxOutputTokens: gen.MaxOutputTokens}
	id := "chatcmpl-" + strings.TrimPrefix(inv.requestID, "req_")
	created := s.now().Unix()
	if !body.Stream {
		res, err := s.invoke(r.Context(), c, inv)
		if err != nil {
			return err
		}
		setGovernanceHeaders(w, res)
		msg := oaRespMessage{Role: "assistant"}
		if c := res.chat.Message.Content; c != "" {
			msg.Content = &c
		}
		if len(res.chat.ToolCalls) > 0 {
			msg.ToolCalls = oaCalls(res.chat.ToolCalls, false)
		}
		writeJSON(w, r, http.StatusOK, &oaChatResponse{ID: id, Object: "chat.completion", Created: created, Model: res.route.Model,
			Choices: []oaChoice{{Message: msg, FinishReason: finishReason(res)}}, Usage: oaUsage(res.usage),
			AgentOS: governance(inv, res), CorrelationID: httpx.CorrelationID(r.Context())})
		return nil
	}
	sse := &sseWriter{w: w, r: r, id: id, created: created, model: body.Model}
	inv.onDelta = func(d providers.Delta) error {
		return sse.chunk(map[string]any{"content": d.Content}, nil, nil)
	}
	res, err := s.invoke(r.Context(), c, inv)
	if err != nil {
		if !sse.started {
			return err
		}
		sse.data(map[string]any{"error": httpx.BodyOf(err).WithOpenAI(), "correlation_id": httpx.CorrelationID(r.Context())})
		sse.done()
		return nil
	}
	sse.model = res.route.Model
	if !sse.started {
		setGovernanceHeaders(w, res)
	}
	streamRest(inv, res)
	if len(res.chat.ToolCalls) > 0 {
		_ = sse.chunk(map[string]any{"tool_calls": oaCalls(res.chat.ToolCalls, true)}, nil, nil)
	}
	fr := finishReason(res)
	_ = sse.chunk(map[string]any{}, &fr, map[string]any{"usage": oaUsage(res.usage), "agentos": governance(inv, res)})
	if body.StreamOptions != nil && body.StreamOptions.IncludeUsage {
		sse.data(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": sse.model,
			"choices": []any{}, "usage": oaUsage(res.usage)})
	}
	sse.done()
	return nil
}

// Typed OpenAI-compatible response bodies (encoded without reflection
// over maps, and with the same fields the map form had).
type oaChatResponse struct {
	ID            string         `json:"id"`
	Object        string         `json:"object"`
	Created       int64          `json:"created"`
	Model         string         `json:"model"`
	Choices       []oaChoice     `json:"choices"`
	Usage         oaUsageWire    `json:"usage"`
	AgentOS       governanceWire `json:"agentos"`
	CorrelationID string         `json:"correlation_id"`
}

type oaChoice struct {
	Index        int           `json:"index"`
	Message      oaRespMessage `json:"message"`
	FinishReason string        `json:"finish_reason"`
	Logprobs     *struct{}     `json:"logprobs"`
}

type oaRespMessage struct {
	Role      string       `json:"role"`
	Content   *string      `json:"content"`
	ToolCalls []oaCallWire `json:"tool_calls,omitempty"`
}

type oaCallWire struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaUsageWire struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// governanceWire is the extra "agentos" object of OpenAI-compatible responses.
type governanceWire struct {
	RequestID     string                  `json:"request_id"`
	PolicyOutcome modelport.PolicyOutcome `json:"policy_outcome"`
	Route         modelport.Route         `json:"route"`
	LatencyMs     int64                   `json:"latency_ms"`
	Usage         modelport.Usage         `json:"usage"`
	CostUSD       float64                 `json:"cost_usd"`
}

// writeJSON writes v with a Content-Length (one write, no chunking).
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		httpx.WriteError(w, r, errs.Wrap(errs.Internal, err, "encode response"))
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func finishReason(res *result) string {
	if len(res.chat.ToolCalls) > 0 {
		return "tool_calls"
	}
	if res.chat.FinishReason == "length" {
		return "length"
	}
	return "stop"
}

func oaCalls(calls []modelport.ToolCall, indexed bool) []oaCallWire {
	out := make([]oaCallWire, len(calls))
	for i, tc := range calls {
		args := string(tc.Arguments)
		if args == "" {
			args = "{}"
		}
		out[i].ID, out[i].Type = tc.ID, "function"
		out[i].Function.Name, out[i].Function.Arguments = tc.Name, args
		if indexed {
			out[i].Index = &i
		}
	}
	return out
}

func oaUsage(u modelport.Usage) oaUsageWire {
	return oaUsageWire{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens, TotalTokens: u.TotalTokens}
}

// governance is the extra "agentos" object of OpenAI-compatible responses.
func governance(inv *invocation, res *result) governanceWire {
	return governanceWire{RequestID: inv.requestID, PolicyOutcome: res.outcome.Wire(), Route: res.route,
		LatencyMs: res.latency.Milliseconds(), Usage: res.usage, CostUSD: res.costUSD}
}

func setGovernanceHeaders(w http.ResponseWriter, res *result) {
	h := w.Header()
	h.Set("X-AgentOS-Policy-Decision", res.outcome.Decision())
	h.Set("X-AgentOS-Backend", res.route.Backend)
	h.Set("X-AgentOS-Model", res.route.Model)
	if res.route.FallbackUsed {
		h.Set("X-AgentOS-Fallback-Used", "true")
	}
}

// sseWriter writes OpenAI chat.completion.chunk events.
type sseWriter struct {
	w       http.ResponseWriter
	r       *http.Request
	id      string
	created int64
	model   string
	started bool
}

func (s *sseWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	s.data(map[string]any{"id": s.id, "object": "chat.completion.chunk", "created": s.created, "model": s.model,
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}, "finish_reason": nil}}})
}

func (s *sseWriter) data(v any) {
	b, _ := json.Marshal(v)
	_, _ = fmt.Fprintf(s.w, "data: %s\n\n", b)
	_ = http.NewResponseController(s.w).Flush()
}

func (s *sseWriter) chunk(delta map[string]any, finish *string, extra map[string]any) error {
	s.start()
	if err := s.r.Context().Err(); err != nil {
		return err
	}
	var fr any
	if finish != nil {
		fr = *finish
	}
	c := map[string]any{"id": s.id, "object": "chat.completion.chunk", "created": s.created, "model": s.model,
		"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": fr}}}
	for k, v := range extra {
		c[k] = v
	}
	s.data(c)
	return nil
}

func (s *sseWriter) done() {
	_, _ = fmt.Fprint(s.w, "data: [DONE]\n\n")
	_ = http.NewResponseController(s.w).Flush()
}

type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	User           string          `json:"user"`
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) error {
	return shouldRetry(w, s.embeddings(w, r))
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) error {
	var body embeddingsRequest
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	if body.Model == "" {
		return errs.Field("model", "is required")
	}
	var texts []string
	var one string
	switch {
	case len(body.Input) == 0:
		return errs.Field("input", "is required")
	case json.Unmarshal(body.Input, &one) == nil:
		texts = []string{one}
	case json.Unmarshal(body.Input, &texts) == nil:
	default:
		return errs.Field("input", "must be a string or an array of strings")
	}
	if err := validateTexts("input", texts); err != nil {
		return err
	}
	if body.EncodingFormat != "" && body.EncodingFormat != "float" && body.EncodingFormat != "base64" {
		return errs.Field("encoding_format", "must be float or base64")
	}
	c, err := s.resolveCaller(r.Context(), auth.ScopeModelsInvoke, nil)
	if err != nil {
		return err
	}
	inv := &invocation{action: "model.embeddings", op: opEmbed, requestID: ids.New("req_"), modelRef: body.Model, texts: texts,
		inputField: "input"}
	res, err := s.invoke(r.Context(), c, inv)
	if err != nil {
		return err
	}
	setGovernanceHeaders(w, res)
	data := make([]map[string]any, len(res.vectors))
	for i, v := range res.vectors {
		var emb any = v
		if body.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"object": "list", "data": data, "model": res.route.Model,
		"usage":   map[string]any{"prompt_tokens": res.usage.InputTokens, "total_tokens": res.usage.TotalTokens},
		"agentos": governance(inv, res)})
	return nil
}
