package modelpolicy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
	"github.com/nexixai/agentos/internal/tracing"
	"github.com/nexixai/agentos/modelpolicy/policy"
	"github.com/nexixai/agentos/modelpolicy/providers"
	"github.com/nexixai/agentos/modelpolicy/router"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

const (
	opChat  = "chat"
	opEmbed = "embed"
)

// invocation is one governed model call, whatever endpoint it came from.
type invocation struct {
	action    string // audit action
	op        string // chat or embed
	requestID string
	modelRef  string
	agentID   string
	runID     string
	req       modelport.Requirements
	chat      providers.ChatRequest
	texts     []string
	// maxTokensField and inputField name the request's fields (in its own
	// API's spelling) for errors about them, e.g. max_tokens_per_request.
	maxTokensField, inputField string
	// onDelta, when set, asks for a streamed chat: content fragments are
	// passed live, through a streamGuard when the output policy redacts or
	// blocks, or all at once after output rules passed (streamRest).
	onDelta func(providers.Delta) error
}

// result is a served call.
type result struct {
	chat    providers.ChatResponse
	vectors [][]float32
	usage   modelport.Usage
	model   *ModelConfig
	route   modelport.Route
	outcome *policy.Outcome
	latency time.Duration
	costUSD float64
	// streamSent is the content already passed to onDelta.
	streamSent strings.Builder
	// failed are the attempts that failed after the backend had started
	// on them (content received, or a timeout or cancellation after the
	// request was sent): charged at what is known to have been used.
	failed []chargedAttempt
}

// chargedAttempt is a failed backend call charged to the tenant.
type chargedAttempt struct {
	model *ModelConfig
	usage modelport.Usage
}

func (r *result) canonical(inv *invocation) any {
	po := r.outcome.Wire()
	if inv.op == opEmbed {
		embs := make([]modelport.Embedding, len(r.vectors))
		for i, v := range r.vectors {
			embs[i] = modelport.Embedding{Index: i, Vector: v}
		}
		return modelport.EmbedResponse{RequestID: inv.requestID, Status: "ok",
			Output: modelport.EmbedOutput{Type: "embedding", Embeddings: embs}, Usage: r.usage,
			LatencyMs: r.latency.Milliseconds(), PolicyOutcome: po, Route: r.route, UsageEstimated: r.usage.Estimated}
	}
	calls := r.chat.ToolCalls
	if calls == nil {
		calls = []modelport.ToolCall{}
	}
	msg := modelport.Message{Role: "assistant", Content: r.chat.Message.Content}
	return modelport.ChatResponse{RequestID: inv.requestID, Status: "ok",
		Output: modelport.ChatOutput{Type: "chat", Message: msg, ToolCalls: calls}, Usage: r.usage,
		LatencyMs: r.latency.Milliseconds(), PolicyOutcome: po, Route: r.route, UsageEstimated: r.usage.Estimated}
}

func price(m *ModelConfig, in, out int64) float64 {
	return float64(in)*m.PriceInputPer1K/1000 + float64(out)*m.PriceOutputPer1K/1000
}

