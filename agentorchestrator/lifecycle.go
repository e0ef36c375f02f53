package agentorchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/store"
)

func newOwnerID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "exec_" + hex.EncodeToString(b)
}

// newEvent builds an event of run; the store assigns its sequence.
func (s *Server) newEvent(run store.Run, typ string, stepID *string, tr httpx.Trace, payload any) store.Event {
	p, err := json.Marshal(payload)
	if err != nil {
		p = []byte(`{}`)
	}
	return store.Event{
		EventID: ids.New("evt_"), Time: s.cfg.Now().UTC(), Type: typ, TenantID: run.TenantID,
		AgentID: run.AgentID, RunID: run.RunID, StepID: stepID,
		Trace: store.EventTrace{Traceparent: tr.Traceparent(), SpanID: tr.SpanID}, Payload: p,
	}
}

// commit applies a change and publishes its events after the commit.
func (s *Server) commit(ctx context.Context, c store.RunChange) ([]store.Event, error) {
	evs, err := s.cfg.Store.ApplyRunChange(ctx, c)
	if err != nil {
		return nil, err
	}
	s.hub.Publish(evs...)
	return evs, nil
}

// cancelRun moves a queued or running run to canceled with its event, then
// stops the executor's in-flight model and tool calls through its context.
func (s *Server) cancelRun(ctx context.Context, ac auth.Context, runID, reason string) (store.Run, error) {
	for attempt := 0; attempt < 5; attempt++ {
		run, err := s.cfg.Store.GetRun(ctx, ac.TenantID, runID)
		if errors.Is(err, errs.ErrNotFound) {
			return run, errs.E(errs.NotFound, "run %s not found", runID)
		} else if err != nil {
			return run, err
		}
		if run.Status.Terminal() {
			return run, errs.E(errs.Conflict, "run %s is already %s", runID, run.Status).
				WithDetails(map[string]any{"status": run.Status})
		}
		prev := run.Status
		now := s.cfg.Now().UTC()
		run.Status = store.RunCanceled
		run.CompletedAt = &now
		ev := s.newEvent(run, store.EventRunCanceled, nil, httpx.TraceFrom(ctx), map[string]any{"status": store.RunCanceled, "reason": reason})
		_, err = s.commit(ctx, store.RunChange{TenantID: run.TenantID, RunID: run.RunID,
			FromStatuses: []store.RunStatus{prev}, StatusOnly: true, Run: &run, Events: []store.Event{ev}})
		if errors.Is(err, errs.ErrConflict) {
			continue // the executor moved it meanwhile; look again
		}
		if err != nil {
			return run, err
		}
		s.metrics.runsTotal.WithLabelValues(string(store.RunCanceled), s.metrics.tenants.label(run.TenantID)).Inc()
		s.metrics.runDuration.WithLabelValues(string(store.RunCanceled)).Observe(now.Sub(run.CreatedAt).Seconds())
		_, _ = s.cfg.Audit.Record(ctx, store.AuditRecord{TenantID: run.TenantID, PrincipalID: ac.Principal.PrincipalID,
			Action: "run.cancel", Target: "run/" + run.RunID, Outcome: "canceled", Details: map[string]any{"reason": reason}})
		s.mu.Lock()
		stop := s.running[run.RunID]
		s.mu.Unlock()
		if stop != nil {
			stop(errRunCanceled)
		}
		return run, nil
	}
	return store.Run{}, errs.E(errs.Conflict, "run %s is changing too fast to cancel; retry", runID)
}

var errRunCanceled = errors.New("run canceled")
