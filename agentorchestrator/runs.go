package agentorchestrator

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/ids"
	"github.com/nexixai/agentos/internal/queue"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tenancy"
)

// Limits on run options.
const (
	maxRunSteps     = 100
	maxRunTimeoutMs = 3_600_000
	defaultMaxSteps = 8
	defaultTimeout  = 60_000
	maxInputBytes   = 256 << 10
)

// createRunRequest is the body of POST /v1/agents/{agent_id}/runs.
type createRunRequest struct {
	Input          json.RawMessage `json:"input"`
	Context        json.RawMessage `json:"context"`
	Tooling        *toolingRequest `json:"tooling"`
	RunOptions     *runOptionsReq  `json:"run_options"`
	IdempotencyKey string          `json:"idempotency_key"`
	Stream         json.RawMessage `json:"stream"`
	Webhook        *webhookRequest `json:"webhook"`
}

type toolingRequest struct {
	ToolAllowlist []string `json:"tool_allowlist"`
	ToolDenymap   []string `json:"tool_denymap"`
	Tools         []string `json:"tools"` // alias of tool_allowlist
}

type runOptionsReq struct {
	Priority     string `json:"priority"`
	TimeoutMs    *int   `json:"timeout_ms"`
	MaxSteps     *int   `json:"max_steps"`
	StreamEvents *bool  `json:"stream_events"`
	DryRun       bool   `json:"dry_run"`
	ModelTier    string `json:"model_tier"`
}

// normalizedRun is what an admitted run is made of; its JSON form is the
// idempotency fingerprint, so equivalent bodies (string vs object input,
// tools vs tool_allowlist) are the same request.
type normalizedRun struct {
	Input      store.RunInput   `json:"input"`
	Context    json.RawMessage  `json:"context,omitempty"`
	Tooling    store.Tooling    `json:"tooling"`
	RunOptions store.RunOptions `json:"run_options"`
	// A run created on a thread (absent otherwise, so that fingerprints
	// of other runs are unchanged).
	ThreadID          string `json:"thread_id,omitempty"`
	MultitaskStrategy string `json:"multitask_strategy,omitempty"`
	// Webhook is the run's own webhook (webhooks.go); nil when none.
	Webhook *store.WebhookTarget `json:"webhook,omitempty"`
}

var priorities = map[string]int{"low": queue.PriorityLow, "normal": queue.PriorityNormal, "high": queue.PriorityHigh}

// parseCreateRun validates a create-run body for agent and normalizes it;
// it returns the body's idempotency_key too. Errors are invalid_request
// naming the field.
func parseCreateRun(body []byte, agent store.Agent) (normalizedRun, string, error) {
	var req createRunRequest
	if err := httpx.DecodeBytes(body, &req); err != nil {
		return normalizedRun{}, "", err
	}
	var n normalizedRun
	var err error
	if n.Input, err = parseRunInput(req.Input); err != nil {
		return normalizedRun{}, "", err
	}
	if n.Context, err = parseRunContext(req.Context); err != nil {
		return normalizedRun{}, "", err
	}
	if n.Tooling, err = parseTooling(req.Tooling, agent); err != nil {
		return normalizedRun{}, "", err
	}
	if n.RunOptions, err = parseRunOptions(req.RunOptions); err != nil {
		return normalizedRun{}, "", err
	}
	if n.RunOptions.Stream, err = parseRunStream(req.Stream); err != nil {
		return normalizedRun{}, "", err
	}
	if n.Webhook, err = parseWebhook(req.Webhook); err != nil {
		return normalizedRun{}, "", err
	}
	return n, req.IdempotencyKey, nil
}

// parseRunInput accepts "input" as a string or as {"type":"text","text":...}
// and requires non-blank text of at most maxInputBytes.
func parseRunInput(raw json.RawMessage) (store.RunInput, error) {
	text, err := runInputText(raw)
	if err != nil {
		return store.RunInput{}, err
	}
	if strings.TrimSpace(text) == "" {
		return store.RunInput{}, errs.Field("input.text", "must not be empty")
	}
	if len(text) > maxInputBytes {
		return store.RunInput{}, errs.Field("input.text", "must be at most %d bytes", maxInputBytes)
	}
	return store.RunInput{Type: "text", Text: text}, nil
}

// runInputText returns the text of either input shape.
func runInputText(raw json.RawMessage) (string, error) {
	in := strings.TrimSpace(string(raw))
	switch {
	case in == "" || in == "null":
		return "", errs.Field("input", "is required")
	case strings.HasPrefix(in, `"`):
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", errs.Field("input", "must be a string or an object")
		}
		return text, nil
	case strings.HasPrefix(in, "{"):
		var obj struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return "", errs.Field("input.text", "must be a string")
		}
		if obj.Type != "" && obj.Type != "text" {
			return "", errs.Field("input.type", "must be \"text\", got %q", obj.Type)
		}
		if obj.Text == nil {
			return "", errs.Field("input.text", "is required")
		}
		return *obj.Text, nil
	default:
		return "", errs.Field("input", "must be a string or an object {\"type\":\"text\",\"text\":...}")
	}
}

