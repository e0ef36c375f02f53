// Package a2atool is the A2A client ToolPort adapter: a tool a tenant
// registered with kind "a2a" (store.ToolDef) calls a remote A2A agent
// (protocol 0.3, JSON-RPC transport) — another AgentOS node or any other
// A2A server.
//
// A call reads the remote's Agent Card at the tool's url, sends the call's
// text as a user message with message/send (blocking) to the card's url,
// and, if the answer is a task that is not finished yet, polls tasks/get
// until it is. The tool's output is
//
//	{"task_id", "context_id", "state", "text", "artifacts": [...]}
//
// where text joins the text parts of the task's artifacts (else of its
// status message, or of the agent's message when the remote answered with
// a message). The input's "text" is sent (the whole input as JSON when it
// has none); an input "context_id" continues that A2A context.
//
// The message id is derived from the run and the tool call, so a call
// retried after a crash is the same message (an AgentOS remote answers it
// with the same task). The tool's secret, when set, is sent as a bearer
// token. Every request goes through the client given to New, which should
// be builtin.GuardedClient: the SSRF guard checks the card's host and the
// endpoint the card names, at dial time.
package a2atool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/a2aproject/a2a-go/a2a"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
)

// Kind is the store.ToolDef kind of A2A tools.
const Kind = "a2a"

// DefaultTimeout applies when the definition sets no timeout_ms.
const DefaultTimeout = 60 * time.Second

// MaxResponseBytes caps a card or a JSON-RPC answer.
const MaxResponseBytes = 1 << 20

// pollInterval is how often a task that is not finished is looked up.
const pollInterval = 200 * time.Millisecond

// DefaultInputSchema is the schema of an A2A tool that declares none.
var DefaultInputSchema = json.RawMessage(`{"type":"object","properties":{"text":{"type":"string","description":"The message to send to the remote agent."},"context_id":{"type":"string","description":"An A2A contextId to continue (optional)."}},"required":["text"]}`)

type tool struct {
	def    store.ToolDef
	client *http.Client
	spec   tools.Spec
}

// New returns the tool def describes. client should come from
// builtin.GuardedClient (nil: a guarded client with an empty allowlist);
// redirects are not followed.
func New(def store.ToolDef, client *http.Client) tools.Tool {
	if client == nil {
		client = builtin.GuardedClient(builtin.HTTPFetchConfig{})
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	timeout := time.Duration(def.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	schema := def.InputSchema
	if len(bytes.TrimSpace(schema)) == 0 {
		schema = DefaultInputSchema
	}
	return &tool{def: def, client: &c, spec: tools.Spec{
		ToolID: def.ToolID, Name: def.Name, Description: def.Description, InputSchema: schema,
		Idempotent: def.Idempotent, DefaultTimeout: timeout,
	}}
}

func (t *tool) Spec() tools.Spec { return t.spec }

// Output is the tool's output.
type Output struct {
	TaskID    string          `json:"task_id,omitempty"`
	ContextID string          `json:"context_id,omitempty"`
	State     string          `json:"state"`
	Text      string          `json:"text"`
	Artifacts []*a2a.Artifact `json:"artifacts,omitempty"`
}

func (t *tool) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	id := t.spec.ToolID
	if err := tools.ContextError(ctx, id); err != nil {
		return nil, err
	}
	if err := tools.ValidateInput(t.spec.InputSchema, c.Input); err != nil {
		return nil, err
	}
	var in struct {
		Text      *string `json:"text"`
		ContextID string  `json:"context_id"`
	}
	_ = json.Unmarshal(c.Input, &in)
	text := string(bytes.TrimSpace(c.Input))
	if in.Text != nil {
		text = *in.Text
	}
	if strings.TrimSpace(text) == "" {
		return nil, errs.Field("text", "must not be empty")
	}
	card, err := t.card(ctx)
	if err != nil {
		return nil, t.fail(ctx, err)
	}
	msg := a2a.Message{ID: "agentos-" + c.RunID + "-" + c.ToolCallID, Role: a2a.MessageRoleUser, ContextID: in.ContextID,
		Parts: a2a.ContentParts{a2a.TextPart{Text: text}}}
	if c.RunID == "" && c.ToolCallID == "" {
		msg.ID = a2a.NewMessageID()
	}
	blocking := true
	raw, err := t.rpc(ctx, card.URL, "message/send", a2a.MessageSendParams{Message: &msg,
		Config: &a2a.MessageSendConfig{Blocking: &blocking, AcceptedOutputModes: []string{"text/plain", "text", "application/json"}}})
	if err != nil {
		return nil, t.fail(ctx, err)
	}
	ev, err := a2a.UnmarshalEventJSON(raw)
	if err != nil {
		return nil, errs.E(errs.DependencyUnavailable, "%s: the remote agent's answer is not an A2A task or message: %v", id, err)
	}
	var out Output
	switch ev := ev.(type) {
	case *a2a.Message:
		out = Output{ContextID: ev.ContextID, State: "completed", Text: partsText(ev.Parts)}
	case *a2a.Task:
		task := ev
		for !task.Status.State.Terminal() && task.Status.State != a2a.TaskStateInputRequired &&
			task.Status.State != a2a.TaskStateAuthRequired {
			select {
			case <-ctx.Done():
				return nil, t.fail(ctx, ctx.Err())
			case <-time.After(pollInterval):
			}
			raw, err := t.rpc(ctx, card.URL, "tasks/get", a2a.TaskQueryParams{ID: task.ID})
			if err != nil {
				return nil, t.fail(ctx, err)
			}
			task = &a2a.Task{}
			if err := json.Unmarshal(raw, task); err != nil {
				return nil, errs.E(errs.DependencyUnavailable, "%s: tasks/get answered no task: %v", id, err)
			}
		}
		out = Output{TaskID: string(task.ID), ContextID: task.ContextID, State: string(task.Status.State), Artifacts: task.Artifacts}
		var texts []string
		for _, a := range task.Artifacts {
			if s := partsText(a.Parts); s != "" {
				texts = append(texts, s)
			}
		}
		out.Text = strings.Join(texts, "\n")
		if out.Text == "" && task.Status.Message != nil {
			out.Text = partsText(task.Status.Message.Parts)
		}
		if task.Status.State != a2a.TaskStateCompleted {
			return nil, errs.E(errs.DependencyUnavailable, "%s: the remote task %s ended %s: %s", id, task.ID, task.Status.State, out.Text).
				WithDetails(map[string]any{"task_id": task.ID, "state": task.Status.State})
		}
	default:
		return nil, errs.E(errs.DependencyUnavailable, "%s: the remote agent answered a %T, not a task or message", id, ev)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "%s: cannot encode output", id)
	}
	return b, nil
}

