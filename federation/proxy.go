package federation

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
)

// openFunc opens an event source after a sequence, as SSE or JSON.
type openFunc func(ctx context.Context, after int64, accept string) (io.ReadCloser, error)

const (
	acceptSSE  = "text/event-stream"
	acceptJSON = "application/json"
)

// maxReconnects bounds how often a broken upstream stream is resumed.
const maxReconnects = 5

// errCrossTenant marks an upstream event of another tenant or run.
var errCrossTenant = errors.New("upstream sent an event of another tenant or run")

// handleEvents proxies a forwarded run's events from the peer that holds
// it (client API). Only the tenant that forwarded the run sees it; for
// anyone else the run does not exist. Events are also kept as ingested
// replicas, which answer when the peer is unreachable.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ac, err := requireAny(ctx, auth.ScopeEventsRead, auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	runID := r.PathValue("run_id")
	after, err := events.ResumePoint(r)
	if err != nil {
		return err
	}
	notFound := errs.E(errs.NotFound, "run %s not found", runID)
	if !idRE.MatchString(runID) {
		return notFound
	}
	if !events.WantsJSON(r) {
		// The caps come before the forward index and the peer are touched.
		t, err := s.cfg.Store.GetTenant(ctx, ac.TenantID)
		if err != nil {
			return errs.Wrap(errs.DependencyUnavailable, err, "cannot read tenant")
		}
		release, err := s.acquireStream(t)
		if err != nil {
			w.Header().Set("Connection", "close") // a refused flood holds no connections
			return err
		}
		defer release()
	}
	fwd, err := s.cfg.Store.GetForward(ctx, ac.TenantID, runID)
	if errors.Is(err, errs.ErrNotFound) {
		stored, lerr := s.cfg.Store.ListIngestedEvents(ctx, ac.TenantID, runID, "")
		if lerr != nil || len(stored) == 0 {
			return notFound
		}
		s.audit(r, store.AuditRecord{TenantID: ac.TenantID, PrincipalID: ac.Principal.PrincipalID, Action: "federation.events.replica",
			Target: "run:" + runID, Outcome: "success", Details: map[string]any{"after_sequence": after, "reason": "ingested events"}})
		return s.serveStored(w, r, stored, after)
	}
	if err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "cannot read the forward index")
	}
	peerID := fwd.PeerStackID
	if _, caps, derr := s.cfg.Directory.Describe(ctx, peerID); derr == nil && !caps.Has(CapEventsStream) {
		return errs.E(errs.NotFound, "peer %s does not offer %s; run %s cannot be streamed", peerID, CapEventsStream, runID).
			WithDetails(map[string]any{"peers": map[string]any{peerID: "lacks capabilities: " + CapEventsStream}})
	}
	s.audit(r, store.AuditRecord{TenantID: ac.TenantID, PrincipalID: ac.Principal.PrincipalID, Action: "federation.events.proxy",
		Target: "run:" + runID, Outcome: "success",
		Details: map[string]any{"direction": "outbound", "peer_stack_id": peerID, "after_sequence": after}})
	trace := httpx.TraceFrom(ctx).Child()
	open := func(ctx context.Context, after int64, accept string) (io.ReadCloser, error) {
		tok, err := s.cfg.Signer.Sign(identity.Claims{Audience: peerID, TenantID: ac.TenantID,
			Subject: ac.Principal.PrincipalID, PrincipalType: ac.Principal.PrincipalType, Scopes: federatedScopes(ac)}, identity.DefaultTTL)
		if err != nil {
			return nil, errs.Wrap(errs.Internal, err, "cannot sign identity token")
		}
		hdr := http.Header{}
		hdr.Set("Authorization", "Bearer "+tok)
		hdr.Set("Accept", accept)
		hdr.Set("traceparent", trace.Traceparent())
		hdr.Set("X-Correlation-Id", httpx.CorrelationID(ctx))
		resp, err := s.cfg.Directory.Do(ctx, peerID, http.MethodGet,
			EventsPath(runID)+"?after_sequence="+strconv.FormatInt(after, 10), nil, hdr)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			defer resp.Body.Close()
			return nil, peerError(resp, peerID)
		}
		return resp.Body, nil
	}
	keep := func(e store.Event) {
		if _, err := s.cfg.Store.IngestEvent(context.WithoutCancel(ctx), store.IngestedEvent{Event: e, SourceStack: peerID,
			IngestedAt: s.cfg.Now().UTC()}); err != nil {
			s.log.WarnContext(ctx, "cannot keep a replica of a proxied event", "err", err, "run_id", runID)
		}
	}
	err = s.stream(w, r, ac.TenantID, runID, after, open, keep)
	if c := errs.CodeOf(err); err != nil && (c == errs.DependencyUnavailable || c == errs.Timeout) {
		// The peer is down: serve the replicas kept so far, if any, of
		// that peer only (another stack cannot write this run's history).
		if stored, lerr := s.cfg.Store.ListIngestedEvents(ctx, ac.TenantID, runID, peerID); lerr == nil && len(stored) > 0 {
			s.audit(r, store.AuditRecord{TenantID: ac.TenantID, PrincipalID: ac.Principal.PrincipalID, Action: "federation.events.replica",
				Target: "run:" + runID, Outcome: "success",
				Details: map[string]any{"after_sequence": after, "peer_stack_id": peerID, "reason": "peer unreachable"}})
			return s.serveStored(w, r, stored, after)
		}
	}
	return err
}