// parseRunContext accepts an absent or null context, or an object (kept
// as sent, trimmed).
func parseRunContext(raw json.RawMessage) (json.RawMessage, error) {
	c := strings.TrimSpace(string(raw))
	if c == "" || c == "null" {
		return nil, nil
	}
	if !strings.HasPrefix(c, "{") {
		return nil, errs.Field("context", "must be an object")
	}
	return json.RawMessage(c), nil
}

// parseTooling checks the run's tool allowlist (tool_allowlist, or its
// alias tools, not both unless equal) against the agent's tools, and the
// denymap for empty entries.
func parseTooling(t *toolingRequest, agent store.Agent) (store.Tooling, error) {
	if t == nil {
		return store.Tooling{}, nil
	}
	allow := t.ToolAllowlist
	if len(allow) == 0 {
		allow = t.Tools
	} else if len(t.Tools) > 0 && !slices.Equal(allow, t.Tools) {
		return store.Tooling{}, errs.Field("tooling.tools", "conflicts with tooling.tool_allowlist; send one of them")
	}
	for i, id := range allow {
		if !slices.Contains(agent.Tools, id) {
			return store.Tooling{}, errs.Field(fmt.Sprintf("tooling.tool_allowlist[%d]", i), "%q is not a tool of agent %s", id, agent.AgentID)
		}
	}
	for i, id := range t.ToolDenymap {
		if strings.TrimSpace(id) == "" {
			return store.Tooling{}, errs.Field(fmt.Sprintf("tooling.tool_denymap[%d]", i), "must not be empty")
		}
	}
	return store.Tooling{ToolAllowlist: allow, ToolDenymap: t.ToolDenymap}, nil
}

// parseRunOptions validates run_options. max_steps and timeout_ms the
// request leaves out come from the agent after the request is
// fingerprinted (withAgentDefaults), so a retry is the same request even
// if the agent's defaults changed meanwhile.
func parseRunOptions(o *runOptionsReq) (store.RunOptions, error) {
	opts := store.RunOptions{Priority: "normal", StreamEvents: true}
	if o == nil {
		return opts, nil
	}
	if o.Priority != "" {
		if _, ok := priorities[o.Priority]; !ok {
			return store.RunOptions{}, errs.Field("run_options.priority", "must be low, normal or high, got %q", o.Priority)
		}
		opts.Priority = o.Priority
	}
	var err error
	if opts.TimeoutMs, err = boundedOption(o.TimeoutMs, "run_options.timeout_ms", maxRunTimeoutMs); err != nil {
		return store.RunOptions{}, err
	}
	if opts.MaxSteps, err = boundedOption(o.MaxSteps, "run_options.max_steps", maxRunSteps); err != nil {
		return store.RunOptions{}, err
	}
	if o.StreamEvents != nil {
		opts.StreamEvents = *o.StreamEvents
	}
	switch o.ModelTier {
	case "", "fast", "balanced", "premium":
	default:
		return store.RunOptions{}, errs.Field("run_options.model_tier", "must be fast, balanced or premium, got %q", o.ModelTier)
	}
	opts.DryRun = o.DryRun
	opts.ModelTier = o.ModelTier
	return opts, nil
}

