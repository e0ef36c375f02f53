// Package builtin is the offline, deterministic model provider. It needs no
// network and no weights, and every answer it gives is labelled: the route
// names backend "builtin" and its token counts are estimates.
//
// Chat: when tools are offered and the conversation holds no tool result
// after the last user message, it plans one call of the first offered tool
// whose input schema it can fill (string fields get the last user message);
// when the last user message names offered tools by tool id (e.g. "call
// mcp.everything.echo then mcp.memory.search_nodes"), it plans one call of
// each named tool instead, in the order named, so a scripted input can
// drive several tools in one run. Otherwise it answers "Echo: <text>"
// built from the tool results (or the last user message). Embeddings are a stable hash-based projection of
// words and character trigrams, L2-normalised.
package builtin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/fnv"
	"math"
	"sort"
	"strings"
	"unicode"

	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

// DefaultDimensions is the embedding size when none is configured.
const DefaultDimensions = 64

// Provider is the builtin backend.
type Provider struct {
	// Dimensions of embeddings (default 64).
	Dimensions int
}

var _ providers.Provider = (*Provider)(nil)

// New returns a builtin provider with embeddings of dims dimensions (0 = 64).
func New(dims int) *Provider {
	if dims <= 0 {
		dims = DefaultDimensions
	}
	return &Provider{Dimensions: dims}
}

// Kind returns "builtin".
func (p *Provider) Kind() string { return "builtin" }

// Health always succeeds: the provider is in-process.
func (p *Provider) Health(context.Context) error { return nil }

// Chat answers deterministically (see the package doc).
func (p *Provider) Chat(ctx context.Context, req providers.ChatRequest) (providers.ChatResponse, error) {
	if err := ctx.Err(); err != nil {
		return providers.ChatResponse{}, err
	}
	resp := providers.ChatResponse{Message: modelport.Message{Role: "assistant"}, FinishReason: "stop"}
	if calls := planToolCalls(req); len(calls) > 0 {
		resp.ToolCalls = calls
		resp.Message.ToolCalls = resp.ToolCalls
		resp.FinishReason = "tool_calls"
	} else {
		resp.Message.Content = answer(req.Messages)
		if req.MaxOutputTokens > 0 {
			if r := []rune(resp.Message.Content); int64(len(r)) > int64(req.MaxOutputTokens)*4 {
				resp.Message.Content = string(r[:req.MaxOutputTokens*4])
				resp.FinishReason = "length"
			}
		}
	}
	in := providers.EstimateMessages(req.Messages, req.Tools)
	out := providers.EstimateTokens(resp.Message.Content)
	for _, tc := range resp.ToolCalls {
		out += providers.EstimateTokens(tc.Name) + providers.EstimateTokens(string(tc.Arguments))
	}
	resp.Usage = modelport.Usage{InputTokens: in, OutputTokens: out, TotalTokens: in + out, Estimated: true}
	return resp, nil
}

// ChatStream streams the Chat answer in word-sized fragments.
func (p *Provider) ChatStream(ctx context.Context, req providers.ChatRequest, onDelta func(providers.Delta) error) (providers.ChatResponse, error) {
	resp, err := p.Chat(ctx, req)
	if err != nil {
		return resp, err
	}
	for _, piece := range splitKeep(resp.Message.Content) {
		if err := ctx.Err(); err != nil {
			return resp, err
		}
		if err := onDelta(providers.Delta{Content: piece}); err != nil {
			return resp, err
		}
	}
	for i, tc := range resp.ToolCalls {
		if err := onDelta(providers.Delta{ToolCall: &providers.ToolCallDelta{Index: i, ID: tc.ID, Name: tc.Name, Arguments: string(tc.Arguments)}}); err != nil {
			return resp, err
		}
	}
	return resp, nil
}

// splitKeep splits s after each space, keeping the spaces.
func splitKeep(s string) []string {
	var out []string
	for s != "" {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i+1])
		s = s[i+1:]
	}
	return out
}

// lastUser returns the index and content of the last user message (-1 if none).
func lastUser(msgs []modelport.Message) (int, string) {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return i, msgs[i].Content
		}
	}
	return -1, ""
}

// toolResultsAfter returns the contents of tool messages after index i.
func toolResultsAfter(msgs []modelport.Message, i int) []string {
	var out []string
	for _, m := range msgs[i+1:] {
		if m.Role == "tool" {
			out = append(out, m.Content)
		}
	}
	return out
}

