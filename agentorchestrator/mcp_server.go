package agentorchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/version"
)

// The node's MCP server (POST/GET/DELETE /mcp, streamable HTTP): every
// active agent of the caller's tenant is a tool run_agent_<agent_id> whose
// call creates a run (the same admission as POST /v1/agents/{id}/runs:
// quotas, rate limits, audit), sends a progress notification per run event
// while the client asked for progress, and returns the run's output
// (isError when the run fails or is canceled). The tenant's recent runs
// are resources agentos://runs/{run_id}, its recent threads (with their
// messages) agentos://threads/{thread_id}.
//
// The handler is stateless: each HTTP request builds a server for the
// caller it authenticated, so a session can never carry one tenant's
// identity into another's request.

const (
	// mcpToolPrefix names an agent's tool: run_agent_<agent_id>.
	mcpToolPrefix = "run_agent_"
	// mcpRunURIPrefix starts a run's resource URI.
	mcpRunURIPrefix = "agentos://runs/"
	// mcpResourceRuns is how many recent runs resources/list shows.
	mcpResourceRuns = 50
	// mcpThreadURIPrefix starts a thread's resource URI.
	mcpThreadURIPrefix = "agentos://threads/"
	// mcpResourceThreads is how many recent threads resources/list shows.
	mcpResourceThreads = 50
	// mcpThreadMessages is how many of a thread's newest messages its
	// resource holds; GET /v1/threads/{thread_id}/messages pages them all.
	mcpThreadMessages = 200
	// mcpRunPoll is how often a followed run's events are read from the
	// store when the bus brings nothing (the store is the truth).
	mcpRunPoll = time.Second
)

// mcpRunInputSchema is every agent tool's input.
var mcpRunInputSchema = json.RawMessage(`{"type":"object","properties":{` +
	`"input":{"type":"string","description":"The text the agent runs on (the run's input.text)."},` +
	`"context":{"type":"object","description":"Optional run context: locale, timezone, channel, labels."}},` +
	`"required":["input"],"additionalProperties":false}`)

// mcpHandler serves /mcp. Authentication ran before it (the API
// middleware); it refuses a caller without a tenant or agents:read with
// the usual error envelope.
func (s *Server) mcpHandler() http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		ac, _ := auth.From(r.Context())
		return s.newMCPServer(r.Context(), ac)
	}, &mcp.StreamableHTTPOptions{Stateless: true, Logger: s.log})
	return httpx.H(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := requireTenant(r.Context(), auth.ScopeAgentsRead); err != nil {
			return err
		}
		// A tool call lasts as long as its run: no server write deadline.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		ew := &envelopeWriter{ResponseWriter: w}
		h.ServeHTTP(ew, r)
		return ew.err()
	})
}

// envelopeWriter turns the SDK's plain-text HTTP errors (bad Accept
// header, malformed JSON-RPC, wrong content type) into the error envelope
// every endpoint answers with; everything else passes through untouched.
type envelopeWriter struct {
	http.ResponseWriter
	status int // an intercepted error status, 0 when passing through
	msg    bytes.Buffer
}

