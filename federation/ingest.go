package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
)

// MaxIngestEvents bounds the events of one ingest request.
const MaxIngestEvents = 1000

// decodeIngest reads and checks an ingest body.
func decodeIngest(r *http.Request) (IngestRequest, error) {
	var req IngestRequest
	if err := httpx.Decode(r, &req); err != nil {
		return req, err
	}
	if req.Events == nil {
		return req, errs.Field("events", "is required (an array of event envelopes)")
	}
	if len(req.Events) > MaxIngestEvents {
		return req, errs.Field("events", "at most %d events per request", MaxIngestEvents)
	}
	if m := req.Ingest.Dedupe.Mode; m != "" && m != "event_id" {
		return req, errs.Field("ingest.dedupe.mode", "only \"event_id\" is supported")
	}
	return req, nil
}

// parseIngestEvent accepts an envelope or {"event": envelope} and checks
// the fields every stored event needs.
func parseIngestEvent(raw json.RawMessage) (store.Event, string) {
	var wrapped struct {
		Event *store.Event `json:"event"`
	}
	var e store.Event
	if json.Unmarshal(raw, &wrapped) == nil && wrapped.Event != nil {
		e = *wrapped.Event
	} else if err := json.Unmarshal(raw, &e); err != nil {
		return e, "invalid: not an event envelope"
	}
	switch {
	case !idRE.MatchString(e.EventID):
		return e, "invalid: event_id is required"
	case !idRE.MatchString(e.RunID):
		return e, "invalid: run_id is required"
	case e.TenantID == "":
		return e, "invalid: tenant_id is required"
	case e.Type == "":
		return e, "invalid: type is required"
	case e.Sequence < 1:
		return e, "invalid: sequence must be at least 1"
	}
	return e, ""
}

// ingest validates every event, then stores the acceptable ones, deduped
// by event_id. Events of another tenant are rejected and never stored.
func (s *Server) ingest(r *http.Request, tenantID, source string, req IngestRequest) (int, []IngestRejection, error) {
	ctx := r.Context()
	rejections := []IngestRejection{}
	// good keeps each acceptable event with its position in the batch, so
	// a rejection found at write time (duplicate) names it too.
	type indexed struct {
		i int
		e store.Event
	}
	var good []indexed
	for i, raw := range req.Events {
		e, reason := parseIngestEvent(raw)
		if reason == "" && e.TenantID != tenantID {
			reason = "tenant_mismatch"
		}
		if reason != "" {
			rejections = append(rejections, IngestRejection{Index: i, EventID: e.EventID, Reason: reason})
			continue
		}
		good = append(good, indexed{i, e})
	}
	accepted := 0
	now := s.cfg.Now().UTC()
	seen := make(map[string]bool, len(good))
	for _, g := range good {
		if seen[g.e.EventID] {
			rejections = append(rejections, IngestRejection{Index: g.i, EventID: g.e.EventID, Reason: "duplicate"})
			continue
		}
		seen[g.e.EventID] = true
		ok, err := s.cfg.Store.IngestEvent(ctx, store.IngestedEvent{Event: g.e, SourceStack: source, IngestedAt: now})
		if err == nil && !ok {
			ok, err = s.heldFromAnotherSource(ctx, tenantID, source, g.e)
		}
		if err != nil {
			return accepted, rejections, errs.Wrap(errs.DependencyUnavailable, err,
				"cannot store event at index %d of %d (retry: stored events are deduplicated)", g.i, len(req.Events))
		}
		if !ok {
			rejections = append(rejections, IngestRejection{Index: g.i, EventID: g.e.EventID, Reason: "duplicate"})
			continue
		}
		accepted++
	}
	slices.SortFunc(rejections, func(a, b IngestRejection) int { return a.Index - b.Index })
	s.m.ingested.WithLabelValues("accepted").Add(float64(accepted))
	s.m.ingested.WithLabelValues("rejected").Add(float64(len(rejections)))
	return accepted, rejections, nil
}

func (s *Server) answerIngest(w http.ResponseWriter, r *http.Request, rec store.AuditRecord, tenantID, source string, req IngestRequest) error {
	accepted, rejections, err := s.ingest(r, tenantID, source, req)
	rec.Details["accepted"] = accepted
	rec.Details["rejected"] = len(rejections)
	rec.Details["source_stack_id"] = source
	rec.Outcome = "success"
	if err != nil {
		rec.Outcome = "failed"
	}
	s.audit(r, rec)
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"accepted": accepted, "rejected": len(rejections), "rejections": rejections})
	return nil
}

