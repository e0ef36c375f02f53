package agentorchestrator

import (
	"net/http"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
)

// storePollInterval bounds how long an SSE stream can miss an event that
// was committed by another process (whose hub we do not hear).
const storePollInterval = 2 * time.Second

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		// events:read alone is enough to read a run's events.
		alt, altErr := requireTenant(r.Context(), auth.ScopeEventsRead)
		if altErr != nil {
			return err
		}
		ac = alt
	}
	after, err := events.ResumePoint(r)
	if err != nil {
		return err
	}
	if !events.WantsJSON(r) {
		// The stream caps come before any other work, so that a flood of
		// refused attempts costs one cached tenant read each.
		release, err := s.acquireStream(r, ac.TenantID)
		if err != nil {
			// Close the refused connection rather than keep it idle: a
			// flood of attempts then holds no descriptors or buffers.
			w.Header().Set("Connection", "close")
			return err
		}
		defer release()
	}
	runID := r.PathValue("run_id")
	run, err := s.getRun(r, ac, runID)
	if err != nil {
		return err
	}
	if events.WantsJSON(r) {
		evs, err := s.cfg.Store.ListEvents(r.Context(), store.ListEventsParams{TenantID: ac.TenantID, RunID: runID, AfterSequence: after, Limit: 1000})
		if err != nil {
			return err
		}
		next := after
		if len(evs) > 0 {
			next = evs[len(evs)-1].Sequence
		}
		if evs == nil {
			evs = []store.Event{}
		}
		httpx.JSON(w, r, http.StatusOK, map[string]any{"events": evs, "next_after_sequence": next})
		return nil
	}
	return s.streamSSE(w, r, run, after)
}

// acquireStream holds one of the tenant's stream slots (see events.Gate):
// 429 rate_limited at the tenant's max_concurrent_streams, 503 overloaded
// at the node-wide cap. The tenant read is served by the store's cache.
func (s *Server) acquireStream(r *http.Request, tenantID string) (func(), error) {
	t, err := s.cfg.Store.GetTenant(r.Context(), tenantID)
	if err != nil {
		return nil, err
	}
	release, err := s.cfg.Streams.Acquire(tenantID, tenancy.StreamCap(t, s.cfg.Node.QuotaMaxStreams))
	if err != nil {
		s.metrics.streamsRefused.WithLabelValues(string(errs.CodeOf(err))).Inc()
		return nil, err
	}
	s.metrics.streamsOpen.Inc()
	return func() { release(); s.metrics.streamsOpen.Dec() }, nil
}

// streamSSE replays stored events after `after`, then live ones from the
// hub, with no gaps and no duplicates, and ends after the terminal event.
func (s *Server) streamSSE(w http.ResponseWriter, r *http.Request, run store.Run, after int64) error {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	// A stream outlives the body read deadline (httpx.BodyDeadline) and
	// has none of its own: each write is bounded instead.
	_ = rc.SetReadDeadline(time.Time{})
	// Subscribe before replaying so nothing committed in between is missed.
	sub := s.hub.Subscribe(run.TenantID, run.RunID)
	defer sub.Close()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	// Each write gets events.WriteTimeout.
	keepWriting := func() { _ = rc.SetWriteDeadline(time.Now().Add(events.WriteTimeout)) }
	keepWriting()
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()

	last := after
	// catchUp writes stored events after last; it reports whether the
	// terminal event was written.
	catchUp := func() (bool, error) {
		for {
			evs, err := s.cfg.Store.ListEvents(ctx, store.ListEventsParams{TenantID: run.TenantID, RunID: run.RunID, AfterSequence: last, Limit: 500})
			if err != nil {
				return false, err
			}
			keepWriting()
			for _, e := range evs {
				if err := events.WriteSSE(w, e); err != nil {
					return false, err
				}
				last = e.Sequence
				if store.IsTerminalEvent(e.Type) {
					return true, rc.Flush()
				}
			}
			if err := rc.Flush(); err != nil {
				return false, err
			}
			if len(evs) < 500 {
				return false, nil
			}
		}
	}
	done, err := catchUp()
	if err != nil || done {
		return nil // the response has started; errors end the stream
	}
	// The terminal event commits with the terminal status, so a run that
	// was terminal when the request began has had its last event replayed
	// above; a client resuming after it gets nothing more.
	if run.Status.Terminal() {
		return nil
	}

	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(storePollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-sub.C:
			// Events committed together arrive together: write all that are
			// waiting, then flush once.
			keepWriting()
			terminal, gap := false, false
			for more := true; more; {
				switch {
				case e.Sequence > last+1:
					gap = true
				case e.Sequence == last+1:
					if err := events.WriteSSE(w, e); err != nil {
						return nil
					}
					last = e.Sequence
					terminal = store.IsTerminalEvent(e.Type)
				}
				if terminal || gap {
					break
				}
				select {
				case e = <-sub.C:
				default:
					more = false
				}
			}
			if terminal {
				_ = rc.Flush()
				return nil
			}
			if sub.Lagged() || gap {
				if done, err := catchUp(); err != nil || done {
					return nil
				}
				continue
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		case <-poll.C:
			if done, err := catchUp(); err != nil || done {
				return nil
			}
		case <-heartbeat.C:
			keepWriting()
			if _, err := w.Write([]byte(": ping\n\n")); err != nil {
				return nil
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		}
	}
}
