package agentorchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
)

// Threads are read with runs:read and created, run on and deleted with
// runs:create: a thread is the conversation its runs share.

// threadTarget is the thread a run is created on (zero for a run created
// on an agent).
type threadTarget struct {
	ID       string
	Strategy string
}

// runTarget returns the agent a create-run request names: the path's
// agent_id for POST /v1/agents/{agent_id}/runs, or the body's agent_id
// for POST /v1/threads/{thread_id}/runs with the thread (404 if it is not
// the tenant's) and its multitask_strategy (default reject).
func (s *Server) runTarget(r *http.Request, tenantID string, body []byte) (string, threadTarget, error) {
	threadID := r.PathValue("thread_id")
	if threadID == "" {
		return r.PathValue("agent_id"), threadTarget{}, nil
	}
	if _, err := s.getThread(r.Context(), tenantID, threadID); err != nil {
		return "", threadTarget{}, err
	}
	var req struct {
		AgentID           *string `json:"agent_id"`
		MultitaskStrategy *string `json:"multitask_strategy"`
	}
	if err := httpx.DecodeBytes(body, &req); err != nil {
		return "", threadTarget{}, err
	}
	if req.AgentID == nil || strings.TrimSpace(*req.AgentID) == "" {
		return "", threadTarget{}, errs.Field("agent_id", "is required")
	}
	t := threadTarget{ID: threadID, Strategy: store.MultitaskReject}
	if req.MultitaskStrategy != nil {
		t.Strategy = *req.MultitaskStrategy
		if !store.ValidMultitaskStrategy(t.Strategy) {
			return "", threadTarget{}, errs.Field("multitask_strategy", "must be reject, enqueue, interrupt or rollback, got %q", t.Strategy)
		}
	}
	return *req.AgentID, t, nil
}

// interruptEvent is the run.canceled event the store appends to the
// thread's active run when run interrupts or rolls it back.
func (s *Server) interruptEvent(run store.Run, tr httpx.Trace) store.Event {
	if run.ThreadID == "" || (run.MultitaskStrategy != store.MultitaskInterrupt && run.MultitaskStrategy != store.MultitaskRollback) {
		return store.Event{}
	}
	return s.newEvent(run, store.EventRunCanceled, nil, tr, map[string]any{"status": store.RunCanceled,
		"reason": "superseded by run " + run.RunID + " on thread " + run.ThreadID + " (multitask_strategy=" + run.MultitaskStrategy + ")"})
}

// afterInterrupt finishes, after the commit, what interrupting a thread's
// active run started: its run.canceled event published, its executor
// stopped (here or on another replica), the cancel counted and audited.
func (s *Server) afterInterrupt(ctx context.Context, run store.Run, ev *store.Event) {
	if ev == nil {
		return
	}
	s.publish(ctx, *ev)
	s.metrics.runsTotal.WithLabelValues(string(store.RunCanceled), s.metrics.tenants.label(ev.TenantID)).Inc()
	_, _ = s.cfg.Audit.Record(ctx, store.AuditRecord{TenantID: ev.TenantID, Action: "run.cancel", Target: "run/" + ev.RunID,
		Outcome: "canceled", Details: map[string]any{"reason": "multitask_strategy=" + run.MultitaskStrategy,
			"by_run_id": run.RunID, "thread_id": run.ThreadID}})
	if !s.stopRun(ev.RunID) {
		s.signal(ctx, bus.Signal{Kind: bus.SignalCancel, TenantID: ev.TenantID, RunID: ev.RunID, Reason: "multitask_strategy=" + run.MultitaskStrategy})
	}
}

func (s *Server) getThread(ctx context.Context, tenantID, threadID string) (store.Thread, error) {
	t, err := s.cfg.Store.GetThread(ctx, tenantID, threadID)
	if errors.Is(err, errs.ErrNotFound) {
		return t, errs.E(errs.NotFound, "thread %s not found", threadID)
	}
	return t, err
}

func (s *Server) handleCreateThread(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCreate)
	if err != nil {
		return err
	}
	var req struct {
		Metadata map[string]string `json:"metadata"`
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(body)) != "" {
		if err := httpx.DecodeBytes(body, &req); err != nil {
			return err
		}
	}
	if err := store.ValidateThreadMetadata("metadata", req.Metadata); err != nil {
		return err
	}
	if req.Metadata == nil {
		req.Metadata = map[string]string{}
	}
	now := s.cfg.Now().UTC()
	t := store.Thread{TenantID: ac.TenantID, ThreadID: ids.New("thr_"), Metadata: req.Metadata, CreatedAt: now, UpdatedAt: now}
	if err := s.cfg.Store.CreateThread(r.Context(), t); err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/threads/"+t.ThreadID)
	httpx.JSON(w, r, http.StatusCreated, map[string]any{"thread": t})
	return nil
}

func (s *Server) handleGetThread(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	t, err := s.getThread(r.Context(), ac.TenantID, r.PathValue("thread_id"))
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"thread": t})
	return nil
}

// handleListThreads lists the tenant's threads newest first; every
// metadata[<key>]=<value> (OpenAPI's deepObject) or metadata.<key>=<value>
// query parameter must match.
func (s *Server) handleListThreads(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	p := store.ListThreadsParams{TenantID: ac.TenantID, Cursor: q.Get("cursor"), Limit: 50}
	if p.Limit, err = pageLimit(q.Get("limit"), 50, 500); err != nil {
		return err
	}
	for k, vs := range q {
		key, ok := metadataParam(k)
		if !ok {
			continue
		}
		if p.Metadata == nil {
			p.Metadata = map[string]string{}
		}
		p.Metadata[key] = vs[0]
	}
	if err := store.ValidateThreadMetadata("metadata", p.Metadata); err != nil {
		return err
	}
	ts, next, err := s.cfg.Store.ListThreads(r.Context(), p)
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []store.Thread{}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"threads": ts, "next_cursor": nullable(next)})
	return nil
}

