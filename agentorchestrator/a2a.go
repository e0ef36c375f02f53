package agentorchestrator

// The A2A (Agent2Agent, protocol 0.3) server: every agent is an A2A agent.
// Its Agent Card is at /a2a/{agent_id}/.well-known/agent-card.json and its
// JSON-RPC endpoint at POST /a2a/{agent_id}; the node's card at
// /.well-known/agent-card.json lists the caller's agents as skills, with
// POST /a2a as its endpoint (the agent is named in the message metadata).
//
// Mapping onto the runs API: an A2A task is a run (task id = run id) and
// an A2A context is a thread (contextId = thread id). A message/send or
// message/stream admits a run on the context's thread through the same
// admission as POST /v1/threads/{thread_id}/runs (history window,
// entitlements, rate limits, idempotency keyed by the message id, audit),
// so the agent sees the conversation's earlier turns. A message without
// a contextId starts a new thread; an unknown contextId is an error. The
// run's output is the task's artifact "output"; the message id is kept in
// the run's context as {"a2a": {"context_id", "message_id"}}.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/a2aproject/a2a-go/a2a"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/version"
)

// A2AProtocolVersion is the A2A protocol version the node serves.
const A2AProtocolVersion = "0.3.0"

// JSON-RPC 2.0 and A2A error codes.
const (
	rpcParseError       = -32700
	rpcInvalidRequest   = -32600
	rpcMethodNotFound   = -32601
	rpcInvalidParams    = -32602
	rpcInternalError    = -32603
	rpcServerError      = -32000 // AgentOS refusals: data.code says which
	rpcTaskNotFound     = -32001
	rpcTaskNotCancel    = -32002
	rpcUnsupportedOp    = -32004
	rpcContentType      = -32005
	maxA2AMessageIDLen  = 200
	a2aStorePoll        = 500 * time.Millisecond
	a2aOutputArtifactID = "output"
)

func (s *Server) registerA2ARoutes(api *http.ServeMux) {
	api.Handle("GET /.well-known/agent-card.json", httpx.H(s.handleNodeCard))
	api.Handle("GET /a2a/{agent_id}/.well-known/agent-card.json", httpx.H(s.handleAgentCard))
	api.Handle("POST /a2a/{agent_id}", http.HandlerFunc(s.handleA2A))
	api.Handle("POST /a2a", http.HandlerFunc(s.handleA2A))
}

// publicBase is the node's base URL as the caller reached it (a gateway or
// proxy in front says so with X-Forwarded-Proto / X-Forwarded-Host).
func publicBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" && !strings.ContainsAny(h, "/ ,") {
		host = h
	}
	return scheme + "://" + host
}

// cardSecurity declares the node's auth: a bearer token (an API token or
// a JWT of a configured issuer); X-API-Key carries an API token too.
func cardSecurity() (a2a.NamedSecuritySchemes, []a2a.SecurityRequirements) {
	return a2a.NamedSecuritySchemes{
			"bearer": a2a.HTTPAuthSecurityScheme{Scheme: "bearer", BearerFormat: "AgentOS API token or JWT",
				Description: "An AgentOS API token (agentos tokens issue) or a JWT of an issuer the node trusts."},
			"apiKey": a2a.APIKeySecurityScheme{In: a2a.APIKeySecuritySchemeInHeader, Name: "X-API-Key",
				Description: "An AgentOS API token."},
		}, []a2a.SecurityRequirements{
			{"bearer": a2a.SecuritySchemeScopes{}},
			{"apiKey": a2a.SecuritySchemeScopes{}},
		}
}

func agentSkill(a store.Agent) a2a.AgentSkill {
	desc := a.Description
	if desc == "" {
		desc = a.Name
	}
	return a2a.AgentSkill{ID: a.AgentID, Name: a.Name, Description: desc, Tags: []string{"agentos", a.ModelRef},
		InputModes: []string{"text/plain"}, OutputModes: []string{"text/plain"}}
}

