package modelpolicy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/modelpolicy/policy"
	"github.com/nexixai/agentos/modelpolicy/providers"
)

func hf(fn httpx.HandlerFunc) http.Handler { return httpx.H(fn) }

func chain(mux *http.ServeMux, log *slog.Logger, observe func(*http.Request, int, time.Duration)) http.Handler {
	return httpx.Chain(httpx.Routed(mux), httpx.Standard(log, observe)...)
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) error {
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ok", "service": ServiceName, "version": s.cfg.Version})
	return nil
}

func (s *Server) handleLive(w http.ResponseWriter, r *http.Request) error {
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ok", "service": ServiceName})
	return nil
}

// backendHealth checks every backend, caching results for 10 s.
func (s *Server) backendHealth(ctx context.Context) map[string]error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if s.health != nil && s.now().Sub(s.healthedAt) < 10*time.Second {
		return s.health
	}
	out := map[string]error{}
	for name, p := range s.provs {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := p.Health(cctx)
		cancel()
		out[name] = err
		up := 0.0
		if err == nil {
			up = 1
		}
		s.metrics.backendUp.WithLabelValues(name).Set(up)
	}
	s.health, s.healthedAt = out, s.now()
	return out
}

// handleReady answers 503 naming the store when it is down, or the
// backends when none is healthy; the body lists every backend.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(ctx); err != nil {
		return (&errs.Error{Code: errs.DependencyUnavailable, Message: "store is unreachable", Err: err}).
			WithDetails(map[string]any{"dependency": "store"})
	}
	backends := map[string]any{}
	healthy := 0
	var failing []string
	for name, err := range s.backendHealth(ctx) {
		st := map[string]any{"status": "ok", "breaker": s.breakers.State(name)}
		if err != nil {
			st["status"] = "down"
			st["error"] = errs.As(err).Message
			failing = append(failing, name)
		} else {
			healthy++
		}
		backends[name] = st
	}
	if healthy == 0 {
		slices.Sort(failing)
		return errs.E(errs.DependencyUnavailable, "no model backend is healthy").
			WithDetails(map[string]any{"dependency": "backends", "failing": failing, "backends": backends})
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"status": "ready",
		"checks": map[string]any{"store": "ok", "backends": backends}})
	return nil
}

// caller is the effective identity of a governed call.
type caller struct {
	ac     auth.Context
	tenant store.Tenant
	policy *policy.Policy
}

// bodyAuth is the auth object of invoke and policy-check bodies; the flat
// principal_id / subject_type form is accepted too (CONTRACT §3).
type bodyAuth struct {
	TenantID      string              `json:"tenant_id"`
	Principal     *auth.Principal     `json:"principal"`
	PrincipalID   string              `json:"principal_id"`
	SubjectType   string              `json:"subject_type"`
	PolicyContext *auth.PolicyContext `json:"policy_context"`
}