// resolve turns a model_ref into the ordered chain of candidate models
// (CONTRACT §5: tier:<tier>, <backend>/<model>, or a bare model id), with
// canaries applied, filtered by capability, entitlements and policy lists.
func (s *Server) resolve(c caller, inv *invocation) ([]*ModelConfig, error) {
	ref := strings.TrimSpace(inv.modelRef)
	if ref == "" {
		ref = "tier:" + TierBalanced
		if inv.op == opEmbed {
			ref = "tier:" + TierEmbed
		}
	}
	var ids []string
	explicit := false
	switch {
	case strings.HasPrefix(ref, "tier:"):
		tier := strings.TrimPrefix(ref, "tier:")
		ids = s.cat.TierChain(tier)
		if len(ids) == 0 {
			return nil, errs.Field("model_ref", "unknown tier %q (known: %s)", tier, strings.Join(s.cat.AllTiers(), ", "))
		}
		if !c.tenant.Entitlements.AllowsTier(tier) {
			return nil, errs.E(errs.Forbidden, "tier %q is not in the tenant's model_tiers_allowed", tier).
				WithDetails(map[string]any{"model_ref": ref, "tier": tier})
		}
	default:
		m, ok := s.cat.Model(ref)
		if !ok {
			var found []*ModelConfig
			for i := range s.cat.Models {
				if s.cat.Models[i].Name == ref || s.cat.Models[i].Upstream == ref {
					found = append(found, &s.cat.Models[i])
				}
			}
			if len(found) == 0 {
				return nil, errs.E(errs.NotFound, "model %q is not in the catalogue", ref).WithDetails(map[string]any{"model_ref": ref})
			}
			if len(found) > 1 {
				return nil, errs.Field("model_ref", "%q is ambiguous; name it as <backend>/<model>", ref)
			}
			m = found[0]
		}
		explicit = true
		ids = append([]string{m.ID()}, m.Fallbacks...)
		if !m.Has(inv.op) {
			return nil, errs.Field("model_ref", "model %s does not support %s", m.ID(), inv.op)
		}
		if ok, why := entitled(c.tenant, m); !ok {
			return nil, errs.E(errs.Forbidden, "%s", why).WithDetails(map[string]any{"model_ref": ref, "model_id": m.ID()})
		}
	}
	ids = s.applyCanaries(ref, c.tenant.TenantID, inv.agentID, ids)
	var chain []*ModelConfig
	var denied []string
	for _, id := range ids {
		m, _ := s.cat.Model(id)
		if m == nil || !m.Has(inv.op) || slices.Contains(chain, m) {
			continue
		}
		if ok, _ := entitled(c.tenant, m); !ok {
			continue
		}
		if !c.policy.Models.Permits(m.ID()) || !c.policy.Backends.Permits(m.Backend) {
			denied = append(denied, m.ID())
			continue
		}
		chain = append(chain, m)
	}
	if len(chain) == 0 {
		if len(denied) > 0 {
			s.metrics.blocks.WithLabelValues("models").Inc()
			return nil, errs.E(errs.PolicyBlocked, "policy %s denies every model for %q", c.policy.ID, ref).
				WithDetails(map[string]any{"model_ref": ref, "denied": denied, "reasons": []string{"model_denied"}})
		}
		if explicit {
			return nil, errs.E(errs.Forbidden, "no model for %q is both entitled and able to %s", ref, inv.op)
		}
		return nil, errs.E(errs.Forbidden, "the tenant is entitled to no %s model of %q", inv.op, ref).
			WithDetails(map[string]any{"model_ref": ref})
	}
	return chain, nil
}

func (s *Server) applyCanaries(ref, tenantID, agentID string, ids []string) []string {
	for _, cn := range s.cat.Canaries {
		if cn.Match != ref {
			continue
		}
		key := tenantID
		if cn.By == "agent" {
			if agentID == "" {
				continue
			}
			key = tenantID + "/" + agentID
		}
		if router.InCanary(cn.Name, key, cn.Percent) {
			rest := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == cn.Model })
			return append([]string{cn.Model}, rest...)
		}
	}
	return ids
}

