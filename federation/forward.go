package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/nexixai/agentos/federation/identity"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9_.:\-]{1,128}$`)

// EventsPath is the federation path of a forwarded run's events.
func EventsPath(runID string) string {
	return "/v1/federation/runs/" + url.PathEscape(runID) + "/events"
}

// decodeForward reads a forward body ({"forward":{...}} or the bare inner
// object) and checks the fields a forward needs.
func decodeForward(r *http.Request) (*Forward, error) {
	var raw json.RawMessage
	if err := httpx.Decode(r, &raw); err != nil {
		return nil, err
	}
	var wrapped ForwardRequest
	if err := httpx.DecodeBytes(raw, &wrapped); err != nil {
		return nil, err
	}
	f := wrapped.Forward
	prefix := "forward."
	if f == nil {
		f = &Forward{}
		if err := httpx.DecodeBytes(raw, f); err != nil {
			return nil, err
		}
		prefix = ""
	}
	rr := f.RunRequest
	if rr == nil {
		return nil, errs.Field(prefix+"run_request", "is required")
	}
	if !idRE.MatchString(rr.AgentID) {
		return nil, errs.Field(prefix+"run_request.agent_id", "is required: 1-128 letters, digits, '_', '.', ':', '-'")
	}
	if err := checkInput(rr.Input); err != nil {
		return nil, errs.Field(prefix+"run_request.input", "%s", err.Error())
	}
	for name, v := range map[string]json.RawMessage{"context": rr.Context, "tooling": rr.Tooling, "run_options": rr.RunOptions} {
		if len(v) > 0 && string(v) != "null" && !isObject(v) {
			return nil, errs.Field(prefix+"run_request."+name, "must be an object")
		}
	}
	if rr.IdempotencyKey == "" {
		rr.IdempotencyKey = r.Header.Get("Idempotency-Key")
	}
	if len(rr.IdempotencyKey) > 255 {
		return nil, errs.Field(prefix+"run_request.idempotency_key", "must be at most 255 characters")
	}
	return f, nil
}

func isObject(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && v[0] == '{'
}

// checkInput accepts "text" or {"type":"text","text":"..."}.
func checkInput(v json.RawMessage) error {
	if len(v) == 0 || string(v) == "null" {
		return errors.New("is required")
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return nil
	}
	var in struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if !isObject(v) || json.Unmarshal(v, &in) != nil {
		return errors.New(`must be a string or {"type":"text","text":"..."}`)
	}
	if in.Text == nil {
		return errors.New("text is required")
	}
	return nil
}

// traceFor picks the trace a forward continues: the body's traceparent
// when it is valid, else the request's.
func traceFor(ctx context.Context, bodyTP string) httpx.Trace {
	if bodyTP != "" {
		if t := httpx.ParseTraceparent(bodyTP); t.ParentID != "" {
			return t
		}
	}
	return httpx.TraceFrom(ctx)
}

// forwardFailed returns how a forward handler ends on an error: the
// error's code is counted for direction, rec (as it is then) is audited
// with outcome and details.error_code, and the error is returned.
func (s *Server) forwardFailed(r *http.Request, rec *store.AuditRecord, direction, outcome string) func(error) error {
	return func(err error) error {
		code := errs.CodeOf(err)
		s.m.forwards.WithLabelValues(direction, string(code)).Inc()
		rec.Outcome = outcome
		rec.Details["error_code"] = string(code)
		s.audit(r, *rec)
		return err
	}
}

