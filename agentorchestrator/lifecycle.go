package agentorchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
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
	s.publish(ctx, evs...)
	return evs, nil
}

// publish hands committed events to the bus without waiting (see
// publisher): a failure or a full window is counted and otherwise
// ignored, the events are in the store, where streams read them on a gap
// or at their next poll.
func (s *Server) publish(_ context.Context, evs ...store.Event) {
	if len(evs) == 0 {
		return
	}
	if !s.pub.enqueue(evs[0].RunID, pubItem{evs: evs}) {
		s.metrics.busErrors.WithLabelValues("publish_dropped").Inc()
	}
}

// signal sends sig to every replica (this one included), best effort and
// without waiting: a lost signal costs latency only (see bus.Signals).
func (s *Server) signal(_ context.Context, sig bus.Signal) {
	key := sig.RunID
	if key == "" {
		key = sig.TenantID
	}
	if !s.pub.enqueue(key, pubItem{sig: &sig}) {
		s.metrics.busErrors.WithLabelValues("signal_dropped").Inc()
	}
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
		// The run executes here (stop it now) or on another replica, or
		// is queued: every replica's signal loop stops it if it runs
		// there (its executor's store check would, within a second).
		if !s.stopRun(run.RunID) {
			s.signal(ctx, bus.Signal{Kind: bus.SignalCancel, TenantID: run.TenantID, RunID: run.RunID, Reason: reason})
		}
		return run, nil
	}
	return store.Run{}, errs.E(errs.Conflict, "run %s is changing too fast to cancel; retry", runID)
}

var errRunCanceled = errors.New("run canceled")

// stopRun stops the executor of runID if it runs in this process (its
// canceled status is committed) and reports whether it did.
func (s *Server) stopRun(runID string) bool {
	s.mu.Lock()
	stop := s.running[runID]
	s.mu.Unlock()
	if stop != nil {
		stop(errRunCanceled)
	}
	return stop != nil
}