// resolveCaller checks the credential's scope and the body's auth object,
// loads the tenant (active) and its policy. A platform_admin credential may
// act for the body's tenant; anyone else must name its own tenant. A body
// principal other than the credential's is delegation: only a
// tenant_service or platform_admin may act on behalf of another principal
// (of the tenant the call runs in; tenant_user and tenant_admin get 403
// naming auth.principal_id), and only a platform_admin may name one of the
// platform's reserved principals (400). The call is then made for the body
// principal (policy, budget and usage are its), and audit records name the
// credential's principal as the actor and the body principal as
// on_behalf_of.
func (s *Server) resolveCaller(ctx context.Context, scope string, body *bodyAuth) (caller, error) {
	ac, err := auth.Require(ctx, scope)
	if err != nil {
		return caller{}, err
	}
	if body != nil {
		if body.TenantID != "" && body.TenantID != ac.TenantID {
			if !ac.HasRole(auth.RolePlatformAdmin) {
				return caller{}, errs.E(errs.Forbidden, "auth.tenant_id %q differs from the credential's tenant", body.TenantID).
					WithDetails(map[string]any{"field": "auth.tenant_id"})
			}
			ac.TenantID = body.TenantID
		}
		if err := delegate(&ac, body); err != nil {
			return caller{}, err
		}
		if body.PolicyContext != nil {
			ac.PolicyContext = *body.PolicyContext
		}
	}
	if ac.TenantID == "" {
		return caller{}, errs.E(errs.Unauthorized, "credential names no tenant")
	}
	t, err := s.tenants.GetTenant(ctx, ac.TenantID)
	if err != nil {
		if errs.CodeOf(err) == errs.NotFound {
			return caller{}, errs.E(errs.Forbidden, "tenant %q is unknown", ac.TenantID)
		}
		return caller{}, errs.Wrap(errs.DependencyUnavailable, err, "cannot load tenant")
	}
	if t.Status != store.TenantActive {
		return caller{}, errs.E(errs.Forbidden, "tenant %q is %s", t.TenantID, t.Status)
	}
	pid := cmpStr(t.DefaultPolicyID, s.cat.DefaultPolicy)
	p, ok := s.cat.Policies[pid]
	if !ok {
		s.log.WarnContext(ctx, "tenant policy unknown, using default", "tenant_id", t.TenantID, "policy_id", pid)
		p = s.cat.Policies[s.cat.DefaultPolicy]
	}
	httpx.SetLogTenant(ctx, ac.TenantID, ac.Principal.PrincipalID)
	return caller{ac: ac, tenant: t, policy: p}, nil
}