// handleIngest stores events pushed by an authenticated client (client API).
func (s *Server) handleIngest(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireAny(r.Context(), auth.ScopeEventsIngest)
	if err != nil {
		return err
	}
	req, err := decodeIngest(r)
	if err != nil {
		return err
	}
	if a, ok := parseAuthBody(req.Auth); ok && a.TenantID != "" && a.TenantID != ac.TenantID {
		return errs.E(errs.Forbidden, "auth.tenant_id %s differs from the credential's tenant", a.TenantID).
			WithDetails(map[string]any{"field": "auth.tenant_id"})
	}
	source := req.Ingest.SourceStackID
	if source == "" {
		source = req.PeerID
	}
	if !idRE.MatchString(source) {
		return errs.Field("ingest.source_stack_id", "is required (or peer_id): the stack the events come from")
	}
	// A configured peer's events come over the peer API, signed by it;
	// only a platform admin may write them here (a restore, say).
	if _, isPeer := s.cfg.Directory.Key(source); (isPeer || source == s.cfg.StackID) && !ac.HasRole(auth.RolePlatformAdmin) {
		return errs.E(errs.Forbidden, "ingest.source_stack_id %s is a federation peer (or this node); its events arrive over the peer API", source).
			WithDetails(map[string]any{"field": "ingest.source_stack_id"})
	}
	return s.answerIngest(w, r, store.AuditRecord{TenantID: ac.TenantID, PrincipalID: ac.Principal.PrincipalID,
		Action: "federation.ingest", Target: "stack:" + source, Details: map[string]any{"direction": "inbound", "api": "client"}},
		ac.TenantID, source, req)
}

// handlePeerIngest stores events replicated by a peer (peer API): the
// source is the verified peer, the tenant the token's.
func (s *Server) handlePeerIngest(w http.ResponseWriter, r *http.Request) error {
	c := claimsFrom(r.Context())
	if !c.HasScope(auth.ScopeEventsIngest) {
		return s.peerRefused(r, c, "federation.ingest", errs.E(errs.Forbidden, "identity token lacks scope %q", auth.ScopeEventsIngest).
			WithDetails(map[string]any{"required_scope": auth.ScopeEventsIngest}))
	}
	if _, _, err := s.localContext(r.Context(), c); err != nil {
		return s.peerRefused(r, c, "federation.ingest", err)
	}
	req, err := decodeIngest(r)
	if err != nil {
		return err
	}
	if a, ok := parseAuthBody(req.Auth); ok && a.TenantID != "" && a.TenantID != c.TenantID {
		return s.peerRefused(r, c, "federation.ingest", errs.E(errs.Forbidden, "auth.tenant_id differs from the identity token's tenant").
			WithDetails(map[string]any{"field": "auth.tenant_id"}))
	}
	for _, src := range []string{req.Ingest.SourceStackID, req.PeerID} {
		if src != "" && src != c.Issuer {
			return s.peerRefused(r, c, "federation.ingest", errs.E(errs.Forbidden, "source %s is not the calling peer %s", src, c.Issuer).
				WithDetails(map[string]any{"field": "ingest.source_stack_id"}))
		}
	}
	return s.answerIngest(w, r, store.AuditRecord{TenantID: c.TenantID, PrincipalID: c.Subject,
		Action: "federation.ingest", Target: "stack:" + c.Issuer,
		Details: map[string]any{"direction": "inbound", "api": "peer", "peer_stack_id": c.Issuer}},
		c.TenantID, c.Issuer, req)
}

// heldFromAnotherSource reports, for an event whose event_id this node
// already holds, whether it came from another source than this ingest's:
// typically the replica this node keeps of a stream it proxied (proxy.go),
// which the original API's clients then ingest themselves. Such a delivery
// is accepted (the event is held once, nothing is stored again, so a
// redelivery is acknowledged the same way); a duplicate is an event this
// same source ingested before, or one repeated within one request.
func (s *Server) heldFromAnotherSource(ctx context.Context, tenantID, source string, e store.Event) (bool, error) {
	mine, err := s.cfg.Store.ListIngestedEvents(ctx, tenantID, e.RunID, source)
	if err != nil {
		return false, err
	}
	for _, m := range mine {
		if m.EventID == e.EventID {
			return false, nil
		}
	}
	return true, nil
}