func partsText(parts a2a.ContentParts) string {
	var texts []string
	for _, p := range parts {
		switch p := p.(type) {
		case a2a.TextPart:
			texts = append(texts, p.Text)
		case a2a.DataPart:
			b, _ := json.Marshal(p.Data)
			texts = append(texts, string(b))
		}
	}
	return strings.Join(texts, "\n")
}

// fail turns err into the tool's error: a done ctx is timeout/canceled,
// an *errs.Error keeps its code, the rest is dependency_unavailable.
func (t *tool) fail(ctx context.Context, err error) error {
	if cerr := tools.ContextError(ctx, t.spec.ToolID); cerr != nil {
		return cerr
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return e // the SSRF guard's forbidden, a remote's refusal...
	}
	return errs.Wrap(errs.DependencyUnavailable, err, "%s: %v", t.spec.ToolID, err)
}

func (t *tool) do(ctx context.Context, method, target string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, errs.E(errs.InvalidRequest, "%s: bad url %q: %v", t.spec.ToolID, target, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if t.def.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+t.def.Secret)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxResponseBytes {
		return nil, errs.E(errs.DependencyUnavailable, "%s: %s %s answered more than %d bytes", t.spec.ToolID, method, target, MaxResponseBytes)
	}
	if resp.StatusCode/100 != 2 {
		code := errs.DependencyUnavailable
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			code = errs.Forbidden
		}
		return nil, errs.E(code, "%s: %s %s answered %d: %.200s", t.spec.ToolID, method, target, resp.StatusCode, b)
	}
	return b, nil
}

// card reads and checks the remote's Agent Card.
func (t *tool) card(ctx context.Context) (a2a.AgentCard, error) {
	var card a2a.AgentCard
	b, err := t.do(ctx, http.MethodGet, t.def.URL, nil)
	if err != nil {
		return card, err
	}
	if err := json.Unmarshal(b, &card); err != nil {
		return card, errs.E(errs.DependencyUnavailable, "%s: %s is not an Agent Card: %v", t.spec.ToolID, t.def.URL, err)
	}
	switch {
	case card.URL == "":
		return card, errs.E(errs.DependencyUnavailable, "%s: the Agent Card at %s has no url", t.spec.ToolID, t.def.URL)
	case card.PreferredTransport != "" && card.PreferredTransport != a2a.TransportProtocolJSONRPC:
		// The card may still offer JSON-RPC among its other interfaces.
		for _, i := range card.AdditionalInterfaces {
			if i.Transport == a2a.TransportProtocolJSONRPC {
				card.URL = i.URL
				return card, checkURL(t.spec.ToolID, card.URL)
			}
		}
		return card, errs.E(errs.DependencyUnavailable, "%s: the remote agent speaks %s; only JSONRPC is supported", t.spec.ToolID, card.PreferredTransport)
	}
	return card, checkURL(t.spec.ToolID, card.URL)
}

func checkURL(toolID, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errs.E(errs.DependencyUnavailable, "%s: the Agent Card's url %q is not an http(s) URL", toolID, raw)
	}
	return nil
}

// rpc calls a JSON-RPC method and returns its result.
func (t *tool) rpc(ctx context.Context, endpoint, method string, params any) (json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "%s: cannot encode %s", t.spec.ToolID, method)
	}
	b, err := t.do(ctx, http.MethodPost, endpoint, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return nil, errs.E(errs.DependencyUnavailable, "%s: %s answered no JSON-RPC response: %v", t.spec.ToolID, method, err)
	}
	if resp.Error != nil {
		return nil, errs.E(errs.DependencyUnavailable, "%s: the remote agent refused %s: %s (JSON-RPC code %d)",
			t.spec.ToolID, method, resp.Error.Message, resp.Error.Code).
			WithDetails(map[string]any{"rpc_code": resp.Error.Code, "rpc_data": resp.Error.Data})
	}
	if len(resp.Result) == 0 {
		return nil, errs.E(errs.DependencyUnavailable, "%s: %s answered neither result nor error", t.spec.ToolID, method)
	}
	return resp.Result, nil
}