// delegate applies the body's principal to ac (see resolveCaller).
func delegate(ac *auth.Context, body *bodyAuth) error {
	field, p := "auth.principal_id", auth.Principal{PrincipalID: body.PrincipalID, PrincipalType: cmpStr(body.SubjectType, "user")}
	if body.Principal != nil && body.Principal.PrincipalID != "" {
		field, p = "auth.principal.principal_id", *body.Principal
	}
	if p.PrincipalID == "" || p.PrincipalID == ac.Principal.PrincipalID {
		return nil
	}
	if !auth.ValidPrincipalID(p.PrincipalID) {
		return errs.Field(field, "want 1-128 of A-Z a-z 0-9 _ . : -")
	}
	if !ac.MayActOnBehalf() {
		return errs.E(errs.Forbidden, "%s: a %s may act only as itself (%s); acting on behalf of another principal needs the tenant_service or platform_admin role",
			field, strings.Join(ac.Roles, ","), ac.Principal.PrincipalID).WithDetails(map[string]any{"field": field})
	}
	if auth.ReservedPrincipal(p.PrincipalID) && !ac.HasRole(auth.RolePlatformAdmin) {
		return errs.Field(field, "%q is reserved for the platform", p.PrincipalID)
	}
	if p.PrincipalType == "" {
		p.PrincipalType = "user"
	}
	if p.PrincipalType != "user" && p.PrincipalType != "service" {
		return errs.Field(field[:len(field)-len("principal_id")]+"principal_type", "want user or service")
	}
	actor := ac.ActorID()
	ac.Principal = p
	if p.PrincipalID != actor {
		ac.Actor = actor
	} else {
		ac.Actor = ""
	}
	return nil
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// entitled reports whether the tenant may use model m (tier and backend).
func entitled(t store.Tenant, m *ModelConfig) (bool, string) {
	if !t.Entitlements.AllowsBackend(m.Backend) {
		return false, "backend " + m.Backend + " is not in the tenant's model_backends_allowed"
	}
	for _, tier := range m.Tiers {
		if t.Entitlements.AllowsTier(tier) {
			return true, ""
		}
	}
	if len(m.Tiers) == 0 && slices.Contains(t.Entitlements.ModelTiersAllowed, "*") {
		return true, ""
	}
	return false, "tiers " + strings.Join(m.Tiers, ",") + " of model " + m.ID() + " are not in the tenant's model_tiers_allowed"
}

func wireModel(m *ModelConfig) modelport.Model {
	return modelport.Model{ModelID: m.ID(), Provider: m.Backend, Capabilities: append([]string{}, m.Capabilities...),
		MaxOutputTokens: m.MaxOutputTokens, ContextWindowTokens: m.ContextWindowTokens, Tiers: append([]string{}, m.Tiers...)}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) error {
	c, err := s.resolveCaller(r.Context(), auth.ScopeModelsList, nil)
	if err != nil {
		return err
	}
	models := []modelport.Model{}
	for i := range s.cat.Models {
		m := &s.cat.Models[i]
		if ok, _ := entitled(c.tenant, m); !ok || !c.policy.Models.Permits(m.ID()) || !c.policy.Backends.Permits(m.Backend) {
			continue
		}
		models = append(models, wireModel(m))
	}
	// The original API's ModelsListResponse admits no other properties: the
	// OpenAI-shaped list is served under the OpenAI base URL, not here.
	httpx.JSON(w, r, http.StatusOK, map[string]any{"models": models})
	return nil
}

// invokeBody is the body of POST /v1/models:invoke.
type invokeBody struct {
	Auth        *bodyAuth     `json:"auth"`
	Request     *invokeFields `json:"request"`
	Traceparent string        `json:"traceparent"`
}

type invokeFields struct {
	RequestID    string                 `json:"request_id"`
	Operation    string                 `json:"operation"`
	ModelRef     string                 `json:"model_ref"`
	Requirements modelport.Requirements `json:"requirements"`
	Input        json.RawMessage        `json:"input"`
	Generation   modelport.Generation   `json:"generation"`
	AgentID      string                 `json:"agent_id"`
	RunID        string                 `json:"run_id"`
	// Stream asks for a chat's content as it is generated (invokeStream).
	Stream bool `json:"stream"`
}

func (s *Server) handleInvoke(w http.ResponseWriter, r *http.Request) error {
	var body invokeBody
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	if body.Request == nil {
		return errs.Field("request", "is required")
	}
	if r.Header.Get("traceparent") == "" && body.Traceparent != "" {
		// Continue the trace named in the body when no header carried one.
		tr := httpx.ParseTraceparent(body.Traceparent)
		r = r.WithContext(httpx.WithTrace(r.Context(), tr))
		w.Header().Set("traceparent", tr.Traceparent())
	}
	c, err := s.resolveCaller(r.Context(), auth.ScopeModelsInvoke, body.Auth)
	if err != nil {
		return err
	}
	f := body.Request
	inv := &invocation{action: "model.invoke", requestID: cmpStr(f.RequestID, ids.New("req_")), modelRef: f.ModelRef,
		req: f.Requirements, agentID: f.AgentID, runID: f.RunID,
		maxTokensField: "request.generation.max_output_tokens", inputField: "request.input"}
	if err := validateRequirements("request.requirements", f.Requirements); err != nil {
		return err
	}
	if len(f.Input) == 0 || string(f.Input) == "null" {
		return errs.Field("request.input", "is required")
	}
	switch f.Operation {
	case "chat":
		var in modelport.ChatInput
		if err := decodeField("request.input", f.Input, &in); err != nil {
			return err
		}
		if err := validateChat("request.input", in, f.Generation); err != nil {
			return err
		}
		inv.op = opChat
		inv.chat.Messages, inv.chat.Tools, inv.chat.ToolChoice = in.Messages, in.Tools, in.ToolChoice
		inv.chat.Temperature, inv.chat.TopP, inv.chat.MaxOutputTokens = f.Generation.Temperature, f.Generation.TopP, f.Generation.MaxOutputTokens
	case "embed":
		if f.Stream {
			return errs.Field("request.stream", "applies to operation chat only")
		}
		var in modelport.EmbedInput
		if err := decodeField("request.input", f.Input, &in); err != nil {
			return err
		}
		if err := validateTexts("request.input.texts", in.Texts); err != nil {
			return err
		}
		// The original API admits base64 here, but its EmbeddingVector is
		// an array of numbers either way: both are answered with floats.
		if in.EncodingFormat != "" && in.EncodingFormat != "float" && in.EncodingFormat != "base64" {
			return errs.Field("request.input.encoding_format", "must be \"float\" or \"base64\"")
		}
		inv.op, inv.texts = opEmbed, in.Texts
	case "":
		return errs.Field("request.operation", "is required (chat or embed)")
	default:
		return errs.Field("request.operation", "must be chat or embed, got %q", f.Operation)
	}
	if f.Stream {
		return s.invokeStream(w, r, c, inv)
	}
	res, err := s.invoke(r.Context(), c, inv)
	if err != nil {
		return err
	}
	resp := map[string]any{"response": res.canonical(inv), "traceparent": httpx.TraceFrom(r.Context()).Traceparent()}
	httpx.JSON(w, r, http.StatusOK, resp)
	return nil
}

// invokeStream serves a chat with request.stream: text/event-stream of
// "delta" events ({"delta":{"content":...}}) while the model generates,
// under the same governance as the JSON answer (streamGuard for redaction),
// then one "response" event with the canonical response. The stream
// starts at the first delta: an error before it is the usual error
// answer (status and envelope); one after it is an "error" event with the
// envelope. A caller that leaves stops the backend call.
func (s *Server) invokeStream(w http.ResponseWriter, r *http.Request, c caller, inv *invocation) error {
	started := false
	rc := http.NewResponseController(w)
	frame := func(event string, v any) error {
		if !started {
			started = true
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	inv.onDelta = func(d providers.Delta) error {
		if err := r.Context().Err(); err != nil {
			return err
		}
		return frame("delta", map[string]any{"delta": map[string]any{"content": d.Content}})
	}
	corr := httpx.CorrelationID(r.Context())
	res, err := s.invoke(r.Context(), c, inv)
	if err != nil {
		if !started {
			return err
		}
		_ = frame("error", map[string]any{"error": httpx.BodyOf(err), "correlation_id": corr})
		return nil
	}
	streamRest(inv, res)
	_ = frame("response", map[string]any{"response": res.canonical(inv),
		"traceparent": httpx.TraceFrom(r.Context()).Traceparent(), "correlation_id": corr})
	return nil
}

func decodeField(field string, raw json.RawMessage, dst any) error {
	if err := httpx.DecodeBytes(raw, dst); err != nil {
		e := errs.As(err)
		sub, _ := e.Details["field"].(string)
		name := field
		if sub != "" && sub != "body" {
			name = field + "." + sub
		}
		msg := e.Message
		if i := strings.Index(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return errs.Field(name, "%s", msg)
	}
	return nil
}

func validateRequirements(field string, q modelport.Requirements) error {
	switch {
	case q.MaxLatencyMs < 0:
		return errs.Field(field+".max_latency_ms", "must not be negative")
	case q.MaxCostUSD < 0:
		return errs.Field(field+".max_cost_usd", "must not be negative")
	case q.MinContextTokens < 0:
		return errs.Field(field+".min_context_tokens", "must not be negative")
	}
	return nil
}

var validRoles = []string{"system", "user", "assistant", "tool", "developer"}

func validateChat(field string, in modelport.ChatInput, g modelport.Generation) error {
	if len(in.Messages) == 0 {
		return errs.Field(field+".messages", "at least one message is required")
	}
	for i, m := range in.Messages {
		if !slices.Contains(validRoles, m.Role) {
			return errs.Field(field+".messages["+itoa(i)+"].role", "must be system, user, assistant or tool, got %q", m.Role)
		}
	}
	for i, t := range in.Tools {
		if t.Name == "" && t.ToolID == "" {
			return errs.Field(field+".tools["+itoa(i)+"].name", "is required")
		}
		if len(t.InputSchema) > 0 && !json.Valid(t.InputSchema) {
			return errs.Field(field+".tools["+itoa(i)+"].input_schema", "must be a JSON schema object")
		}
	}
	switch {
	case g.MaxOutputTokens < 0:
		return errs.Field("request.generation.max_output_tokens", "must not be negative")
	case g.Temperature != nil && (*g.Temperature < 0 || *g.Temperature > 2):
		return errs.Field("request.generation.temperature", "must be within 0..2")
	case g.TopP != nil && (*g.TopP < 0 || *g.TopP > 1):
		return errs.Field("request.generation.top_p", "must be within 0..1")
	}
	return nil
}

func validateTexts(field string, texts []string) error {
	if len(texts) == 0 {
		return errs.Field(field, "at least one text is required")
	}
	if len(texts) > 2048 {
		return errs.Field(field, "at most 2048 texts per call")
	}
	return nil
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// policyCheckBody is the body of POST /v1/policy:check; the bare inner
// object is accepted too.
type policyCheckBody struct {
	Auth        *bodyAuth                     `json:"auth"`
	PolicyCheck *modelport.PolicyCheckRequest `json:"policy_check"`
	// Bare form.
	RequestID string          `json:"request_id"`
	Content   json.RawMessage `json:"content"`
	Ruleset   string          `json:"ruleset"`
}

func (s *Server) handlePolicyCheck(w http.ResponseWriter, r *http.Request) error {
	var body policyCheckBody
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	field := "policy_check"
	pc := body.PolicyCheck
	if pc == nil {
		field = ""
		pc = &modelport.PolicyCheckRequest{RequestID: body.RequestID, Ruleset: body.Ruleset}
		if len(body.Content) > 0 {
			var str string
			if json.Unmarshal(body.Content, &str) == nil {
				pc.Content = modelport.Content{Type: "text", Text: str}
			} else if err := decodeField("content", body.Content, &pc.Content); err != nil {
				return err
			}
		} else {
			return errs.Field("policy_check", "is required")
		}
	}
	prefix := func(f string) string {
		if field == "" {
			return f
		}
		return field + "." + f
	}
	if pc.Content.Type != "" && pc.Content.Type != "text" {
		return errs.Field(prefix("content.type"), "must be \"text\"")
	}
	c, err := s.resolveCaller(r.Context(), auth.ScopePolicyCheck, body.Auth)
	if err != nil {
		return err
	}
	p := c.policy
	// "default" names the caller's own policy (the original API's clients
	// send it); other names are the catalogue's policies.
	if pc.Ruleset != "" && pc.Ruleset != "default" {
		rp, ok := s.cat.Policies[pc.Ruleset]
		if !ok {
			return errs.Field(prefix("ruleset"), "unknown ruleset %q", pc.Ruleset)
		}
		p = rp
	}
	reqID := cmpStr(pc.RequestID, ids.New("req_"))
	o := policy.NewOutcome()
	text := p.ApplyText(policy.StageInput, pc.Content.Text, o)
	p.EvaluateRules(policy.StageInput, map[string]any{
		"tenant_id": c.ac.TenantID, "principal_id": c.ac.Principal.PrincipalID, "operation": "policy_check",
		"text": pc.Content.Text, "tools": []string{}, "models": []string{}, "backends": []string{},
		"model": "", "backend": "", "model_ref": "", "agent_id": "", "run_id": "",
		"roles": c.ac.Roles, "scopes": c.ac.Scopes, "policy_context": policyContextMap(c.ac.PolicyContext),
		"max_output_tokens": int64(0), "input_tokens": int64(0),
	}, o)
	wire := o.Wire()
	result := modelport.PolicyCheckResult{RequestID: reqID, Decision: wire.Decision, Reasons: wire.Reasons, Redactions: wire.Redactions}
	// A request in the original API's complete form (request_id and
	// ruleset both given) gets that API's PolicyResult, which admits no
	// content property, unless it asks for the text with include_content.
	seedForm := pc.RequestID != "" && pc.Ruleset != ""
	include := !seedForm
	if pc.IncludeContent != nil {
		include = *pc.IncludeContent
	}
	if wire.Decision == policy.DecisionRedacted && include {
		result.Content = &modelport.Content{Type: "text", Text: text}
	}
	s.countPolicy(o, "check")
	s.record(r.Context(), c, "policy.check", p.ID, wire.Decision, map[string]any{
		"request_id": reqID, "policy_id": p.ID, "policy_outcome": wire})
	httpx.JSON(w, r, http.StatusOK, map[string]any{"policy_result": result})
	return nil
}

func policyContextMap(pc auth.PolicyContext) map[string]any {
	tags := pc.ConsentTags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{"data_classification": pc.DataClassification, "region": pc.Region,
		"purpose": pc.Purpose, "consent_tags": tags}
}

func (s *Server) countPolicy(o *policy.Outcome, stage string) {
	if o.Blocked {
		s.metrics.blocks.WithLabelValues(stage).Inc()
	}
	for t, n := range o.Redactions {
		s.metrics.redactions.WithLabelValues(t).Add(float64(n))
	}
}

// record queues an audit record for the batching writer; a failed write
// is retried, then logged and counted, never returned (the call's outcome
// is already decided).
func (s *Server) record(ctx context.Context, c caller, action, target, outcome string, details map[string]any) {
	pc := policyContextMap(c.ac.PolicyContext)
	rec := store.AuditRecord{AuditID: ids.New("aud_"), Time: s.now().UTC(), TenantID: c.ac.TenantID,
		PrincipalID: c.ac.ActorID(), OnBehalfOf: c.ac.OnBehalfOf(), Action: action, Target: target, Outcome: outcome,
		PolicyContext: pc, Details: details, CorrelationID: httpx.CorrelationID(ctx)}
	s.writer.Audit(rec)
}

// handleUsage lists the usage ledger (after writing what the ledger writer
// has queued). Tenant admins (and platform admins,
// who may name tenant_id) see the whole tenant; others see their own
// principal's usage.
func (s *Server) handleUsage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ac, err := auth.Require(r.Context(), auth.ScopeModelsList)
	if err != nil {
		return err
	}
	tenantID := ac.TenantID
	if t := q.Get("tenant_id"); t != "" && t != tenantID {
		if !ac.HasRole(auth.RolePlatformAdmin) {
			return errs.E(errs.Forbidden, "tenant_id: only a platform_admin may name another tenant").
				WithDetails(map[string]any{"field": "tenant_id"})
		}
		tenantID = t
	}
	f := store.UsageFilter{TenantID: tenantID, PrincipalID: q.Get("principal_id"), AgentID: q.Get("agent_id"), RunID: q.Get("run_id")}
	if !ac.IsAdminOf(tenantID) {
		if f.PrincipalID != "" && f.PrincipalID != ac.Principal.PrincipalID {
			return errs.E(errs.Forbidden, "principal_id: only a tenant admin may read another principal's usage").
				WithDetails(map[string]any{"field": "principal_id"})
		}
		f.PrincipalID = ac.Principal.PrincipalID
	}
	for name, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return errs.Field(name, "must be an RFC3339 timestamp")
			}
			*dst = t
		}
	}
	// Read your writes: the ledger writer's queue is written first.
	if err := s.writer.Flush(r.Context()); err != nil {
		return errs.Wrap(errs.Timeout, err, "usage ledger not flushed")
	}
	recs, err := s.cfg.Store.ListUsage(r.Context(), f)
	if err != nil {
		return errs.Wrap(errs.DependencyUnavailable, err, "cannot read usage")
	}
	type total struct {
		ModelID      string  `json:"model_id,omitempty"`
		Requests     int64   `json:"requests"`
		InputTokens  int64   `json:"input_tokens"`
		OutputTokens int64   `json:"output_tokens"`
		TotalTokens  int64   `json:"total_tokens"`
		CostUSD      float64 `json:"cost_usd"`
	}
	var all total
	byModel := map[string]*total{}
	var order []string
	for _, u := range recs {
		t, ok := byModel[u.ModelID]
		if !ok {
			t = &total{ModelID: u.ModelID}
			byModel[u.ModelID] = t
			order = append(order, u.ModelID)
		}
		for _, x := range []*total{&all, t} {
			x.Requests++
			x.InputTokens += u.InputTokens
			x.OutputTokens += u.OutputTokens
			x.TotalTokens += u.InputTokens + u.OutputTokens
			x.CostUSD += u.CostUSD
		}
	}
	models := []total{}
	slices.Sort(order)
	for _, id := range order {
		models = append(models, *byModel[id])
	}
	if recs == nil {
		recs = []store.UsageRecord{}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"usage": map[string]any{
		"tenant_id": tenantID, "records": recs, "totals": all, "by_model": models}})
	return nil
}
