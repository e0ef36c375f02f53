package agentorchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// internalRun is a run admitted in process (MCP, A2A, schedules).
type internalRun struct {
	// AgentID is the agent that runs.
	AgentID string
	// ThreadID, when set, creates the run on that thread of the caller's
	// tenant, as POST /v1/threads/{thread_id}/runs does: it sees the
	// thread's history window and appends its turn when it ends.
	ThreadID string
	// MultitaskStrategy is the thread run's strategy when the thread has
	// an active run ("" is the API's default, reject).
	MultitaskStrategy string
	// Body is the create-run body (input, context, ...); agent_id and
	// multitask_strategy are added for a thread run.
	Body map[string]any
	// IdempotencyKey, if set, makes a retry the same run.
	IdempotencyKey string
}

// createRunInternal admits a run for the caller of ctx through
// handleCreateRun itself, so a run started over MCP, A2A or by a schedule
// passes exactly what POST /v1/agents/{agent_id}/runs (or, on a thread,
// POST /v1/threads/{thread_id}/runs) checks: scope, agent status,
// entitlements, rate limits, idempotency, webhooks, audit. replayed says
// the idempotency key named a run admitted before.
func (s *Server) createRunInternal(ctx context.Context, p internalRun) (run store.Run, replayed bool, err error) {
	body := make(map[string]any, len(p.Body)+2)
	for k, v := range p.Body {
		body[k] = v
	}
	path := "/v1/agents/" + p.AgentID + "/runs"
	if p.ThreadID != "" {
		path = "/v1/threads/" + p.ThreadID + "/runs"
		body["agent_id"] = p.AgentID
		if p.MultitaskStrategy != "" {
			body["multitask_strategy"] = p.MultitaskStrategy
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return store.Run{}, false, errs.Wrap(errs.Internal, err, "encode the run request")
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(raw))
	if err != nil {
		return store.Run{}, false, errs.Wrap(errs.Internal, err, "build the run request")
	}
	if p.ThreadID != "" {
		r.SetPathValue("thread_id", p.ThreadID)
	} else {
		r.SetPathValue("agent_id", p.AgentID)
	}
	r.Header.Set("Content-Type", "application/json")
	if p.IdempotencyKey != "" {
		r.Header.Set("Idempotency-Key", p.IdempotencyKey)
	}
	w := &captureWriter{header: http.Header{}, status: http.StatusOK}
	if err := s.handleCreateRun(w, r); err != nil {
		return store.Run{}, false, err
	}
	var out struct {
		Run store.Run `json:"run"`
	}
	if err := json.Unmarshal(w.body.Bytes(), &out); err != nil || out.Run.RunID == "" {
		return store.Run{}, false, errs.E(errs.Internal, "cannot read the admitted run (status %d)", w.status)
	}
	return out.Run, w.status == http.StatusOK, nil
}

// captureWriter records an in-process handler's answer.
type captureWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *captureWriter) Header() http.Header         { return w.header }
func (w *captureWriter) WriteHeader(status int)      { w.status = status }
func (w *captureWriter) Write(b []byte) (int, error) { return w.body.Write(b) }
