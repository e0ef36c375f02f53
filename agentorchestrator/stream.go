package agentorchestrator

import (
	"context"
	"net/http"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/bus"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
)

// defaultStorePoll is Config.StorePoll's default: how long an SSE stream
// can miss an event that no bus brought (committed by another process
// on the in-process bus, or whose publish failed).
const defaultStorePoll = 2 * time.Second

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
// bus, with no gaps and no duplicates, and ends after the terminal event.
// Once the response has started, errors end the stream: there is no
// status left to report them with.
func (s *Server) streamSSE(w http.ResponseWriter, r *http.Request, run store.Run, after int64) error {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	// A stream outlives the body read deadline (httpx.BodyDeadline) and
	// has none of its own: each write is bounded instead.
	_ = rc.SetReadDeadline(time.Time{})
	// Subscribe before replaying so nothing committed in between is missed.
	st := &sseStream{s: s, w: w, rc: rc, run: run, last: after}
	st.subscribe(ctx, false)
	defer func() { st.sub.Close() }()
	st.begin()
	if done, err := st.catchUp(ctx); err != nil || done {
		return nil
	}
	// The terminal event commits with the terminal status, so a run that
	// was terminal when the request began has had its last event replayed
	// above; a client resuming after it gets nothing more.
	if run.Status.Terminal() {
		return nil
	}

	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	poll := time.NewTicker(s.cfg.StorePoll)
	defer poll.Stop()
	for {
		var end bool
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-st.sub.C():
			if !ok {
				st.resume(ctx)
				continue
			}
			end = st.live(ctx, e)
		case <-poll.C:
			if _, ok := st.sub.(silent); ok {
				st.subscribe(ctx, true) // the bus may be back
			}
			done, err := st.catchUp(ctx)
			end = err != nil || done
		case <-heartbeat.C:
			end = st.ping() != nil
		}
		if end {
			return nil
		}
	}
}

// sseStream is one SSE response under way: last is the sequence of the
// last event written.
type sseStream struct {
	s    *Server
	w    http.ResponseWriter
	rc   *http.ResponseController
	sub  bus.Subscription[store.Event]
	run  store.Run
	last int64
	// resumed is when the subscription was last resumed.
	resumed time.Time
}

// subscribe (re)subscribes to the run's events on the bus, with resume
// after the last event written. If the bus refuses, the stream goes on
// with its store polls alone (a subscription that never delivers).
func (st *sseStream) subscribe(ctx context.Context, resume bool) {
	if st.sub != nil {
		st.sub.Close()
	}
	// Bounded: a bus that hangs leaves the stream to its store polls
	// instead of holding it (the subscription itself outlives sctx).
	sctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	sub, err := st.s.bus.Subscribe(sctx, bus.SubscribeParams{TenantID: st.run.TenantID, RunID: st.run.RunID, Resume: resume, After: st.last})
	if err != nil {
		if ctx.Err() == nil {
			st.s.metrics.busErrors.WithLabelValues("subscribe").Inc()
			st.s.log.Warn("subscribe to run events on the bus", "run_id", st.run.RunID, "err", err)
		}
		sub = silent{}
	}
	st.sub = sub
}

// subscribeTimeout bounds making a stream's bus subscription.
const subscribeTimeout = 2 * time.Second

// resubscribeGap is the least time between two resumes of a stream's
// subscription; one that ends sooner again waits for the next store poll
// (which subscribes again), so a bus or store that fails every resume at
// once is not retried in a loop.
const resubscribeGap = time.Second

// resume follows a subscription that ended: dropped as lagged, or its bus
// lost its feed. It subscribes again with resume after the last event
// written (from the bus's history), or leaves the stream to its store
// polls if the last resume was just now or the bus closed.
func (st *sseStream) resume(ctx context.Context) {
	if st.sub.Lagged() && time.Since(st.resumed) >= resubscribeGap {
		st.resumed = time.Now()
		st.subscribe(ctx, true)
		return
	}
	st.sub.Close()
	st.sub = silent{}
}

// silent is a subscription that delivers nothing: the store polls carry
// the stream.
type silent struct{}

func (silent) C() <-chan store.Event { return nil }
func (silent) Lagged() bool          { return false }
func (silent) Close()                {}

// begin sends the 200 and the event-stream headers.
func (st *sseStream) begin() {
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	st.keepWriting()
	st.w.WriteHeader(http.StatusOK)
	_ = st.rc.Flush()
}

// keepWriting gives the next write events.WriteTimeout.
func (st *sseStream) keepWriting() {
	_ = st.rc.SetWriteDeadline(time.Now().Add(events.WriteTimeout))
}

// catchUpPage is how many stored events one catch-up read returns.
const catchUpPage = 500

// catchUp writes the stored events after last; it reports whether the
// terminal event was written.
func (st *sseStream) catchUp(ctx context.Context) (bool, error) {
	for {
		evs, err := st.s.cfg.Store.ListEvents(ctx, store.ListEventsParams{TenantID: st.run.TenantID, RunID: st.run.RunID,
			AfterSequence: st.last, Limit: catchUpPage})
		if err != nil {
			return false, err
		}
		st.keepWriting()
		for _, e := range evs {
			if err := events.WriteSSE(st.w, e); err != nil {
				return false, err
			}
			st.last = e.Sequence
			if store.IsTerminalEvent(e.Type) {
				return true, st.rc.Flush()
			}
		}
		if err := st.rc.Flush(); err != nil {
			return false, err
		}
		if len(evs) < catchUpPage {
			return false, nil
		}
	}
}

// live writes e, received from the bus, with the events waiting behind
// it, and reports whether the stream ends (terminal event written, or an
// error). A gap in sequences is filled from the store (a subscription
// that lagged is resumed by the stream loop).
func (st *sseStream) live(ctx context.Context, e store.Event) bool {
	st.keepWriting()
	terminal, gap, err := st.writeWaiting(e)
	switch {
	case err != nil:
		return true
	case terminal:
		_ = st.rc.Flush()
		return true
	case gap:
		done, err := st.catchUp(ctx)
		return err != nil || done
	}
	return st.rc.Flush() != nil
}

// writeWaiting writes e and then the events already waiting on the
// subscription (events committed together arrive together: they are
// flushed once), stopping at the terminal event or at a gap. Events at or
// before last are duplicates of the replay and are skipped.
func (st *sseStream) writeWaiting(e store.Event) (terminal, gap bool, err error) {
	for {
		switch {
		case e.Sequence > st.last+1:
			return false, true, nil
		case e.Sequence == st.last+1:
			if err := events.WriteSSE(st.w, e); err != nil {
				return false, false, err
			}
			st.last = e.Sequence
			if store.IsTerminalEvent(e.Type) {
				return true, false, nil
			}
		}
		var ok bool
		select {
		case e, ok = <-st.sub.C():
			if !ok {
				// Closed (lagged): the stream loop resumes it.
				return false, false, nil
			}
		default:
			return false, false, nil
		}
	}
}

// ping writes a heartbeat comment.
func (st *sseStream) ping() error {
	st.keepWriting()
	if _, err := st.w.Write([]byte(": ping\n\n")); err != nil {
		return err
	}
	return st.rc.Flush()
}