// meetsRequirements filters the chain by min_context_tokens, max_latency_ms
// (observed average, else the catalogue's latency_ms) and max_cost_usd (at
// the requested output size); none left is an invalid_request naming why
// each was dropped.
func (s *Server) meetsRequirements(chain []*ModelConfig, q modelport.Requirements, z callSize) ([]*ModelConfig, error) {
	var out []*ModelConfig
	var why []string
	for _, m := range chain {
		switch {
		case q.MinContextTokens > 0 && m.ContextWindowTokens < q.MinContextTokens:
			why = append(why, m.ID()+": context window too small")
			continue
		case q.MaxLatencyMs > 0:
			lat, ok := s.latencies.Get(m.Backend)
			if !ok {
				lat = float64(m.LatencyMs)
			}
			if lat > float64(q.MaxLatencyMs) {
				why = append(why, m.ID()+": expected latency too high")
				continue
			}
		}
		if q.MaxCostUSD > 0 && price(m, z.inTokens, z.maxOut(m)) > q.MaxCostUSD {
			why = append(why, m.ID()+": expected cost too high")
			continue
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, errs.Field("requirements", "no entitled model meets the requirements").
			WithDetails(map[string]any{"field": "requirements", "reasons": why})
	}
	return out, nil
}

func windowStart(now time.Time, window string) time.Time {
	now = now.UTC()
	switch window {
	case "minute":
		return now.Truncate(time.Minute)
	case "hour":
		return now.Truncate(time.Hour)
	}
	return time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
}

// invoke runs the governed pipeline on one call, in this order:
// entitlements and policy lists (resolve), request limits and
// requirements, the budget hold, input policy, routing and charging, output
// policy. However it ends, the call is counted and audited once (audited).
func (s *Server) invoke(ctx context.Context, c caller, inv *invocation) (res *result, err error) {
	started := s.now()
	res = &result{outcome: policy.NewOutcome()}
	defer func() { s.audited(ctx, c, inv, res, err) }()
	ctx, span := httpx.StartSpan(ctx, tracing.ModelSpanName(inv.op, inv.modelRef), trace.SpanKindInternal)
	if span.IsRecording() {
		span.SetAttributes(tracing.GenAIOperation.String(inv.op), tracing.GenAIRequestModel.String(inv.modelRef),
			attribute.String("agentos.tenant_id", c.tenant.TenantID), attribute.String("agentos.run_id", inv.runID))
	}
	defer func() { endInvokeSpan(span, inv, res, err) }()

	chain, err := s.resolve(c, inv)
	if err != nil {
		return res, err
	}
	size := sizeOf(inv, c.tenant.Quotas.Models)
	if err := s.checkLimits(c, inv, size); err != nil {
		return res, err
	}
	if chain, err = s.meetsRequirements(chain, inv.req, size); err != nil {
		return res, err
	}
	bctx, bspan := httpx.StartSpan(ctx, "budget.reserve", trace.SpanKindInternal)
	hold, err := s.holdBudget(bctx, c, inv, chain, size)
	tracing.Fail(bspan, err)
	bspan.End()
	if err != nil {
		return res, err
	}
	defer s.budgets.release(hold, 0, 0) // released when nothing was served
	if err := s.spanPolicy(ctx, "input", func() error { return s.inputPolicy(c, inv, chain, size.inTokens, res.outcome) }); err != nil {
		s.countPolicy(res.outcome, "input")
		return res, err
	}
	if err := s.routeAndCharge(ctx, c, inv, chain, res, hold); err != nil {
		s.countPolicy(res.outcome, "input")
		return res, err
	}
	perr := s.spanPolicy(ctx, "output", func() error { return s.outputPolicy(c, inv, res) })
	s.countPolicy(res.outcome, "output")
	res.latency = s.now().Sub(started)
	return res, perr
}

// streamRest sends, after a served streamed call, the part of the final
// (redacted) content that was not streamed yet: everything when nothing
// could stream live, the held-back tail under a redacting policy. When
// what was streamed is not a prefix of the final content (the whole-text
// redaction found a value the segments could not, see streamGuard),
// nothing more is sent: the final message is authoritative.
// Handlers call it once their own headers are written.
func streamRest(inv *invocation, res *result) {
	final := res.chat.Message.Content
	if rest, ok := strings.CutPrefix(final, res.streamSent.String()); ok && rest != "" {
		if inv.onDelta(providers.Delta{Content: rest}) == nil {
			res.streamSent.WriteString(rest)
		}
	}
}

// callSize is what a call asks for before it is routed.
type callSize struct {
	inv        *invocation
	inTokens   int64 // the input, estimated
	perRequest int64 // the tenant's max_tokens_per_request (0: none)
}

func sizeOf(inv *invocation, mq store.ModelQuotas) callSize {
	return callSize{inv: inv, inTokens: inputTokens(inv), perRequest: int64(mq.MaxTokensPerRequest)}
}

// maxOut is the output a chat asks of m: the model's limit, lowered to the
// request's max output tokens, or, when the request names none, to what
// max_tokens_per_request leaves after the input (at least 1).
func (z callSize) maxOut(m *ModelConfig) int64 {
	if z.inv.op != opChat {
		return 0
	}
	asked := int64(z.inv.chat.MaxOutputTokens)
	n := int64(m.MaxOutputTokens)
	if asked > 0 && asked < n {
		n = asked
	}
	if z.perRequest > 0 && asked == 0 {
		n = max(1, min(n, z.perRequest-z.inTokens))
	}
	return n
}

// inputTokens estimates the tokens of the call's input as it stands.
func inputTokens(inv *invocation) int64 {
	if inv.op == opChat {
		return providers.EstimateMessages(inv.chat.Messages, inv.chat.Tools)
	}
	var n int64
	for _, t := range inv.texts {
		n += providers.EstimateTokens(t)
	}
	return n
}

// inputBound is the upper bound of the call's input tokens (the estimate
// can be short).
func inputBound(inv *invocation) int64 {
	if inv.op == opChat {
		return providers.BoundMessages(inv.chat.Messages, inv.chat.Tools)
	}
	var n int64
	for _, t := range inv.texts {
		n += providers.TokenBound(t)
	}
	return n
}

// checkLimits applies the request limits: the tenant's
// max_tokens_per_request, the node's per-tenant invoke rate and the
// tenant's max_requests_per_minute.
func (s *Server) checkLimits(c caller, inv *invocation, z callSize) error {
	mq := c.tenant.Quotas.Models
	if mq.MaxTokensPerRequest > 0 {
		requested := z.inTokens + int64(inv.chat.MaxOutputTokens)
		if requested > int64(mq.MaxTokensPerRequest) {
			// invalid_request (400), not quota_exceeded (429): the same
			// request can never pass, and the SDKs retry or raise a
			// RateLimitError on 429. The field is the output limit when
			// one was asked for, else the input that alone is too long.
			field := inv.inputField
			if inv.chat.MaxOutputTokens > 0 {
				field = inv.maxTokensField
			}
			return errs.Field(field, "request needs about %d tokens; the tenant's max_tokens_per_request is %d",
				requested, mq.MaxTokensPerRequest).
				WithDetails(map[string]any{"field": field, "quota": "max_tokens_per_request", "limit": mq.MaxTokensPerRequest,
					"requested": requested, "input_tokens": z.inTokens, "max_output_tokens": inv.chat.MaxOutputTokens})
		}
	}
	if s.cfg.DefaultInvokeQPS > 0 {
		burst := max(1, int(math.Ceil(s.cfg.DefaultInvokeQPS)))
		if ok, wait := s.limiter.Allow(c.tenant.TenantID, tenancy.LimitModelInvoke, s.cfg.DefaultInvokeQPS, burst); !ok {
			return (&errs.Error{Code: errs.RateLimited, RetryAfter: wait, Message: "model invoke rate exceeded for tenant"}).
				WithDetails(map[string]any{"quota": "invoke_qps", "limit": s.cfg.DefaultInvokeQPS})
		}
	}
	if mq.MaxRequestsPerMinute > 0 {
		if ok, wait := s.limiter.AllowPerMinute(c.tenant.TenantID, tenancy.LimitModelRequests, mq.MaxRequestsPerMinute); !ok {
			return (&errs.Error{Code: errs.RateLimited, RetryAfter: wait, Message: "max_requests_per_minute exceeded"}).
				WithDetails(map[string]any{"quota": "max_requests_per_minute", "limit": mq.MaxRequestsPerMinute})
		}
	}
	return nil
}

// holdBudget holds the call's worst case against the tenant's in-memory
// budget allocation for the window (see budget.go): the most expensive
// candidate, with the input at its upper bound so that concurrent calls
// cannot settle above their holds. Without a token budget it holds
// nothing (nil, which release ignores).
func (s *Server) holdBudget(ctx context.Context, c caller, inv *invocation, chain []*ModelConfig, z callSize) (*budgetHold, error) {
	tb := c.tenant.Quotas.Models.TokenBudget
	if tb.MaxTokens <= 0 && tb.MaxCostUSD <= 0 {
		return nil, nil
	}
	window := cmpStr(tb.Window, "day")
	inBound := inputBound(inv)
	var tokens int64
	var cost float64
	for _, m := range chain {
		tokens = max(tokens, inBound+z.maxOut(m))
		cost = max(cost, price(m, inBound, z.maxOut(m)))
	}
	return s.budgets.acquire(ctx, c.tenant.TenantID, tb, window, windowStart(s.now(), window), tokens, cost)
}

// routeAndCharge routes the call and charges what it used. Failed attempts
// the backend had started on are charged (ledger and budget) whether or
// not a later one succeeds; a served call settles the hold with its real
// usage.
func (s *Server) routeAndCharge(ctx context.Context, c caller, inv *invocation, chain []*ModelConfig, res *result, hold *budgetHold) error {
	rerr := s.route(ctx, c, inv, chain, res)
	failedTokens, failedCost := s.chargeFailed(ctx, c, inv, res)
	if rerr != nil {
		s.budgets.release(hold, failedTokens, failedCost)
		return rerr
	}
	res.costUSD = price(res.model, res.usage.InputTokens, res.usage.OutputTokens)
	s.budgets.release(hold, res.usage.TotalTokens+failedTokens, res.costUSD+failedCost)
	s.ledger(ctx, c, inv, res.model, res.usage, res.costUSD)
	s.metrics.routes.WithLabelValues(res.model.Backend, boolStr(res.route.FallbackUsed)).Inc()
	return nil
}

// audited counts the call in agentos_model_requests_total (by its error
// code, or ok) and queues its audit record, whose outcome is the policy
// decision, or "error" ("blocked" for a policy block).
func (s *Server) audited(ctx context.Context, c caller, inv *invocation, res *result, err error) {
	outcome, code := res.outcome.Decision(), "ok"
	backend, model := res.route.Backend, res.route.Model
	if err != nil {
		code, outcome = string(errs.CodeOf(err)), "error"
		if code == string(errs.PolicyBlocked) {
			outcome = policy.DecisionBlocked
		}
		// A backend that refused the call picked its model but no route.
		backend, model = "", ""
		if res.model != nil {
			backend, model = res.model.Backend, res.model.ID()
		}
	}
	s.metrics.requests.WithLabelValues(inv.op, backend, model, code).Inc()
	s.record(ctx, c, inv.action, cmpStr(inv.modelRef, "default"), outcome, callDetails(inv, res, err))
}

// callDetails are the audit details of a call: its identity and policy
// outcome; the error; the route, usage and cost once a model was picked;
// and the failed attempts that were charged.
func callDetails(inv *invocation, res *result, err error) map[string]any {
	details := map[string]any{"request_id": inv.requestID, "operation": inv.op, "policy_outcome": res.outcome.Wire(),
		"agent_id": inv.agentID, "run_id": inv.runID}
	if err != nil {
		e := errs.As(err)
		details["error_code"] = string(e.Code)
		details["error_message"] = e.Message
	}
	if res.model != nil {
		details["route"] = res.route
		details["usage"] = res.usage
		details["cost_usd"] = res.costUSD
	}
	if len(res.failed) > 0 {
		charged := make([]map[string]any, len(res.failed))
		for i, f := range res.failed {
			charged[i] = map[string]any{"model": f.model.ID(), "input_tokens": f.usage.InputTokens, "output_tokens": f.usage.OutputTokens}
		}
		details["charged_failed_attempts"] = charged
	}
	return details
}

// ledger records one call's usage: the usage ledger and the metrics.
func (s *Server) ledger(ctx context.Context, c caller, inv *invocation, m *ModelConfig, usage modelport.Usage, costUSD float64) {
	u := store.UsageRecord{UsageID: ids.New("use_"), TenantID: c.tenant.TenantID, PrincipalID: c.ac.Principal.PrincipalID,
		ActorID: actorIfDelegated(c.ac),
		AgentID: inv.agentID, RunID: inv.runID, ModelID: m.ID(), Backend: m.Backend, Operation: inv.op,
		InputTokens: usage.InputTokens, OutputTokens: usage.OutputTokens, CostUSD: costUSD, Time: s.now().UTC()}
	s.writer.Usage(u)
	s.metrics.tokens.WithLabelValues(m.Backend, m.ID(), "input").Add(float64(usage.InputTokens))
	s.metrics.tokens.WithLabelValues(m.Backend, m.ID(), "output").Add(float64(usage.OutputTokens))
	s.metrics.cost.WithLabelValues(m.Backend, m.ID()).Add(costUSD)
}

// chargeFailed records the usage of the failed attempts in res.failed and
// returns their total, for the budget.
func (s *Server) chargeFailed(ctx context.Context, c caller, inv *invocation, res *result) (int64, float64) {
	var tokens int64
	var cost float64
	for _, f := range res.failed {
		fc := price(f.model, f.usage.InputTokens, f.usage.OutputTokens)
		s.ledger(ctx, c, inv, f.model, f.usage, fc)
		tokens += f.usage.TotalTokens
		cost += fc
	}
	return tokens, cost
}

// actorIfDelegated is who made a delegated call, "" for an undelegated one.
func actorIfDelegated(ac auth.Context) string {
	if ac.OnBehalfOf() == "" {
		return ""
	}
	return ac.ActorID()
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func (s *Server) ruleVars(c caller, inv *invocation, chain []*ModelConfig, text string, inTokens int64) map[string]any {
	var models, backends, tiers, tools []string
	for _, m := range chain {
		models = append(models, m.ID())
		if !slices.Contains(backends, m.Backend) {
			backends = append(backends, m.Backend)
		}
		for _, t := range m.Tiers {
			if !slices.Contains(tiers, t) {
				tiers = append(tiers, t)
			}
		}
	}
	for _, t := range inv.chat.Tools {
		tools = append(tools, toolID(t))
	}
	nz := func(v []string) []string {
		if v == nil {
			return []string{}
		}
		return v
	}
	roles, scopes := nz(c.ac.Roles), nz(c.ac.Scopes)
	return map[string]any{
		"tenant_id": c.tenant.TenantID, "principal_id": c.ac.Principal.PrincipalID, "principal_type": c.ac.Principal.PrincipalType,
		"roles": roles, "scopes": scopes, "agent_id": inv.agentID, "run_id": inv.runID, "operation": inv.op,
		"model_ref": inv.modelRef, "model": chain[0].ID(), "backend": chain[0].Backend, "models": nz(models),
		"backends": nz(backends), "tiers": nz(tiers), "tools": nz(tools), "text": text,
		"max_output_tokens": int64(inv.chat.MaxOutputTokens), "input_tokens": inTokens,
		"policy_context": policyContextMap(c.ac.PolicyContext), "plan_tier": c.tenant.PlanTier,
	}
}

func toolID(t modelport.ToolSpec) string { return cmpStr(t.ToolID, t.Name) }

// inputPolicy checks tool permissions, redacts or blocks PII in the input
// (in place) and runs the input rules.
func (s *Server) inputPolicy(c caller, inv *invocation, chain []*ModelConfig, inTokens int64, o *policy.Outcome) error {
	all := make([]string, 0, len(inv.chat.Messages)+len(inv.texts)+2*len(inv.chat.Tools))
	for i := range inv.chat.Tools {
		t := &inv.chat.Tools[i]
		id := toolID(*t)
		if !c.tenant.Entitlements.AllowsTool(id) {
			return errs.E(errs.Forbidden, "tool %q is not in the tenant's tool_ids_allowed", id).
				WithDetails(map[string]any{"tool_id": id})
		}
		if !c.policy.Tools.Permits(id) {
			o.Blocked = true
			o.Reason("tool_denied:" + id)
		}
		// Tool definitions reach the backend too.
		t.Description = c.policy.ApplyText(policy.StageInput, t.Description, o)
		t.InputSchema = redactJSON(c.policy, policy.StageInput, t.InputSchema, o)
		all = append(all, t.Description, string(t.InputSchema))
	}
	if inv.op == opChat {
		for i := range inv.chat.Messages {
			m := &inv.chat.Messages[i]
			m.Content = c.policy.ApplyText(policy.StageInput, m.Content, o)
			all = append(all, m.Content)
			for j := range m.ToolCalls {
				m.ToolCalls[j].Arguments = redactJSON(c.policy, policy.StageInput, m.ToolCalls[j].Arguments, o)
			}
		}
	} else {
		for i := range inv.texts {
			inv.texts[i] = c.policy.ApplyText(policy.StageInput, inv.texts[i], o)
			all = append(all, inv.texts[i])
		}
	}
	if len(c.policy.Rules) > 0 { // the rule variables are built only for policies with rules
		c.policy.EvaluateRules(policy.StageInput, s.ruleVars(c, inv, chain, strings.Join(all, "\n"), inTokens), o)
	}
	if o.Blocked {
		return blockedError("input", o)
	}
	return nil
}

func blockedError(stage string, o *policy.Outcome) error {
	w := o.Wire()
	return errs.E(errs.PolicyBlocked, "%s blocked by policy: %s", stage, strings.Join(w.Reasons, "; ")).
		WithDetails(map[string]any{"stage": stage, "decision": w.Decision, "reasons": w.Reasons, "redactions": w.Redactions})
}

// redactJSON applies the policy to every string (keys included) of a JSON
// document, decoded, so escapes such as \u0040 cannot hide PII from it;
// text that is not valid JSON is redacted as text (and becomes a JSON
// string if redaction breaks it).
func redactJSON(p *policy.Policy, stage string, raw json.RawMessage, o *policy.Outcome) json.RawMessage {
	if len(raw) == 0 {
		return raw
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		out := p.ApplyText(stage, string(raw), o)
		if out == string(raw) {
			return raw
		}
		if json.Valid([]byte(out)) {
			return json.RawMessage(out)
		}
		b, _ := json.Marshal(out)
		return b
	}
	changed := false
	v = redactValue(p, stage, v, o, &changed)
	if !changed {
		return raw
	}
	b, err := json.Marshal(v)
	if err != nil { // cannot happen for decoded JSON; keep nothing rather than the original
		b, _ = json.Marshal("[REDACTED]")
	}
	return b
}

func redactValue(p *policy.Policy, stage string, v any, o *policy.Outcome, changed *bool) any {
	switch x := v.(type) {
	case string:
		out := p.ApplyText(stage, x, o)
		if out != x {
			*changed = true
		}
		return out
	case []any:
		for i := range x {
			x[i] = redactValue(p, stage, x[i], o, changed)
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			nk := p.ApplyText(stage, k, o)
			if nk != k {
				*changed = true
			}
			out[nk] = redactValue(p, stage, val, o, changed)
		}
		return out
	}
	return v
}

// route walks the chain: breakers skip open backends; a retryable failure
// falls back to the next model unless streamed content was already sent.
func (s *Server) route(ctx context.Context, c caller, inv *invocation, chain []*ModelConfig, res *result) error {
	var lastErr error
	skipped := false
	emitted := false
	// Content streams live unless output rules (over the whole text) must
	// pass first; a redacting or blocking policy streams through a guard.
	live := inv.onDelta != nil && !hasOutputRules(c.policy)
	guarded := live && c.policy.RedactsOrBlocks(policy.StageOutput)
	inTokens := inputTokens(inv) // what each attempt sends (after input policy), estimated
	for i, m := range chain {
		if !s.breakers.Allow(m.Backend) {
			skipped = true
			lastErr = errs.E(errs.DependencyUnavailable, "backend %s circuit is open", m.Backend).
				WithDetails(map[string]any{"backend": m.Backend})
			continue
		}
		prov, ok := s.provs[m.Backend]
		if !ok {
			s.breakers.Release(m.Backend)
			return errs.E(errs.Internal, "backend %s has no provider", m.Backend)
		}
		timeout := s.cat.backend(m.Backend).Timeout
		if timeout <= 0 {
			timeout = 60 * time.Second
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		cctx, span := httpx.StartSpan(cctx, tracing.ModelSpanName(inv.op, m.Upstream), trace.SpanKindClient)
		if span.IsRecording() {
			span.SetAttributes(tracing.GenAIOperation.String(inv.op), tracing.GenAIProvider.String(m.Backend),
				tracing.GenAIRequestModel.String(m.Upstream))
		}
		start := time.Now()
		var err error
		var received strings.Builder // streamed content, for charging a failed stream
		switch inv.op {
		case opChat:
			req := inv.chat
			req.Model = m.Upstream
			if req.MaxOutputTokens == 0 || req.MaxOutputTokens > m.MaxOutputTokens {
				req.MaxOutputTokens = m.MaxOutputTokens
			}
			if q := c.tenant.Quotas.Models.MaxTokensPerRequest; q > 0 && inv.chat.MaxOutputTokens == 0 {
				req.MaxOutputTokens = int(max(1, min(int64(req.MaxOutputTokens), int64(q)-providers.EstimateMessages(req.Messages, req.Tools))))
			}
			if inv.onDelta != nil {
				send := func(d providers.Delta) error {
					emitted = true
					res.streamSent.WriteString(d.Content)
					return inv.onDelta(d)
				}
				var guard *streamGuard
				if guarded {
					guard = newStreamGuard(c.policy, send)
				}
				res.chat, err = prov.ChatStream(cctx, req, func(d providers.Delta) error {
					received.WriteString(d.Content)
					switch {
					case !live || d.Content == "":
						return nil
					case guard != nil:
						return guard.add(d.Content)
					}
					return send(d)
				})
			} else {
				res.chat, err = prov.Chat(cctx, req)
			}
			res.usage = res.chat.Usage
		case opEmbed:
			var er providers.EmbedResponse
			er, err = prov.Embed(cctx, providers.EmbedRequest{Model: m.Upstream, Texts: inv.texts})
			res.vectors, res.usage = er.Vectors, er.Usage
		}
		cancel()
		tracing.ModelUsage(span, m.Backend, m.Upstream, res.usage.InputTokens, res.usage.OutputTokens, res.chat.FinishReason)
		tracing.Fail(span, err)
		span.End()
		d := time.Since(start)
		s.metrics.latency.WithLabelValues(m.Backend).Observe(d.Seconds())
		if err != nil && backendStarted(err, received.Len() > 0) {
			out := providers.EstimateTokens(received.String())
			res.failed = append(res.failed, chargedAttempt{model: m,
				usage: modelport.Usage{InputTokens: inTokens, OutputTokens: out, TotalTokens: inTokens + out}})
		}
		if err == nil {
			s.breakers.Success(m.Backend)
			s.latencies.Observe(m.Backend, d)
			res.model = m
			res.route = modelport.Route{Backend: m.Backend, Model: m.ID(), Node: s.cfg.NodeID, FallbackUsed: i > 0 || skipped}
			return nil
		}
		if ctx.Err() != nil {
			s.breakers.Release(m.Backend)
			// The request's deadline (timeout) or its caller leaving
			// (canceled), not the backend's fault; err stays the cause.
			e := errs.FromContext(ctx.Err(), "model call")
			e.Err = err
			return e
		}
		e := errs.As(err)
		if !e.Code.Retryable() {
			s.breakers.Release(m.Backend)
			res.model = m
			return e
		}
		s.breakers.Failure(m.Backend)
		s.log.WarnContext(ctx, "model backend failed", "backend", m.Backend, "model", m.ID(), "err", err)
		lastErr = e
		if emitted {
			return e
		}
	}
	if lastErr == nil {
		lastErr = errs.E(errs.DependencyUnavailable, "no backend available")
	}
	e := errs.As(lastErr)
	return &errs.Error{Code: e.Code, Message: "all backends failed; last: " + e.Message, Details: e.Details, Err: e.Err}
}

// backendStarted reports whether a failed call had reached a backend that
// may have worked on it: content had arrived, or the call timed out or was
// canceled after the request was sent (a refused connection sent nothing;
// an error status means the backend did not serve it).
func backendStarted(err error, gotContent bool) bool {
	if gotContent {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return errs.CodeOf(err) == errs.Timeout || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func hasOutputRules(p *policy.Policy) bool {
	for _, r := range p.Rules {
		if r.Stage == policy.StageOutput || r.Stage == "any" {
			return true
		}
	}
	return false
}

// outputPolicy maps tool calls to the offered tools (dropping others),
// redacts or blocks PII in the output and runs the output rules.
func (s *Server) outputPolicy(c caller, inv *invocation, res *result) error {
	o := res.outcome
	if inv.op != opChat {
		return nil
	}
	msg := &res.chat.Message
	msg.Content = c.policy.ApplyText(policy.StageOutput, msg.Content, o)
	var kept []modelport.ToolCall
	for _, tc := range res.chat.ToolCalls {
		var spec *modelport.ToolSpec
		for i := range inv.chat.Tools {
			t := &inv.chat.Tools[i]
			if tc.Name == t.Name || tc.Name == t.ToolID || (tc.ToolID != "" && tc.ToolID == t.ToolID) || tc.Name == providers.WireName(t.Name) {
				spec = t
				break
			}
		}
		if spec == nil {
			o.Reason("output_tool_call_dropped:" + tc.Name)
			continue
		}
		tc.ToolID, tc.Name = toolID(*spec), spec.Name
		if tc.ID == "" {
			tc.ID = ids.New("call_")
		}
		tc.Arguments = redactJSON(c.policy, policy.StageOutput, tc.Arguments, o)
		kept = append(kept, tc)
	}
	res.chat.ToolCalls = kept
	msg.ToolCalls = kept
	if len(c.policy.Rules) > 0 {
		vars := s.ruleVars(c, inv, []*ModelConfig{res.model}, "", res.usage.InputTokens)
		vars["output_text"] = msg.Content
		vars["output_tokens"] = res.usage.OutputTokens
		c.policy.EvaluateRules(policy.StageOutput, vars, o)
	}
	if o.Blocked {
		return blockedError("output", o)
	}
	return nil
}

// spanPolicy runs one policy stage (input or output) in its own span.
func (s *Server) spanPolicy(ctx context.Context, stage string, check func() error) error {
	_, span := httpx.StartSpan(ctx, "policy.check "+stage, trace.SpanKindInternal)
	err := check()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("agentos.policy.stage", stage), attribute.Bool("agentos.policy.blocked", err != nil))
	}
	tracing.Fail(span, err)
	span.End()
	return err
}

// endInvokeSpan records a governed call's outcome on its span: the route
// and usage, and, only when the operator opted in, the messages as
// model-policy sent them on (after input redaction) and the answer as it
// returns it (after output redaction).
func endInvokeSpan(span trace.Span, inv *invocation, res *result, err error) {
	if !span.IsRecording() {
		return
	}
	if res.model != nil {
		tracing.ModelUsage(span, res.model.Backend, res.model.Upstream, res.usage.InputTokens, res.usage.OutputTokens, res.chat.FinishReason)
	}
	if err == nil && inv.op == opChat {
		in, _ := json.Marshal(inv.chat.Messages)
		out, _ := json.Marshal([]modelport.Message{res.chat.Message})
		tracing.ModelMessages(span, string(in), string(out))
	}
	tracing.Fail(span, err)
	span.End()
}