func (s *Server) card(r *http.Request, name, desc, url, ver string, skills []a2a.AgentSkill) a2a.AgentCard {
	schemes, security := cardSecurity()
	base := publicBase(r)
	return a2a.AgentCard{
		ProtocolVersion:    A2AProtocolVersion,
		Name:               name,
		Description:        desc,
		URL:                url,
		PreferredTransport: a2a.TransportProtocolJSONRPC,
		Version:            ver,
		Provider:           &a2a.AgentProvider{Org: "AgentOS", URL: base},
		Capabilities:       a2a.AgentCapabilities{Streaming: true},
		DefaultInputModes:  []string{"text/plain"},
		DefaultOutputModes: []string{"text/plain"},
		Skills:             skills,
		SecuritySchemes:    schemes,
		Security:           security,
	}
}

func writeCard(w http.ResponseWriter, c a2a.AgentCard) error {
	b, err := json.Marshal(c)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "agent card")
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(b)
	return err
}

func (s *Server) handleAgentCard(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeAgentsRead)
	if err != nil {
		return err
	}
	agentID := r.PathValue("agent_id")
	a, err := s.cfg.Store.GetAgent(r.Context(), ac.TenantID, agentID)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "agent %s not found", agentID)
	} else if err != nil {
		return err
	}
	desc := a.Description
	if desc == "" {
		desc = "AgentOS agent " + a.AgentID
	}
	return writeCard(w, s.card(r, a.Name, desc, publicBase(r)+"/a2a/"+a.AgentID, fmt.Sprint(a.Version), []a2a.AgentSkill{agentSkill(a)}))
}

func (s *Server) handleNodeCard(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeAgentsRead)
	if err != nil {
		return err
	}
	agents, err := s.cfg.Store.ListAgents(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	skills := []a2a.AgentSkill{}
	for _, a := range agents {
		if a.Status == store.AgentActive {
			skills = append(skills, agentSkill(a))
		}
	}
	return writeCard(w, s.card(r, "AgentOS node", "The agents of tenant "+ac.TenantID+
		" on this AgentOS node, one skill each. Name the agent in the message metadata (\"agent_id\"), or use the agent's own card at /a2a/{agent_id}/.well-known/agent-card.json.",
		publicBase(r)+"/a2a", version.Version, skills))
}

// rpcRequest is a JSON-RPC 2.0 request.
type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