func (s *Server) handleDeleteThread(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCreate)
	if err != nil {
		return err
	}
	threadID := r.PathValue("thread_id")
	err = s.cfg.Store.DeleteThread(r.Context(), store.DeleteThreadParams{TenantID: ac.TenantID, ThreadID: threadID,
		Audit: &store.AuditRecord{AuditID: ids.New("aud_"), Time: s.cfg.Now().UTC(), TenantID: ac.TenantID,
			PrincipalID: ac.ActorID(), OnBehalfOf: ac.OnBehalfOf(), Action: "thread.delete", Target: "thread/" + threadID,
			Outcome: "deleted", CorrelationID: httpx.CorrelationID(r.Context())}})
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "thread %s not found", threadID)
	} else if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"deleted": true, "thread_id": threadID})
	return nil
}

// handleListThreadMessages pages a thread's messages oldest first; the
// cursor is the seq of the last message of the previous page.
func (s *Server) handleListThreadMessages(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	threadID := r.PathValue("thread_id")
	p := store.ListThreadMessagesParams{TenantID: ac.TenantID, ThreadID: threadID}
	if p.Limit, err = pageLimit(q.Get("limit"), 100, 1000); err != nil {
		return err
	}
	if c := q.Get("cursor"); c != "" {
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil || n < 0 {
			return errs.Field("cursor", "must be a cursor returned as next_cursor")
		}
		p.AfterSeq = n
	}
	// One more than the page tells whether there is a next one.
	p.Limit++
	msgs, err := s.cfg.Store.ListThreadMessages(r.Context(), p)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "thread %s not found", threadID)
	} else if err != nil {
		return err
	}
	next := ""
	if len(msgs) == p.Limit {
		msgs = msgs[:p.Limit-1]
		next = strconv.FormatInt(msgs[len(msgs)-1].Seq, 10)
	}
	if msgs == nil {
		msgs = []store.ThreadMessage{}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"messages": msgs, "next_cursor": nullable(next)})
	return nil
}

// metadataParam returns the key of a metadata filter parameter,
// metadata[<key>] or metadata.<key>.
func metadataParam(name string) (string, bool) {
	if key, ok := strings.CutPrefix(name, "metadata."); ok {
		return key, true
	}
	if key, ok := strings.CutPrefix(name, "metadata["); ok && strings.HasSuffix(key, "]") {
		return strings.TrimSuffix(key, "]"), true
	}
	return "", false
}

// pageLimit parses a limit query parameter (def when absent).
func pageLimit(v string, def, most int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, errs.Field("limit", "must be an integer between 1 and %d", most)
	}
	return n, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// threadHistory is what a thread's run sees of its thread: the newest
// messages within AGENTOS_THREAD_HISTORY_MESSAGES and
// AGENTOS_THREAD_HISTORY_TOKENS (estimated at 4 bytes a token), older
// ones dropped (not summarised), starting at a user message so that no
// tool result is cut from the call it answers. The thread does not change
// while its run is active, so a resumed run sees the same history.
type threadHistory struct {
	messages []modelport.Message
	ids      []string
	dropped  bool
}

func (s *Server) threadHistory(ctx context.Context, run store.Run) (threadHistory, error) {
	var h threadHistory
	if run.ThreadID == "" {
		return h, nil
	}
	maxMsgs, maxTokens := s.cfg.Node.ThreadHistoryMessages, s.cfg.Node.ThreadHistoryTokens
	if maxMsgs <= 0 {
		return h, nil
	}
	// One more than the window tells whether anything was dropped.
	msgs, err := s.cfg.Store.ListThreadMessages(ctx, store.ListThreadMessagesParams{TenantID: run.TenantID,
		ThreadID: run.ThreadID, Last: maxMsgs + 1})
	if errors.Is(err, errs.ErrNotFound) {
		return h, nil // deleted since: the run has no history
	} else if err != nil {
		return h, err
	}
	first, tokens := len(msgs), 0
	for i := len(msgs) - 1; i >= 0 && len(msgs)-i <= maxMsgs; i-- {
		tokens += estimateTokens(msgs[i])
		if maxTokens > 0 && tokens > maxTokens {
			break
		}
		first = i
	}
	for first < len(msgs) && msgs[first].Role != "user" {
		first++
	}
	h.dropped = first > 0
	for _, m := range msgs[first:] {
		mm := modelport.Message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
		if len(m.ToolCalls) > 0 {
			_ = json.Unmarshal(m.ToolCalls, &mm.ToolCalls) // written by TurnMessages
		}
		h.messages = append(h.messages, mm)
		h.ids = append(h.ids, m.MessageID)
	}
	return h, nil
}

func estimateTokens(m store.ThreadMessage) int {
	return (len(m.Content)+len(m.ToolCalls))/4 + 4
}

// summary is the model.requested event's account of the history sent.
func (h threadHistory) summary(threadID string) map[string]any {
	ids := h.ids
	if ids == nil {
		ids = []string{}
	}
	return map[string]any{"thread_id": threadID, "messages": len(h.messages), "message_ids": ids, "dropped_older": h.dropped}
}

// inputSummary is a model.requested event's input_summary: how many
// messages went to the model and whether tools were offered; for a run on
// a thread also which earlier messages of the thread were among them.
func (x *execution) inputSummary(messages int, hasTools bool) map[string]any {
	sum := map[string]any{"messages": messages, "has_tools": hasTools}
	if x.run.ThreadID != "" {
		sum["thread_history"] = x.history.summary(x.run.ThreadID)
	}
	return sum
}