// handleForward forwards a run to a peer (client API).
func (s *Server) handleForward(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ac, err := requireAny(ctx, auth.ScopeRunsForward, auth.ScopeRunsCreate)
	if err != nil {
		return err
	}
	f, err := decodeForward(r)
	if err != nil {
		return err
	}
	if a, ok := parseAuthBody(f.Auth); ok && a.TenantID != "" && a.TenantID != ac.TenantID {
		return errs.E(errs.Forbidden, "forward.auth.tenant_id %s differs from the credential's tenant", a.TenantID).
			WithDetails(map[string]any{"field": "forward.auth.tenant_id"})
	}
	rec := store.AuditRecord{TenantID: ac.TenantID, PrincipalID: ac.Principal.PrincipalID, Action: "federation.forward",
		Target: "agent:" + f.RunRequest.AgentID, Details: map[string]any{"direction": "outbound"}}
	fail := s.forwardFailed(r, &rec, "outbound", "failed")

	target, err := s.cfg.Directory.Select(ctx, f.TargetSelector, CapRunsForward)
	if err != nil {
		return fail(err)
	}
	peerID := target.Peer.StackID
	rec.Details["peer_stack_id"] = peerID
	trace := traceFor(ctx, f.Traceparent).Child()
	tok, err := s.cfg.Signer.Sign(identity.Claims{Audience: peerID, TenantID: ac.TenantID,
		Subject: ac.Principal.PrincipalID, PrincipalType: ac.Principal.PrincipalType, Scopes: federatedScopes(ac)}, identity.DefaultTTL)
	if err != nil {
		return fail(errs.Wrap(errs.Internal, err, "cannot sign identity token"))
	}
	acJSON, _ := json.Marshal(ac)
	body, _ := json.Marshal(ForwardRequest{Forward: &Forward{
		TargetSelector: TargetSelector{StackID: peerID, Region: target.Peer.Region,
			RequiredCapabilities: f.TargetSelector.RequiredCapabilities, PreferredModelTier: f.TargetSelector.PreferredModelTier},
		Auth: acJSON, RunRequest: f.RunRequest, Traceparent: trace.Traceparent(),
	}})
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+tok)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Accept", "application/json")
	hdr.Set("traceparent", trace.Traceparent())
	hdr.Set("X-Correlation-Id", httpx.CorrelationID(ctx))
	if k := f.RunRequest.IdempotencyKey; k != "" {
		hdr.Set("Idempotency-Key", k)
	}
	resp, err := s.cfg.Directory.Do(ctx, peerID, http.MethodPost, "/v1/federation/runs:forward", bytes.NewReader(body), hdr)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fail(peerError(resp, peerID))
	}
	var out struct {
		Forwarded Forwarded `json:"forwarded"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.Forwarded.RemoteRunID == "" {
		return fail(errs.Wrap(errs.DependencyUnavailable, err, "peer %s sent an unreadable forward result", peerID))
	}
	fw := out.Forwarded
	if fw.TenantID != ac.TenantID || fw.RemoteStackID != peerID || !idRE.MatchString(fw.RemoteRunID) {
		return fail(errs.E(errs.DependencyUnavailable, "peer %s answered for another tenant or stack", peerID))
	}
	replayed := resp.StatusCode == http.StatusOK
	err = s.cfg.Store.PutForward(ctx, store.Forward{TenantID: ac.TenantID, RunID: fw.RemoteRunID, PeerStackID: peerID,
		PrincipalID: ac.Principal.PrincipalID, RemoteEventsURL: fw.RemoteEventsURL, CreatedAt: s.cfg.Now().UTC()})
	if errors.Is(err, errs.ErrConflict) {
		prev, gerr := s.cfg.Store.GetForward(ctx, ac.TenantID, fw.RemoteRunID)
		if gerr != nil || prev.PeerStackID != peerID {
			return fail(errs.E(errs.Conflict, "run %s is already recorded as forwarded to another peer", fw.RemoteRunID))
		}
		replayed, err = true, nil
	}
	if err != nil {
		return fail(errs.Wrap(errs.DependencyUnavailable, err, "cannot record the forward"))
	}
	s.m.forwards.WithLabelValues("outbound", "ok").Inc()
	rec.Outcome = "success"
	rec.Target = "run:" + fw.RemoteRunID
	rec.Details["remote_run_id"] = fw.RemoteRunID
	rec.Details["replayed"] = replayed
	s.audit(r, rec)

	status := http.StatusCreated
	if replayed {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	fw.RemoteEventsURL = EventsPath(fw.RemoteRunID)
	httpx.JSON(w, r, status, map[string]any{"forwarded": fw})
	return nil
}

// runShape is the part of a run request the receiving node checks
// against the tenant's entitlements before anything is created.
type runShape struct {
	RunOptions struct {
		ModelTier string `json:"model_tier"`
	} `json:"run_options"`
	Tooling struct {
		ToolAllowlist []string `json:"tool_allowlist"`
		Tools         []string `json:"tools"`
	} `json:"tooling"`
}

// checkEntitlements refuses a run the tenant is not entitled to here.
func checkEntitlements(t store.Tenant, rr *RunRequest) error {
	var shape runShape
	if len(rr.RunOptions) > 0 {
		_ = json.Unmarshal(rr.RunOptions, &shape.RunOptions)
	}
	if len(rr.Tooling) > 0 {
		_ = json.Unmarshal(rr.Tooling, &shape.Tooling)
	}
	if tier := strings.TrimPrefix(shape.RunOptions.ModelTier, "tier:"); tier != "" && !t.Entitlements.AllowsTier(tier) {
		return errs.E(errs.Forbidden, "tenant %s is not entitled to model tier %q on this node", t.TenantID, tier).
			WithDetails(map[string]any{"field": "forward.run_request.run_options.model_tier", "reason": "not_entitled"})
	}
	for _, tool := range append(shape.Tooling.ToolAllowlist, shape.Tooling.Tools...) {
		if !t.Entitlements.AllowsTool(tool) {
			return errs.E(errs.Forbidden, "tenant %s is not entitled to tool %q on this node", t.TenantID, tool).
				WithDetails(map[string]any{"field": "forward.run_request.tooling", "reason": "not_entitled"})
		}
	}
	return nil
}

// handlePeerForward creates a forwarded run on this node (peer API).
func (s *Server) handlePeerForward(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	c := claimsFrom(ctx)
	rec := store.AuditRecord{TenantID: c.TenantID, PrincipalID: c.Subject, Action: "federation.forward.accept",
		Details: map[string]any{"direction": "inbound", "peer_stack_id": c.Issuer, "jti": c.JTI}}
	fail := s.forwardFailed(r, &rec, "inbound", "denied")
	if !c.HasScope(auth.ScopeRunsForward) && !c.HasScope(auth.ScopeRunsCreate) {
		return fail(errs.E(errs.Forbidden, "identity token lacks scope %q", auth.ScopeRunsForward).
			WithDetails(map[string]any{"required_scope": auth.ScopeRunsForward}))
	}
	ac, tenant, err := s.localContext(ctx, c)
	if err != nil {
		return fail(err)
	}
	f, err := decodeForward(r)
	if err != nil {
		return fail(err)
	}
	rec.Target = "agent:" + f.RunRequest.AgentID
	if a, ok := parseAuthBody(f.Auth); ok && a.TenantID != "" && a.TenantID != c.TenantID {
		return fail(errs.E(errs.Forbidden, "forward.auth.tenant_id differs from the identity token's tenant").
			WithDetails(map[string]any{"field": "forward.auth.tenant_id"}))
	}
	if sid := f.TargetSelector.StackID; sid != "" && sid != s.cfg.StackID {
		return fail(errs.Field("forward.target_selector.stack_id", "names %s, this node is %s", sid, s.cfg.StackID))
	}
	if err := checkEntitlements(tenant, f.RunRequest); err != nil {
		return fail(err)
	}
	rr := f.RunRequest
	create := map[string]json.RawMessage{"input": rr.Input}
	for k, v := range map[string]json.RawMessage{"context": rr.Context, "tooling": rr.Tooling, "run_options": rr.RunOptions} {
		if len(v) > 0 && string(v) != "null" {
			create[k] = v
		}
	}
	if rr.IdempotencyKey != "" {
		create["idempotency_key"], _ = json.Marshal(rr.IdempotencyKey)
	}
	body, _ := json.Marshal(create)
	trace := traceFor(ctx, f.Traceparent).Child()
	run, replayed, err := s.cfg.Orchestrator.CreateRun(ctx, ac, rr.AgentID, body, rr.IdempotencyKey,
		CallMeta{Traceparent: trace.Traceparent(), CorrelationID: httpx.CorrelationID(ctx)})
	if err != nil {
		return fail(err)
	}
	if run.TenantID != c.TenantID {
		return fail(errs.E(errs.Internal, "orchestrator created the run in another tenant"))
	}
	if err := s.recordInbound(ctx, c, run.RunID); err != nil {
		return fail(err)
	}
	s.m.forwards.WithLabelValues("inbound", "ok").Inc()
	rec.Outcome = "success"
	rec.Target = "run:" + run.RunID
	rec.Details["replayed"] = replayed
	s.audit(r, rec)
	status := http.StatusCreated
	if replayed {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	httpx.JSON(w, r, status, map[string]any{"forwarded": Forwarded{TenantID: c.TenantID, RemoteStackID: s.cfg.StackID,
		RemoteRunID: run.RunID, RemoteEventsURL: EventsPath(run.RunID), Status: string(run.Status)}})
	return nil
}

// inboundPrefix marks the receiving side's forward index entries. The
// store keeps one kind of Forward record keyed by (tenant, run); an
// inbound forward is kept as a Forward whose RunID is "inbound/<local run
// id>" and whose PeerStackID is the stack that forwarded the run (the
// identity token's issuer), PrincipalID its principal. The '/' cannot
// appear in a run id (idRE), so these keys never collide with the outbound
// entries (RunID = the remote run id, PeerStackID = the peer holding it)
// and a client can never look one up through the client API.
const inboundPrefix = "inbound/"

func inboundKey(runID string) string { return inboundPrefix + runID }

// recordInbound records that the calling peer forwarded runID for its
// tenant, so that only that peer and tenant may read the run's events
// through the peer API. An idempotent replay finds its own record; a run
// recorded for another peer (the same tenant, principal and idempotency
// key used through two peers) is a conflict.
func (s *Server) recordInbound(ctx context.Context, c identity.Claims, runID string) error {
	err := s.cfg.Store.PutForward(ctx, store.Forward{TenantID: c.TenantID, RunID: inboundKey(runID), PeerStackID: c.Issuer,
		PrincipalID: c.Subject, RemoteEventsURL: EventsPath(runID), CreatedAt: s.cfg.Now().UTC()})
	if errors.Is(err, errs.ErrConflict) {
		prev, gerr := s.cfg.Store.GetForward(ctx, c.TenantID, inboundKey(runID))
		if gerr != nil {
			return errs.Wrap(errs.DependencyUnavailable, gerr, "cannot read the forward index")
		}
		if prev.PeerStackID != c.Issuer {
			return errs.E(errs.Conflict, "run %s was forwarded by another stack; use another idempotency key", runID)
		}
		return nil
	}
	if err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "cannot record the inbound forward")
	}
	return nil
}

// inboundForward returns the inbound record of runID if the calling peer
// forwarded it for its tenant; not_found otherwise (another stack, another
// tenant, or a run that was never forwarded here).
func (s *Server) inboundForward(ctx context.Context, c identity.Claims, runID string) (store.Forward, error) {
	notFound := errs.E(errs.NotFound, "run %s not found", runID)
	f, err := s.cfg.Store.GetForward(ctx, c.TenantID, inboundKey(runID))
	switch {
	case errors.Is(err, errs.ErrNotFound):
		return store.Forward{}, notFound
	case err != nil:
		return store.Forward{}, errs.Wrap(errs.DependencyUnavailable, err, "cannot read the forward index")
	case f.PeerStackID != c.Issuer || f.TenantID != c.TenantID:
		return store.Forward{}, notFound
	}
	return f, nil
}