// handlePeerEvents streams a run of this node to the peer that forwarded
// it, as the tenant named by the verified identity token (peer API). Only
// the stack that forwarded the run, for the tenant it forwarded it for,
// may read it: any other peer (even one with a valid certificate), any
// other tenant, and any run not forwarded here get 404.
func (s *Server) handlePeerEvents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c := claimsFrom(ctx)
	if !c.HasScope(auth.ScopeEventsRead) && !c.HasScope(auth.ScopeRunsRead) && !c.HasScope(auth.ScopeRunsForward) {
		return s.peerRefused(r, c, "federation.events.serve", errs.E(errs.Forbidden, "identity token lacks scope %q", auth.ScopeEventsRead).
			WithDetails(map[string]any{"required_scope": auth.ScopeEventsRead}))
	}
	ac, tenant, err := s.localContext(ctx, c)
	if err != nil {
		return s.peerRefused(r, c, "federation.events.serve", err)
	}
	runID := r.PathValue("run_id")
	if !idRE.MatchString(runID) {
		return errs.E(errs.NotFound, "run %s not found", runID)
	}
	after, err := events.ResumePoint(r)
	if err != nil {
		return err
	}
	if !events.WantsJSON(r) {
		release, err := s.acquireStream(tenant)
		if err != nil {
			w.Header().Set("Connection", "close")
			return err
		}
		defer release()
	}
	if _, err := s.inboundForward(ctx, c, runID); err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			s.audit(r, store.AuditRecord{TenantID: c.TenantID, PrincipalID: c.Subject, Action: "federation.events.serve",
				Target: "run:" + runID, Outcome: "denied",
				Details: map[string]any{"direction": "inbound", "peer_stack_id": c.Issuer, "reason": "not_forwarded_by_peer"}})
		}
		return err
	}
	s.audit(r, store.AuditRecord{TenantID: c.TenantID, PrincipalID: c.Subject, Action: "federation.events.serve",
		Target: "run:" + runID, Outcome: "success",
		Details: map[string]any{"direction": "inbound", "peer_stack_id": c.Issuer, "after_sequence": after}})
	meta := CallMeta{Traceparent: httpx.TraceFrom(ctx).Child().Traceparent(), CorrelationID: httpx.CorrelationID(ctx)}
	open := func(ctx context.Context, after int64, accept string) (io.ReadCloser, error) {
		return s.cfg.Orchestrator.OpenEvents(ctx, ac, runID, after, accept, meta)
	}
	return s.stream(w, r, c.TenantID, runID, after, open, nil)
}

// acquireStream holds one of tenant t's event stream slots on this
// process, shared by the client and peer APIs (events.Gate): 429
// rate_limited at the tenant's max_concurrent_streams, 503 overloaded at
// Config.MaxEventStreams.
func (s *Server) acquireStream(t store.Tenant) (func(), error) {
	release, err := s.streams.Acquire(t.TenantID, tenancy.StreamCap(t, s.cfg.TenantStreams))
	if err != nil {
		s.m.streamsRefused.WithLabelValues(string(errs.CodeOf(err))).Inc()
	}
	return release, err
}

// stream answers with the events of one run from open: a JSON page when
// the caller asked for application/json, else SSE. Before anything is
// written an error is returned (and becomes the envelope); after that the
// stream ends quietly and the client resumes with Last-Event-ID.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, tenantID, runID string, after int64, open openFunc, keep func(store.Event)) error {
	ctx := r.Context()
	if events.WantsJSON(r) {
		return s.page(w, r, tenantID, runID, after, open, keep)
	}
	// The caller holds a stream slot (acquireStream).
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{}) // streams outlive the body deadline
	s.m.streams.Inc()
	defer s.m.streams.Dec()

	body, err := open(ctx, after, acceptSSE)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(events.WriteTimeout)) // and again before each write
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()

	last := after
	for attempt := 0; ; attempt++ {
		terminal, err := s.pump(ctx, w, rc, body, tenantID, runID, &last, keep)
		body.Close()
		if terminal || ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errCrossTenant) {
			s.log.ErrorContext(ctx, "event stream stopped: upstream crossed tenants", "run_id", runID, "tenant_id", tenantID)
			return nil
		}
		if attempt >= maxReconnects {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
		body, err = open(ctx, last, acceptSSE)
		if err != nil {
			switch errs.CodeOf(err) {
			case errs.DependencyUnavailable, errs.Overloaded, errs.Timeout, errs.Internal, errs.RateLimited:
				body = io.NopCloser(strings.NewReader("")) // retry on the next turn
			default:
				return nil
			}
		}
	}
}