// planToolCalls plans the tool calls of a turn (see the package doc): the
// offered tools the last user message names by id, in the order named, or
// else one call of the first offered tool it can fill.
func planToolCalls(req providers.ChatRequest) []modelport.ToolCall {
	if len(req.Tools) == 0 || req.ToolChoice == "none" {
		return nil
	}
	idx, text := lastUser(req.Messages)
	if len(toolResultsAfter(req.Messages, idx)) > 0 {
		return nil
	}
	type named struct {
		at   int
		tool modelport.ToolSpec
	}
	var mentioned []named
	for _, t := range req.Tools {
		if at := indexWord(text, t.ToolID); at >= 0 {
			mentioned = append(mentioned, named{at, t})
		}
	}
	if len(mentioned) == 0 {
		if call, ok := planToolCall(req, text); ok {
			return []modelport.ToolCall{call}
		}
		return nil
	}
	sort.SliceStable(mentioned, func(i, j int) bool { return mentioned[i].at < mentioned[j].at })
	var calls []modelport.ToolCall
	for i, m := range mentioned {
		args, ok := FillArguments(m.tool.InputSchema, text)
		if !ok {
			continue
		}
		sum := sha256.Sum256([]byte(m.tool.ToolID + "\x00" + string(args) + "\x00" + itoa(len(req.Messages)) + "\x00" + itoa(i)))
		calls = append(calls, modelport.ToolCall{ID: "call_" + hex.EncodeToString(sum[:8]), ToolID: m.tool.ToolID, Name: m.tool.Name, Arguments: args})
	}
	return calls
}

// indexWord returns where id occurs in text as a whole word (not inside a
// longer id: "tool.kv.get" does not match "tool.kv.getall"), or -1.
func indexWord(text, id string) int {
	for from := 0; ; {
		i := strings.Index(text[from:], id)
		if i < 0 {
			return -1
		}
		i += from
		end := i + len(id)
		before := i == 0 || !(idByte(text[i-1]) || text[i-1] == '.')
		// A period ends a sentence unless an id goes on after it.
		after := end == len(text) || !idByte(text[end]) && !(text[end] == '.' && end+1 < len(text) && idByte(text[end+1]))
		if before && after {
			return i
		}
		from = i + 1
	}
}

// idByte reports whether b may be part of a tool id besides the dots.
func idByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}