// parseRunStream accepts an absent or null stream, or {"tokens": bool};
// only a stream that asks for something is kept.
func parseRunStream(raw json.RawMessage) (*store.RunStream, error) {
	c := strings.TrimSpace(string(raw))
	if c == "" || c == "null" {
		return nil, nil
	}
	if !strings.HasPrefix(c, "{") {
		return nil, errs.Field("stream", "must be an object {\"tokens\": true|false}")
	}
	var st struct {
		Tokens json.RawMessage `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, errs.Field("stream", "must be an object {\"tokens\": true|false}")
	}
	var tokens bool
	if t := strings.TrimSpace(string(st.Tokens)); t != "" && t != "null" {
		if err := json.Unmarshal(st.Tokens, &tokens); err != nil {
			return nil, errs.Field("stream.tokens", "must be a boolean")
		}
	}
	if !tokens {
		return nil, nil
	}
	return &store.RunStream{Tokens: true}, nil
}

// boundedOption returns *v when it is within 1..limit, 0 (left to the
// agent's default) when v is absent.
func boundedOption(v *int, field string, limit int) (int, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 1 || *v > limit {
		return 0, errs.Field(field, "must be between 1 and %d", limit)
	}
	return *v, nil
}

// withAgentDefaults fills the run options the request left to the agent.
func withAgentDefaults(o store.RunOptions, agent store.Agent) store.RunOptions {
	if o.MaxSteps == 0 {
		o.MaxSteps = cmp.Or(max(agent.Defaults.MaxSteps, 0), defaultMaxSteps)
	}
	if o.TimeoutMs == 0 {
		o.TimeoutMs = cmp.Or(max(agent.Defaults.TimeoutMs, 0), defaultTimeout)
	}
	return o
}

func fingerprint(n normalizedRun) string {
	b, _ := json.Marshal(n) // plain data
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *Server) handleCreateRun(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCreate)
	if err != nil {
		return err
	}
	ctx := r.Context()
	tenant, err := s.cfg.Store.GetTenant(ctx, ac.TenantID)
	if err != nil {
		return err
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	agentID, thread, err := s.runTarget(r, ac.TenantID, body)
	if err != nil {
		return err
	}
	agent, err := s.cfg.Store.GetAgent(ctx, ac.TenantID, agentID)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "agent %s not found", agentID)
	} else if err != nil {
		return err
	}
	n, bodyKey, err := parseCreateRun(body, agent)
	if err != nil {
		return err
	}
	n.ThreadID, n.MultitaskStrategy = thread.ID, thread.Strategy
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if bodyKey != "" && key != "" && bodyKey != key {
		return errs.Field("idempotency_key", "differs from the Idempotency-Key header")
	}
	if key == "" {
		key = bodyKey
	}
	if len(key) > 255 {
		return errs.Field("idempotency_key", "must be at most 255 characters")
	}
	fp := fingerprint(n)
	n.RunOptions = withAgentDefaults(n.RunOptions, agent)
	// refuse answers a request that would create nothing now. A duplicate
	// of a request admitted earlier still gets its run: it creates nothing
	// either, whatever changed since (rate, agent status, entitlements).
	refuse := func(err error) error {
		if key == "" {
			return err
		}
		res, rerr := s.cfg.Store.CreateRun(ctx, store.CreateRunParams{Run: store.Run{TenantID: ac.TenantID,
			AgentID: agent.AgentID, PrincipalID: ac.Principal.PrincipalID}, IdempotencyKey: key, Fingerprint: fp, ReplayOnly: true})
		switch {
		case rerr == nil:
			return s.replay(w, r, res.Run)
		case errors.Is(rerr, errs.ErrConflict):
			return errIdempotencyConflict(key)
		}
		return err
	}
	if agent.Status != store.AgentActive {
		return refuse(errs.E(errs.Conflict, "agent %s is %s; only active agents accept runs", agent.AgentID, agent.Status))
	}
	for i, id := range n.Tooling.ToolAllowlist {
		if !tenant.Entitlements.AllowsTool(id) {
			return refuse(errs.E(errs.Forbidden, "tooling.tool_allowlist[%d]: tool %s is not in tenant %s's entitlements", i, id, tenant.TenantID).
				WithDetails(map[string]any{"field": fmt.Sprintf("tooling.tool_allowlist[%d]", i), "tool_id": id}))
		}
	}
	if ok, retry := s.cfg.Limiter.Allow(tenant.TenantID, tenancy.LimitRunCreate, tenant.Quotas.Runs.RunCreateQPS, tenant.Quotas.Runs.RunCreateBurst); !ok {
		return refuse(&errs.Error{Code: errs.RateLimited, RetryAfter: retry,
			Message: fmt.Sprintf("run creation rate limit of %g/s exceeded for tenant %s", tenant.Quotas.Runs.RunCreateQPS, tenant.TenantID),
			Details: map[string]any{"limit_qps": tenant.Quotas.Runs.RunCreateQPS, "burst": tenant.Quotas.Runs.RunCreateBurst}})
	}

	now := s.cfg.Now().UTC()
	runID := ids.New("run_")
	tr := httpx.TraceFrom(ctx)
	run := store.Run{
		TenantID: ac.TenantID, AgentID: agent.AgentID, RunID: runID, PrincipalID: ac.Principal.PrincipalID,
		Status: store.RunQueued, CreatedAt: now, Input: n.Input, Context: n.Context, Tooling: n.Tooling,
		RunOptions: n.RunOptions, EventsURL: "/v1/runs/" + runID + "/events",
		CorrelationID: httpx.CorrelationID(ctx), Traceparent: tr.Traceparent(), IdempotencyKey: key,
		ThreadID: n.ThreadID, MultitaskStrategy: n.MultitaskStrategy,
	}
	first := s.newEvent(run, store.EventRunCreated, nil, tr, map[string]any{"status": store.RunQueued})
	auditRec := &store.AuditRecord{
		AuditID: ids.New("aud_"), Time: now, TenantID: ac.TenantID, PrincipalID: ac.Principal.PrincipalID,
		Action: "run.create", Target: "run/" + runID, Outcome: "accepted", CorrelationID: run.CorrelationID,
		Details: map[string]any{"agent_id": agent.AgentID, "idempotency_key": key},
	}
	hooks, err := s.webhookTargets(ctx, ac.TenantID, n.Webhook)
	if err != nil {
		return err
	}
	res, err := s.cfg.Store.CreateRun(ctx, store.CreateRunParams{
		Run: run, FirstEvent: first, Audit: auditRec, IdempotencyKey: key, Fingerprint: fp,
		IdempotencyTTL: time.Duration(s.cfg.Node.IdempotencyTTLHours) * time.Hour, Priority: priorities[n.RunOptions.Priority],
		InterruptEvent: s.interruptEvent(run, tr),
		Webhooks:       hooks,
	})
	if errors.Is(err, errs.ErrConflict) && !errors.Is(err, store.ErrThreadBusy) {
		return errIdempotencyConflict(key)
	} else if err != nil {
		return err
	}
	if res.Replayed {
		return s.replay(w, r, res.Run)
	}
	s.metrics.runsCreated.WithLabelValues(s.metrics.tenants.label(ac.TenantID)).Inc()
	// The store wrote it as the run's first event, sequence 1 (CreateRun
	// does not hand it back); unnumbered, the bus refuses it and streams
	// on other replicas miss run.created until their store poll.
	first.Sequence = 1
	s.publish(ctx, first)
	s.afterInterrupt(ctx, res.Run, res.Interrupted)
	s.wakeAll(ctx, ac.TenantID)
	w.Header().Set("Location", "/v1/runs/"+runID)
	httpx.JSON(w, r, http.StatusCreated, map[string]any{"run": res.Run})
	return nil
}

// replay answers a duplicate create with the original run.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, run store.Run) error {
	w.Header().Set("Idempotent-Replayed", "true")
	httpx.JSON(w, r, http.StatusOK, map[string]any{"run": run})
	return nil
}

func errIdempotencyConflict(key string) error {
	return errs.E(errs.Conflict, "idempotency key %q was already used with a different request body", key).
		WithDetails(map[string]any{"field": "idempotency_key"})
}

func (s *Server) handleGetRun(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	run, err := s.getRun(r, ac, r.PathValue("run_id"))
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"run": run})
	return nil
}

func (s *Server) getRun(r *http.Request, ac auth.Context, runID string) (store.Run, error) {
	run, err := s.cfg.Store.GetRun(r.Context(), ac.TenantID, runID)
	if errors.Is(err, errs.ErrNotFound) {
		return run, errs.E(errs.NotFound, "run %s not found", runID)
	}
	return run, err
}

func (s *Server) handleListRuns(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireTenant(r.Context(), auth.ScopeRunsRead)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	p := store.ListRunsParams{TenantID: ac.TenantID, AgentID: q.Get("agent_id"), Status: q.Get("status"),
		ThreadID: q.Get("thread_id"), Cursor: q.Get("cursor"), Limit: 50}
	if p.Status != "" && !store.RunStatus(p.Status).Valid() {
		return errs.Field("status", "must be queued, running, requires_action, completed, failed or canceled")
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 500 {
			return errs.Field("limit", "must be an integer between 1 and 500")
		}
		p.Limit = n
	}
	runs, next, err := s.cfg.Store.ListRuns(r.Context(), p)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []store.Run{}
	}
	var nextCursor any
	if next != "" {
		nextCursor = next
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"runs": runs, "next_cursor": nextCursor})
	return nil
}

func (s *Server) handleRunAction(w http.ResponseWriter, r *http.Request) error {
	runID, action, ok := strings.Cut(r.PathValue("run_action"), ":")
	if ok && action == "resume" {
		return s.handleResumeRun(w, r, runID)
	}
	if !ok || action != "cancel" {
		return errs.E(errs.NotFound, "no route for POST %s (did you mean /v1/runs/{run_id}:cancel or :resume?)", r.URL.Path)
	}
	ac, err := requireTenant(r.Context(), auth.ScopeRunsCancel)
	if err != nil {
		return err
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if raw, err := httpx.ReadBody(r); err != nil {
		return err
	} else if len(strings.TrimSpace(string(raw))) > 0 {
		if err := httpx.DecodeBytes(raw, &body); err != nil {
			return err
		}
	}
	if body.Reason == "" {
		body.Reason = "canceled by " + ac.Principal.PrincipalID
	}
	run, err := s.cancelRun(r.Context(), ac, runID, body.Reason)
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"run": run})
	return nil
}