type frameOrErr struct {
	f   Frame
	err error
}

// pump copies frames from body to w, checking that every event belongs to
// the tenant and run, dropping duplicates, and writing heartbeats. It
// reports whether the terminal event was sent.
func (s *Server) pump(ctx context.Context, w io.Writer, rc *http.ResponseController, body io.Reader, tenantID, runID string, last *int64, keep func(store.Event)) (bool, error) {
	frames := make(chan frameOrErr)
	done := make(chan struct{})
	defer close(done)
	go func() {
		rd := events.NewReader(body)
		for {
			f, err := rd.Next()
			select {
			case frames <- frameOrErr{f, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(s.cfg.Heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick.C:
			_ = rc.SetWriteDeadline(time.Now().Add(events.WriteTimeout))
			if err := events.WriteFrame(w, Frame{Comment: true, Data: "ping"}); err != nil {
				return false, err
			}
			_ = rc.Flush()
		case fe := <-frames:
			if fe.err != nil {
				return false, fe.err
			}
			if fe.f.Comment || fe.f.Data == "" {
				continue
			}
			var d sseData
			if err := json.Unmarshal([]byte(fe.f.Data), &d); err != nil {
				return false, err
			}
			e := d.Event
			if e.TenantID != tenantID || e.RunID != runID {
				return false, errCrossTenant
			}
			if e.Sequence <= *last {
				continue
			}
			_ = rc.SetWriteDeadline(time.Now().Add(events.WriteTimeout))
			if err := events.WriteFrame(w, Frame{ID: strconv.FormatInt(e.Sequence, 10), Event: e.Type, Data: fe.f.Data}); err != nil {
				return false, err
			}
			_ = rc.Flush()
			*last = e.Sequence
			if keep != nil {
				keep(e)
			}
			if store.IsTerminalEvent(e.Type) {
				return true, nil
			}
		}
	}
}

// page answers Accept: application/json with {"events":[...],"next_after_sequence":N}.
func (s *Server) page(w http.ResponseWriter, r *http.Request, tenantID, runID string, after int64, open openFunc, keep func(store.Event)) error {
	body, err := open(r.Context(), after, acceptJSON)
	if err != nil {
		return err
	}
	defer body.Close()
	var up struct {
		Events            []json.RawMessage `json:"events"`
		NextAfterSequence int64             `json:"next_after_sequence"`
	}
	if err := json.NewDecoder(io.LimitReader(body, 64<<20)).Decode(&up); err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "upstream sent an unreadable event page")
	}
	next := after
	out := make([]json.RawMessage, 0, len(up.Events))
	for _, raw := range up.Events {
		var e store.Event
		if err := json.Unmarshal(raw, &e); err != nil {
			return errs.Wrap(errs.DependencyUnavailable, err, "upstream sent an unreadable event")
		}
		if e.TenantID != tenantID || e.RunID != runID {
			return errs.E(errs.Internal, "upstream sent an event of another tenant or run")
		}
		if e.Sequence <= after {
			continue
		}
		out = append(out, raw)
		next = max(next, e.Sequence)
		if keep != nil {
			keep(e)
		}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"events": out, "next_after_sequence": next})
	return nil
}

// serveStored answers from ingested replicas (no live tail).
func (s *Server) serveStored(w http.ResponseWriter, r *http.Request, evs []store.Event, after int64) error {
	var sel []store.Event
	next := after
	for _, e := range evs {
		if e.Sequence > after {
			sel = append(sel, e)
			next = max(next, e.Sequence)
		}
	}
	w.Header().Set("X-AgentOS-Event-Source", "replica")
	if events.WantsJSON(r) {
		if sel == nil {
			sel = []store.Event{}
		}
		httpx.JSON(w, r, http.StatusOK, map[string]any{"events": sel, "next_after_sequence": next})
		return nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for _, e := range sel {
		data, err := json.Marshal(sseData{Event: e})
		if err != nil {
			return nil
		}
		if events.WriteFrame(w, Frame{ID: strconv.FormatInt(e.Sequence, 10), Event: e.Type, Data: string(data)}) != nil {
			return nil
		}
	}
	_ = http.NewResponseController(w).Flush()
	return nil
}
