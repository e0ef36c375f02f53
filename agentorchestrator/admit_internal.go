package agentorchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
)

// createRunInternal admits a run for the caller of ctx through
// handleCreateRun itself, so a run started over MCP or A2A passes exactly
// what POST /v1/agents/{agent_id}/runs checks (scope, agent status,
// entitlements, rate limits, idempotency, audit). idemKey may be empty.
func (s *Server) createRunInternal(ctx context.Context, agentID string, body []byte, idemKey string) (store.Run, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/v1/agents/"+agentID+"/runs", bytes.NewReader(body))
	if err != nil {
		return store.Run{}, errs.Wrap(errs.Internal, err, "build the run request")
	}
	r.SetPathValue("agent_id", agentID)
	r.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		r.Header.Set("Idempotency-Key", idemKey)
	}
	w := &captureWriter{header: http.Header{}, status: http.StatusOK}
	if err := s.handleCreateRun(w, r); err != nil {
		return store.Run{}, err
	}
	var out struct {
		Run store.Run `json:"run"`
	}
	if err := json.Unmarshal(w.body.Bytes(), &out); err != nil || out.Run.RunID == "" {
		return store.Run{}, errs.E(errs.Internal, "cannot read the admitted run (status %d)", w.status)
	}
	return out.Run, nil
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