func (w *envelopeWriter) WriteHeader(status int) {
	if status >= 400 && strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		w.status = status
		w.Header().Del("Content-Type")
		w.Header().Del("Content-Length")
		w.Header().Del("X-Content-Type-Options")
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *envelopeWriter) Write(b []byte) (int, error) {
	if w.status != 0 {
		if w.msg.Len() < 1024 {
			w.msg.Write(b)
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *envelopeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *envelopeWriter) Flush() {
	if w.status == 0 {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

func (w *envelopeWriter) err() error {
	if w.status == 0 {
		return nil
	}
	msg := "mcp: " + strings.TrimSpace(w.msg.String())
	switch w.status {
	case http.StatusForbidden:
		return errs.E(errs.Forbidden, "%s", msg)
	case http.StatusNotFound:
		return errs.E(errs.NotFound, "%s", msg)
	case http.StatusRequestEntityTooLarge:
		return errs.E(errs.InvalidRequest, "%s", msg).WithDetails(map[string]any{"status": w.status})
	}
	if w.status < 500 {
		return errs.E(errs.InvalidRequest, "%s", msg)
	}
	return errs.E(errs.Internal, "%s", msg)
}

// newMCPServer builds the MCP server one request of ac sees.
func (s *Server) newMCPServer(base context.Context, ac auth.Context) *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "agentos", Title: "AgentOS agent orchestrator", Version: version.Version},
		&mcp.ServerOptions{Instructions: "Each tool runs one AgentOS agent: call run_agent_<agent_id> with {\"input\": \"...\"}; " +
			"progress notifications report the run's events. Runs are resources agentos://runs/{run_id}, " +
			"threads (conversations, with their messages) agentos://threads/{thread_id}."})
	agents, err := s.cfg.Store.ListAgents(base, ac.TenantID)
	if err != nil {
		s.log.WarnContext(base, "mcp: list agents", "tenant_id", ac.TenantID, "err", err)
	}
	for _, a := range agents {
		if a.Status != store.AgentActive {
			continue
		}
		desc := strings.TrimSpace(a.Description)
		if desc == "" {
			desc = "Runs the AgentOS agent " + a.Name + "."
		}
		srv.AddTool(&mcp.Tool{Name: mcpToolPrefix + a.AgentID, Title: a.Name, Description: desc, InputSchema: mcpRunInputSchema},
			func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return s.mcpRunAgent(valuesOf(ctx, base), ac, a.AgentID, req)
			})
	}
	srv.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: mcpRunURIPrefix + "{run_id}", Name: "run",
		Title: "AgentOS run", Description: "A run of this tenant: status, output, error, summary.", MIMEType: "application/json"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return s.mcpReadRun(valuesOf(ctx, base), ac, req.Params.URI)
		})
	srv.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: mcpThreadURIPrefix + "{thread_id}", Name: "thread",
		Title: "AgentOS thread", Description: fmt.Sprintf("A thread (conversation) of this tenant with its newest %d messages, oldest first.", mcpThreadMessages),
		MIMEType: "application/json"},
		func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return s.mcpReadThread(valuesOf(ctx, base), ac, req.Params.URI)
		})
	if ac.HasScope(auth.ScopeRunsRead) {
		s.addThreadResources(base, srv, ac)
		runs, _, err := s.cfg.Store.ListRuns(base, store.ListRunsParams{TenantID: ac.TenantID, Limit: mcpResourceRuns})
		if err != nil {
			s.log.WarnContext(base, "mcp: list runs", "tenant_id", ac.TenantID, "err", err)
		}
		for _, run := range runs {
			srv.AddResource(&mcp.Resource{URI: mcpRunURIPrefix + run.RunID, Name: run.RunID,
				Title:    fmt.Sprintf("Run %s of %s (%s)", run.RunID, run.AgentID, run.Status),
				MIMEType: "application/json"},
				func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
					return s.mcpReadRun(valuesOf(ctx, base), ac, req.Params.URI)
				})
		}
	}
	return srv
}

// mcpReadRun answers resources/read of a run URI.
func (s *Server) mcpReadRun(ctx context.Context, ac auth.Context, uri string) (*mcp.ReadResourceResult, error) {
	if !ac.HasScope(auth.ScopeRunsRead) {
		return nil, fmt.Errorf("forbidden: reading runs needs the %s scope", auth.ScopeRunsRead)
	}
	id, ok := strings.CutPrefix(uri, mcpRunURIPrefix)
	if !ok || id == "" {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	run, err := s.cfg.Store.GetRun(ctx, ac.TenantID, id)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, mcp.ResourceNotFoundError(uri)
	} else if err != nil {
		return nil, err
	}
	b, err := json.Marshal(map[string]any{"run": run})
	if err != nil {
		return nil, err
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "application/json", Text: string(b)}}}, nil
}

// addThreadResources lists the tenant's mcpResourceThreads newest
// threads as resources.
func (s *Server) addThreadResources(base context.Context, srv *mcp.Server, ac auth.Context) {
	threads, _, err := s.cfg.Store.ListThreads(base, store.ListThreadsParams{TenantID: ac.TenantID, Limit: mcpResourceThreads})
	if err != nil {
		s.log.WarnContext(base, "mcp: list threads", "tenant_id", ac.TenantID, "err", err)
	}
	for _, t := range threads {
		title := "Thread " + t.ThreadID
		if t.ActiveRunID != "" {
			title += " (active run " + t.ActiveRunID + ")"
		}
		srv.AddResource(&mcp.Resource{URI: mcpThreadURIPrefix + t.ThreadID, Name: t.ThreadID, Title: title, MIMEType: "application/json"},
			func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return s.mcpReadThread(valuesOf(ctx, base), ac, req.Params.URI)
			})
	}
}

// mcpReadThread answers resources/read of a thread URI: {"thread",
// "messages" (the newest mcpThreadMessages, oldest first),
// "older_messages_omitted"}.
func (s *Server) mcpReadThread(ctx context.Context, ac auth.Context, uri string) (*mcp.ReadResourceResult, error) {
	if !ac.HasScope(auth.ScopeRunsRead) {
		return nil, fmt.Errorf("forbidden: reading threads needs the %s scope", auth.ScopeRunsRead)
	}
	id, ok := strings.CutPrefix(uri, mcpThreadURIPrefix)
	if !ok || id == "" {
		return nil, mcp.ResourceNotFoundError(uri)
	}
	t, err := s.cfg.Store.GetThread(ctx, ac.TenantID, id)
	if errors.Is(err, errs.ErrNotFound) {
		return nil, mcp.ResourceNotFoundError(uri)
	} else if err != nil {
		return nil, err
	}
	// One more than kept tells whether older ones were left out.
	msgs, err := s.cfg.Store.ListThreadMessages(ctx, store.ListThreadMessagesParams{TenantID: ac.TenantID, ThreadID: id,
		Last: mcpThreadMessages + 1})
	if errors.Is(err, errs.ErrNotFound) {
		return nil, mcp.ResourceNotFoundError(uri) // deleted meanwhile
	} else if err != nil {
		return nil, err
	}
	omitted := len(msgs) > mcpThreadMessages
	if omitted {
		msgs = msgs[1:]
	}
	if msgs == nil {
		msgs = []store.ThreadMessage{}
	}
	b, err := json.Marshal(map[string]any{"thread": t, "messages": msgs, "older_messages_omitted": omitted})
	if err != nil {
		return nil, err
	}
	return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, MIMEType: "application/json", Text: string(b)}}}, nil
}