func planToolCall(req providers.ChatRequest, text string) (modelport.ToolCall, bool) {
	for _, t := range req.Tools {
		if req.ToolChoice != "" && req.ToolChoice != "auto" && req.ToolChoice != "required" &&
			req.ToolChoice != t.Name && req.ToolChoice != t.ToolID {
			continue
		}
		args, ok := FillArguments(t.InputSchema, text)
		if !ok {
			continue
		}
		sum := sha256.Sum256([]byte(t.ToolID + "\x00" + t.Name + "\x00" + string(args) + "\x00" + itoa(len(req.Messages))))
		return modelport.ToolCall{ID: "call_" + hex.EncodeToString(sum[:8]), ToolID: t.ToolID, Name: t.Name, Arguments: args}, true
	}
	return modelport.ToolCall{}, false
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// FillArguments builds arguments that fit a JSON schema of type object:
// required properties (or, when none is required, the first string
// property) get the text for strings, the first enum value, the minimum or
// 0 for numbers, false, [] or {}. It reports false when a required property
// has a type it cannot fill. An empty or non-object schema yields {"text": text}.
func FillArguments(schema json.RawMessage, text string) (json.RawMessage, bool) {
	var s struct {
		Type       any                        `json:"type"`
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	if len(schema) == 0 || json.Unmarshal(schema, &s) != nil || len(s.Properties) == 0 {
		b, _ := json.Marshal(map[string]string{"text": text})
		return b, true
	}
	names := s.Required
	if len(names) == 0 {
		for _, n := range sortedKeys(s.Properties) {
			if propType(s.Properties[n]) == "string" {
				names = []string{n}
				break
			}
		}
	}
	args := map[string]any{}
	for _, n := range names {
		v, ok := fillValue(s.Properties[n], text)
		if !ok {
			return nil, false
		}
		args[n] = v
	}
	b, _ := json.Marshal(args)
	return b, true
}

type prop struct {
	Type    any      `json:"type"`
	Enum    []any    `json:"enum"`
	Minimum *float64 `json:"minimum"`
	Default any      `json:"default"`
}

func propType(raw json.RawMessage) string {
	var p prop
	if json.Unmarshal(raw, &p) != nil {
		return ""
	}
	switch t := p.Type.(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok && s != "null" {
				return s
			}
		}
	}
	return ""
}

func fillValue(raw json.RawMessage, text string) (any, bool) {
	var p prop
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil {
		return nil, false
	}
	if p.Default != nil {
		return p.Default, true
	}
	if len(p.Enum) > 0 {
		return p.Enum[0], true
	}
	switch propType(raw) {
	case "string", "":
		return text, true
	case "number", "integer":
		if p.Minimum != nil {
			return *p.Minimum, true
		}
		return 0, true
	case "boolean":
		return false, true
	case "array":
		return []any{}, true
	case "object":
		return map[string]any{}, true
	}
	return nil, false
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// answer builds the final text: the tool results after the last user
// message (their "text", "output" or "result" field when JSON), or else the
// last user message.
func answer(msgs []modelport.Message) string {
	idx, text := lastUser(msgs)
	results := toolResultsAfter(msgs, idx)
	if len(results) == 0 {
		if idx < 0 {
			return "Echo: (no user message)"
		}
		return "Echo: " + text
	}
	parts := make([]string, len(results))
	for i, r := range results {
		parts[i] = resultText(r)
	}
	return "Echo: " + strings.Join(parts, "; ")
}

func resultText(s string) string {
	var obj map[string]any
	if json.Unmarshal([]byte(s), &obj) == nil {
		for _, k := range []string{"text", "output", "result", "content"} {
			if v, ok := obj[k].(string); ok {
				return v
			}
		}
		// An MCP tool result: {"content":[{"type":"text","text":...},...]}.
		if parts, ok := obj["content"].([]any); ok {
			var texts []string
			for _, p := range parts {
				if m, ok := p.(map[string]any); ok {
					if t, ok := m["text"].(string); ok {
						texts = append(texts, t)
					}
				}
			}
			if len(texts) > 0 {
				return strings.Join(texts, " ")
			}
		}
		if v, ok := obj["output"].(map[string]any); ok {
			if t, ok := v["text"].(string); ok {
				return t
			}
		}
	}
	var str string
	if json.Unmarshal([]byte(s), &str) == nil {
		return str
	}
	return s
}

// Embed returns the hash projection of each text.
func (p *Provider) Embed(ctx context.Context, req providers.EmbedRequest) (providers.EmbedResponse, error) {
	if err := ctx.Err(); err != nil {
		return providers.EmbedResponse{}, err
	}
	dims := p.Dimensions
	if dims <= 0 {
		dims = DefaultDimensions
	}
	out := providers.EmbedResponse{Vectors: make([][]float32, len(req.Texts))}
	for i, t := range req.Texts {
		out.Vectors[i] = Project(t, dims)
		out.Usage.InputTokens += providers.EstimateTokens(t)
	}
	out.Usage.TotalTokens = out.Usage.InputTokens
	out.Usage.Estimated = true
	return out, nil
}

// Project maps text to a unit vector of dims dimensions: each lower-cased
// word and each of its character trigrams adds ±1 at a position chosen by
// its FNV-1a hash. Equal texts give equal vectors; texts sharing words are close.
func Project(text string, dims int) []float32 {
	acc := make([]float64, dims)
	add := func(feature string, weight float64) {
		h := fnv.New64a()
		_, _ = h.Write([]byte(feature))
		sum := h.Sum64()
		sign := 1.0
		if sum>>63 == 1 {
			sign = -1
		}
		acc[sum%uint64(dims)] += sign * weight
	}
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
	for _, w := range words {
		add("w:"+w, 1)
		padded := []rune("^" + w + "$")
		for i := 0; i+3 <= len(padded); i++ {
			add("g:"+string(padded[i:i+3]), 0.5)
		}
	}
	var norm float64
	for _, v := range acc {
		norm += v * v
	}
	vec := make([]float32, dims)
	if norm == 0 {
		return vec
	}
	norm = math.Sqrt(norm)
	for i, v := range acc {
		vec[i] = float32(v / norm)
	}
	return vec
}