type rpcError struct {
	Code    int            `json:"code"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

func (e *rpcError) Error() string { return e.Message }

func rpcErr(code int, format string, args ...any) *rpcError {
	return &rpcError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// toRPCError maps an AgentOS error: invalid_request is invalid params;
// every other refusal is a server error whose data carries the AgentOS
// code (and retryability), as the runs API would answer it.
func toRPCError(err error) *rpcError {
	var re *rpcError
	if errors.As(err, &re) {
		return re
	}
	e := errs.As(err)
	code := rpcServerError
	switch e.Code {
	case errs.InvalidRequest:
		code = rpcInvalidParams
	case errs.Internal:
		code = rpcInternalError
	}
	data := map[string]any{"code": string(e.Code), "retryable": e.Code.Retryable()}
	if len(e.Details) > 0 {
		data["details"] = e.Details
	}
	msg := e.Message
	if e.Code == errs.Internal || msg == "" {
		msg = "internal error"
	}
	return &rpcError{Code: code, Message: msg, Data: data}
}

func writeRPC(w http.ResponseWriter, id json.RawMessage, result any, rerr *rpcError) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	body := map[string]any{"jsonrpc": "2.0", "id": id}
	if rerr != nil {
		body["error"] = rerr
	} else {
		body["result"] = result
	}
	b, err := json.Marshal(body)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": rpcErr(rpcInternalError, "cannot encode the result")})
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// handleA2A serves the JSON-RPC methods. Answers are HTTP 200 with a
// JSON-RPC result or error; authentication failures were answered by the
// middleware (401), as the card's security schemes say.
func (s *Server) handleA2A(w http.ResponseWriter, r *http.Request) {
	body, err := httpx.ReadBody(r)
	if err != nil {
		writeRPC(w, nil, nil, toRPCError(err))
		return
	}
	var req rpcRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeRPC(w, nil, nil, rpcErr(rpcParseError, "parse error: %v", err))
		return
	}
	if req.JSONRPC != "2.0" || req.Method == "" {
		writeRPC(w, req.ID, nil, rpcErr(rpcInvalidRequest, `invalid request: want "jsonrpc": "2.0" and a method`))
		return
	}
	var result any
	switch req.Method {
	case "message/send":
		result, err = s.a2aSend(r, req.Params)
	case "message/stream":
		err = s.a2aStream(w, r, req, false)
	case "tasks/get":
		result, err = s.a2aGet(r, req.Params)
	case "tasks/cancel":
		result, err = s.a2aCancel(r, req.Params)
	case "tasks/resubscribe":
		err = s.a2aStream(w, r, req, true)
	case "tasks/pushNotificationConfig/set", "tasks/pushNotificationConfig/get",
		"tasks/pushNotificationConfig/list", "tasks/pushNotificationConfig/delete":
		err = &rpcError{Code: -32003, Message: "push notifications are not supported (the card says pushNotifications: false)"}
	case "agent/getAuthenticatedExtendedCard":
		err = &rpcError{Code: -32007, Message: "no authenticated extended card: the public card is already the caller's"}
	default:
		err = rpcErr(rpcMethodNotFound, "method %q not found", req.Method)
	}
	if errors.Is(err, errStreamed) {
		return
	}
	if err != nil {
		writeRPC(w, req.ID, nil, toRPCError(err))
		return
	}
	writeRPC(w, req.ID, result, nil)
}

// errStreamed says the method answered itself (an SSE stream).
var errStreamed = errors.New("streamed")

func decodeParams(raw json.RawMessage, dst any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return rpcErr(rpcInvalidParams, "params: required")
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return rpcErr(rpcInvalidParams, "params: %v", err)
	}
	return nil
}

// messageText joins the message's text parts (data parts as compact JSON)
// into the run's input text.
func messageText(m *a2a.Message) (string, error) {
	var b strings.Builder
	for i, p := range m.Parts {
		var text string
		switch p := p.(type) {
		case a2a.TextPart:
			text = p.Text
		case a2a.DataPart:
			raw, err := json.Marshal(p.Data)
			if err != nil {
				return "", rpcErr(rpcInvalidParams, "message.parts[%d]: %v", i, err)
			}
			text = string(raw)
		default:
			return "", &rpcError{Code: rpcContentType, Message: fmt.Sprintf("message.parts[%d]: only text and data parts are accepted", i)}
		}
		if b.Len() > 0 && text != "" {
			b.WriteString("\n")
		}
		b.WriteString(text)
	}
	if strings.TrimSpace(b.String()) == "" {
		return "", rpcErr(rpcInvalidParams, "message.parts: no text")
	}
	return b.String(), nil
}

// a2aContext is what the run keeps of A2A in its context.
type a2aContext struct {
	A2A struct {
		ContextID string `json:"context_id"`
		MessageID string `json:"message_id"`
	} `json:"a2a"`
}

func runA2A(run store.Run) a2aContext {
	var c a2aContext
	_ = json.Unmarshal(run.Context, &c)
	if run.ThreadID != "" {
		// A run on a thread: the thread is its context.
		c.A2A.ContextID = run.ThreadID
	} else if c.A2A.ContextID == "" {
		// A run created by the runs API: its own context.
		c.A2A.ContextID = "ctx_" + run.RunID
	}
	return c
}

// startTask admits a run for a message/send or message/stream.
func (s *Server) startTask(r *http.Request, raw json.RawMessage) (store.Run, *a2a.MessageSendParams, error) {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCreate)
	if err != nil {
		return store.Run{}, nil, err
	}
	var p a2a.MessageSendParams
	if err := decodeParams(raw, &p); err != nil {
		return store.Run{}, nil, err
	}
	m := p.Message
	switch {
	case m == nil:
		return store.Run{}, nil, rpcErr(rpcInvalidParams, "message: required")
	case m.ID == "":
		return store.Run{}, nil, rpcErr(rpcInvalidParams, "message.messageId: required")
	case len(m.ID) > maxA2AMessageIDLen:
		return store.Run{}, nil, rpcErr(rpcInvalidParams, "message.messageId: must be at most %d characters", maxA2AMessageIDLen)
	case m.Role != a2a.MessageRoleUser:
		return store.Run{}, nil, rpcErr(rpcInvalidParams, `message.role: must be "user"`)
	case m.TaskID != "":
		return store.Run{}, nil, &rpcError{Code: rpcUnsupportedOp, Message: "message.taskId: a task (run) takes no further input here; send a new message with the same contextId"}
	}
	text, err := messageText(m)
	if err != nil {
		return store.Run{}, nil, err
	}
	agentID := r.PathValue("agent_id")
	if agentID == "" {
		agentID = metaString(m.Metadata, "agent_id")
		if agentID == "" {
			agentID = metaString(p.Metadata, "agent_id")
		}
		if agentID == "" {
			return store.Run{}, nil, rpcErr(rpcInvalidParams, "message.metadata.agent_id: name the agent (one of the node card's skills), or use POST /a2a/{agent_id}")
		}
	}
	threadID, err := s.a2aThread(r.Context(), ac, agentID, m)
	if err != nil {
		return store.Run{}, nil, err
	}
	var rc a2aContext
	rc.A2A.ContextID, rc.A2A.MessageID = threadID, m.ID
	run, _, err := s.createRunInternal(r.Context(), internalRun{AgentID: agentID, ThreadID: threadID,
		MultitaskStrategy: a2aMultitaskStrategy, IdempotencyKey: "a2a:" + m.ID,
		Body: map[string]any{"input": text, "context": rc}})
	return run, &p, err
}

// a2aMultitaskStrategy is what a message does when its context's thread
// has an active run (the previous message's task still working): it waits
// behind it, as a conversation's next message would.
const a2aMultitaskStrategy = store.MultitaskEnqueue

// a2aThread returns the thread an A2A message runs on. A contextId names
// a thread of the caller's tenant (the contextId of an earlier task);
// one the tenant does not have is an error (contextIds are made by the
// server). A message without a contextId starts a new thread, whose id is
// derived from the principal, agent and messageId, so a retried message
// finds the thread its first attempt made (and its run, by idempotency).
func (s *Server) a2aThread(ctx context.Context, ac auth.Context, agentID string, m *a2a.Message) (string, error) {
	if m.ContextID != "" {
		if _, err := s.cfg.Store.GetThread(ctx, ac.TenantID, m.ContextID); errors.Is(err, errs.ErrNotFound) {
			return "", errs.E(errs.NotFound, "message.contextId: context %s not found: a contextId is the contextId of an earlier task "+
				"(a thread of this tenant); leave it out to start a new conversation", m.ContextID).
				WithDetails(map[string]any{"field": "message.contextId"})
		} else if err != nil {
			return "", err
		}
		return m.ContextID, nil
	}
	// The agent first: an unknown agent leaves no empty thread behind.
	if _, err := s.cfg.Store.GetAgent(ctx, ac.TenantID, agentID); errors.Is(err, errs.ErrNotFound) {
		return "", errs.E(errs.NotFound, "agent %s not found", agentID)
	} else if err != nil {
		return "", err
	}
	threadID := ids.Derived("thr_", strings.Join([]string{"a2a", ac.TenantID, ac.Principal.PrincipalID, agentID, m.ID}, "\x00"))
	if _, err := s.cfg.Store.GetThread(ctx, ac.TenantID, threadID); err == nil {
		return threadID, nil
	} else if !errors.Is(err, errs.ErrNotFound) {
		return "", err
	}
	now := s.cfg.Now().UTC()
	err := s.cfg.Store.CreateThread(ctx, store.Thread{TenantID: ac.TenantID, ThreadID: threadID,
		Metadata: map[string]string{"source": "a2a", "agent_id": agentID}, CreatedAt: now, UpdatedAt: now})
	if err != nil && !errors.Is(err, errs.ErrConflict) { // conflict: a concurrent retry made it
		return "", err
	}
	return threadID, nil
}

func metaString(m map[string]any, key string) string {
	v, _ := m[key].(string)
	return v
}

var runStates = map[store.RunStatus]a2a.TaskState{
	store.RunQueued:    a2a.TaskStateSubmitted,
	store.RunRunning:   a2a.TaskStateWorking,
	store.RunCompleted: a2a.TaskStateCompleted,
	store.RunFailed:    a2a.TaskStateFailed,
	store.RunCanceled:  a2a.TaskStateCanceled,
	// A run waiting on a person's approval is paused for input that comes
	// through POST /v1/runs/{run_id}:resume, not through A2A.
	store.RunRequiresAction: a2a.TaskStateInputRequired,
}

func runTimestamp(run store.Run) *time.Time {
	t := run.CreatedAt
	if run.CompletedAt != nil {
		t = *run.CompletedAt
	} else if run.StartedAt != nil {
		t = *run.StartedAt
	}
	return &t
}

// taskStatus is the run's status as an A2A task status: a completed
// run's output and a failed run's error are its agent message.
func taskStatus(run store.Run, ctxID string) a2a.TaskStatus {
	st := a2a.TaskStatus{State: runStates[run.Status], Timestamp: runTimestamp(run)}
	var text string
	switch {
	case run.Status == store.RunCompleted && run.Output != nil:
		text = run.Output.Text
	case run.Error != nil:
		text = run.Error.Code + ": " + run.Error.Message
	}
	if text != "" {
		st.Message = &a2a.Message{ID: "msg_" + run.RunID + "_" + string(st.State), Role: a2a.MessageRoleAgent,
			ContextID: ctxID, TaskID: a2a.TaskID(run.RunID), Parts: a2a.ContentParts{a2a.TextPart{Text: text}}}
	}
	return st
}

func outputArtifact(run store.Run) *a2a.Artifact {
	if run.Status != store.RunCompleted || run.Output == nil {
		return nil
	}
	return &a2a.Artifact{ID: a2aOutputArtifactID, Name: "output", Description: "The run's output.",
		Parts: a2a.ContentParts{a2a.TextPart{Text: run.Output.Text}}}
}

// runTask is a run as an A2A task.
func runTask(run store.Run) *a2a.Task {
	c := runA2A(run)
	msgID := c.A2A.MessageID
	if msgID == "" {
		msgID = "msg_" + run.RunID + "_input"
	}
	t := &a2a.Task{
		ID:        a2a.TaskID(run.RunID),
		ContextID: c.A2A.ContextID,
		Status:    taskStatus(run, c.A2A.ContextID),
		History: []*a2a.Message{{ID: msgID, Role: a2a.MessageRoleUser, ContextID: c.A2A.ContextID, TaskID: a2a.TaskID(run.RunID),
			Parts: a2a.ContentParts{a2a.TextPart{Text: run.Input.Text}}}},
		Metadata: map[string]any{"agentos": map[string]any{"run_id": run.RunID, "agent_id": run.AgentID,
			"status": run.Status, "events_url": run.EventsURL}},
	}
	if a := outputArtifact(run); a != nil {
		t.Artifacts = []*a2a.Artifact{a}
	}
	return t
}

// watchRun calls fn with the run now and whenever it may have changed (an
// event of the run on the bus, or every a2aStorePoll as a fallback) until
// fn reports done, fails, or ctx ends.
func (s *Server) watchRun(ctx context.Context, tenantID, runID string, fn func(store.Run) (bool, error)) error {
	var events <-chan store.Event
	if sub, err := s.bus.Subscribe(ctx, bus.SubscribeParams{TenantID: tenantID, RunID: runID}); err == nil {
		defer sub.Close()
		events = sub.C()
	}
	tick := time.NewTicker(a2aStorePoll)
	defer tick.Stop()
	for {
		run, err := s.cfg.Store.GetRun(ctx, tenantID, runID)
		if err != nil {
			return err
		}
		if done, err := fn(run); done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-events:
			if !ok {
				events = nil // dropped: the poll goes on
			}
		case <-tick.C:
		}
	}
}

// a2aSend is message/send: by default (configuration.blocking absent or
// true) it answers when the task is terminal; blocking false answers the
// submitted task at once.
func (s *Server) a2aSend(r *http.Request, raw json.RawMessage) (any, error) {
	run, p, err := s.startTask(r, raw)
	if err != nil {
		return nil, err
	}
	if p.Config != nil && p.Config.Blocking != nil && !*p.Config.Blocking {
		return runTask(run), nil
	}
	var last store.Run
	err = s.watchRun(r.Context(), run.TenantID, run.RunID, func(cur store.Run) (bool, error) {
		last = cur
		return cur.Status.Terminal(), nil
	})
	if err != nil {
		return nil, err
	}
	return runTask(last), nil
}

func (s *Server) taskRun(r *http.Request, scope string, raw json.RawMessage) (auth.Context, store.Run, error) {
	ac, err := requireTenant(r.Context(), scope)
	if err != nil {
		return ac, store.Run{}, err
	}
	var p a2a.TaskIDParams
	if err := decodeParams(raw, &p); err != nil {
		return ac, store.Run{}, err
	}
	if p.ID == "" {
		return ac, store.Run{}, rpcErr(rpcInvalidParams, "id: required")
	}
	run, err := s.cfg.Store.GetRun(r.Context(), ac.TenantID, string(p.ID))
	if errors.Is(err, errs.ErrNotFound) {
		return ac, run, &rpcError{Code: rpcTaskNotFound, Message: fmt.Sprintf("task %s not found", p.ID)}
	}
	return ac, run, err
}

func (s *Server) a2aGet(r *http.Request, raw json.RawMessage) (any, error) {
	_, run, err := s.taskRun(r, auth.ScopeRunsRead, raw)
	if err != nil {
		return nil, err
	}
	return runTask(run), nil
}

func (s *Server) a2aCancel(r *http.Request, raw json.RawMessage) (any, error) {
	ac, run, err := s.taskRun(r, auth.ScopeRunsCancel, raw)
	if err != nil {
		return nil, err
	}
	run, err = s.cancelRun(r.Context(), ac, run.RunID, "canceled over A2A by "+ac.Principal.PrincipalID)
	if errors.Is(err, errs.ErrConflict) && run.Status.Terminal() {
		return nil, &rpcError{Code: rpcTaskNotCancel, Message: fmt.Sprintf("task %s is already %s", run.RunID, runStates[run.Status])}
	}
	if err != nil {
		return nil, err
	}
	return runTask(run), nil
}

// a2aStream answers message/stream (a new task) or tasks/resubscribe (an
// existing one) with SSE: the task first, then a status-update on every
// state change, and at the end the output artifact-update and a final
// status-update.
func (s *Server) a2aStream(w http.ResponseWriter, r *http.Request, req rpcRequest, resubscribe bool) error {
	var run store.Run
	var err error
	if resubscribe {
		_, run, err = s.taskRun(r, auth.ScopeRunsRead, req.Params)
	} else {
		run, _, err = s.startTask(r, req.Params)
	}
	if err != nil {
		return err
	}
	release, err := s.acquireStream(r, run.TenantID)
	if err != nil {
		return err
	}
	defer release()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	lastWrite := time.Now()
	send := func(ev any) error {
		b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": ev})
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		lastWrite = time.Now()
		return rc.Flush()
	}
	// A comment line keeps an idle stream open through proxies (SSE
	// clients ignore it), and finds a client that went away.
	ping := func() error {
		if time.Since(lastWrite) < s.cfg.Heartbeat {
			return nil
		}
		if _, err := io.WriteString(w, ": ping\n\n"); err != nil {
			return err
		}
		lastWrite = time.Now()
		return rc.Flush()
	}
	if err := send(runTask(run)); err != nil {
		return errStreamed
	}
	last := run.Status
	ctxID := runA2A(run).A2A.ContextID
	_ = s.watchRun(r.Context(), run.TenantID, run.RunID, func(cur store.Run) (bool, error) {
		if cur.Status == last && !cur.Status.Terminal() {
			return false, ping()
		}
		last = cur.Status
		if a := outputArtifact(cur); a != nil {
			if err := send(&a2a.TaskArtifactUpdateEvent{TaskID: a2a.TaskID(cur.RunID), ContextID: ctxID, Artifact: a, LastChunk: true}); err != nil {
				return true, err
			}
		}
		final := cur.Status.Terminal()
		return final, send(&a2a.TaskStatusUpdateEvent{TaskID: a2a.TaskID(cur.RunID), ContextID: ctxID,
			Status: taskStatus(cur, ctxID), Final: final})
	})
	return errStreamed
}