// mcpRunArgs is a run_agent_* tool's input.
type mcpRunArgs struct {
	Input   string          `json:"input"`
	Context json.RawMessage `json:"context,omitempty"`
}

// mcpRunAgent creates a run of agentID and follows it to its end.
func (s *Server) mcpRunAgent(ctx context.Context, ac auth.Context, agentID string, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var args mcpRunArgs
	if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
		return toolError("invalid_request: arguments must be {\"input\": string, \"context\"?: object}: %v", err), nil
	}
	run, _, err := s.createRunInternal(ctx, internalRun{AgentID: agentID,
		Body: map[string]any{"input": map[string]any{"type": "text", "text": args.Input}, "context": args.Context}})
	if err != nil {
		e := errs.As(err)
		return toolError("%s: %s", e.Code, e.Message), nil
	}
	run, err = s.followRun(ctx, run, req)
	if err != nil {
		return toolError("run %s: following it failed: %v (it goes on; read agentos://runs/%s)", run.RunID, err, run.RunID), nil
	}
	structured := map[string]any{"run_id": run.RunID, "status": run.Status, "output": run.Output, "error": run.Error}
	if run.Status != store.RunCompleted {
		msg := fmt.Sprintf("run %s ended %s", run.RunID, run.Status)
		if run.Error != nil {
			msg += fmt.Sprintf(": %s: %s", run.Error.Code, run.Error.Message)
		}
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}, StructuredContent: structured}, nil
	}
	text := ""
	if run.Output != nil {
		text = run.Output.Text
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}, StructuredContent: structured}, nil
}

func toolError(format string, args ...any) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf(format, args...)}}}
}

// followRun sends a progress notification per event of run (when the
// client asked for progress) until the terminal event, and returns the
// run as it ended. The store is read after each bus wake-up and every
// mcpRunPoll, so nothing is missed when the bus drops a message.
func (s *Server) followRun(ctx context.Context, run store.Run, req *mcp.CallToolRequest) (store.Run, error) {
	token := req.Params.GetProgressToken()
	sub, err := s.bus.Subscribe(ctx, bus.SubscribeParams{TenantID: run.TenantID, RunID: run.RunID})
	if err != nil {
		sub = silent{}
	}
	defer func() { sub.Close() }()
	poll := time.NewTicker(mcpRunPoll)
	defer poll.Stop()
	var last int64
	for {
		evs, err := s.cfg.Store.ListEvents(ctx, store.ListEventsParams{TenantID: run.TenantID, RunID: run.RunID,
			AfterSequence: last, Limit: catchUpPage})
		if err != nil {
			return run, err
		}
		for _, e := range evs {
			last = e.Sequence
			if token != nil {
				// Best effort: a client that stopped reading does not stop the run.
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token,
					Progress: float64(e.Sequence), Message: progressMessage(e)})
			}
			if store.IsTerminalEvent(e.Type) {
				return s.cfg.Store.GetRun(ctx, run.TenantID, run.RunID)
			}
		}
		if len(evs) == catchUpPage {
			continue
		}
		select {
		case <-ctx.Done():
			return run, ctx.Err()
		case _, ok := <-sub.C():
			if !ok {
				sub.Close()
				sub = silent{}
			}
		case <-poll.C:
		}
	}
}

// progressMessage describes an event in one line: its type, and for tool
// and step events what they are about.
func progressMessage(e store.Event) string {
	var p map[string]any
	_ = json.Unmarshal(e.Payload, &p)
	msg := e.Type
	for _, k := range []string{"name", "tool_id", "status"} {
		if v, ok := p[k].(string); ok && v != "" {
			msg += " " + k + "=" + v
		}
	}
	return msg
}

// valuesContext is ctx (its deadline and cancellation) with the values of
// base where ctx has none: the request's correlation id, trace and Auth
// Context reach the run even if the SDK hands its handlers a context of
// its own.
type valuesContext struct {
	context.Context
	base context.Context
}

func valuesOf(ctx, base context.Context) context.Context { return valuesContext{ctx, base} }

func (c valuesContext) Value(key any) any {
	if v := c.Context.Value(key); v != nil {
		return v
	}
	return c.base.Value(key)
}
