package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
)

// clients returns the tenant-admin and platform-admin clients from
// credentials.json.
func (v *validator) clients() (tenant, admin *apiclient.Client, creds *Credentials, err error) {
	creds, err = loadCredentials(v.n.Cfg.CredentialsFile())
	if err != nil {
		next := "agentos up"
		if v.n.Cfg.Mode == config.ModeProd {
			next = "agentos bootstrap --mode prod --tenant-id tnt_yourcompany"
		}
		return nil, nil, nil, &checkError{check: "credentials", next: next, err: err}
	}
	base := apiclient.Client{BaseURL: v.n.Cfg.OrchestratorURL, PolicyURL: v.n.Cfg.ModelPolicyURL, HTTP: outbound.ModelClient(outbound.ForModels(v.n.Cfg))}
	t, a := base, base
	t.Token = creds.TenantAdmin.Token
	a.Token = creds.PlatformAdmin.Token
	return &t, &a, creds, nil
}

// smoke runs the end-to-end smoke tests, in order: each check may use what
// the ones before it found (the probe's client, the sample run, the
// metrics baseline).
func (v *validator) smoke(ctx context.Context) error {
	tenant, admin, creds, err := v.clients()
	if err != nil {
		return err
	}
	s := &smokeTests{v: v, tenant: tenant, admin: admin, tenantID: cmp.Or(creds.TenantID, v.n.Cfg.DefaultTenant), revokeProbe: func() {}}
	defer func() { s.revokeProbe() }()
	checks := []check{
		{name: "default tenant exists", service: "orchestrator", fn: s.defaultTenant},
		{name: "metrics baseline", service: "orchestrator", fn: s.metricsBaseline},
		{name: "probe tenant ready", service: "orchestrator", fn: s.probeTenant},
		{name: "sample run over SSE", service: "orchestrator", fn: s.sampleRun},
		{name: "policy check", service: "model-policy", fn: s.policyCheck},
		{name: "metrics counters changed", service: "orchestrator", fn: s.metricsChanged},
		{name: "header auth for mode", service: "orchestrator", fn: s.headerAuth},
		{name: "cross-tenant isolation", service: "orchestrator", fn: s.isolation},
	}
	if isCluster(v.n) {
		checks = append(checks, s.clusterChecks()...)
	}
	if err := v.runChecks(ctx, "smoke tests passed", checks, &v.rep.Smoke); err != nil {
		return err
	}
	if v.n.B != nil {
		return v.federation(ctx, tenant)
	}
	return nil
}

// smokeTests is the state the smoke tests share: the user tenant's and the
// platform admin's clients, then what the checks find on the way.
type smokeTests struct {
	v             *validator
	tenant, admin *apiclient.Client
	tenantID      string

	probe            *apiclient.Client // the probe tenant's, once ready
	revokeProbe      func()            // revokes the probe's token at the end
	run              store.Run         // the sample run
	before, beforeMP map[string]float64
}

func (s *smokeTests) defaultTenant(ctx context.Context) (string, error) {
	t, err := s.admin.GetTenant(ctx, s.tenantID)
	if err != nil {
		return "", err
	}
	if t.Status != "" && t.Status != store.TenantActive {
		return "", fmt.Errorf("tenant %s is %s", s.tenantID, t.Status)
	}
	s.v.rep.Seeded.Tenants = appendUnique(s.v.rep.Seeded.Tenants, s.tenantID)
	return s.tenantID + " " + t.Status, nil
}

func (s *smokeTests) metricsBaseline(ctx context.Context) (string, error) {
	n := s.v.n
	var err error
	if s.before, err = sumMetrics(ctx, n, "orchestrator", n.Cfg.OrchestratorURL); err != nil {
		return "", err
	}
	if s.beforeMP, err = sumMetrics(ctx, n, "model-policy", n.Cfg.ModelPolicyURL); err != nil {
		return "", &checkError{check: "metrics baseline", service: "model-policy", err: err}
	}
	return fmt.Sprintf("agentos_runs_total=%v", s.before["agentos_runs_total"]), nil
}

func (s *smokeTests) probeTenant(ctx context.Context) (string, error) {
	probe, revoke, detail, err := s.v.ensureProbe(ctx, s.admin)
	s.probe = probe
	if revoke != nil {
		s.revokeProbe = revoke
	}
	return detail, err
}

// sampleRun runs the sample agent in the probe tenant and follows its
// events to the end: it must complete with an ok tool call and a model
// call that went through model-policy's policy.
func (s *smokeTests) sampleRun(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, smokeRunTimeout)
	defer cancel()
	if s.probe == nil {
		return "", errors.New("no probe tenant (see the check before)")
	}
	run, err := s.probe.CreateRun(ctx, sampleAgentID, "agentos validate smoke test", nil)
	if err != nil {
		return "", fmt.Errorf("create run on %s: %w", sampleAgentID, err)
	}
	s.run = run
	var t runTally
	err = s.probe.StreamEvents(ctx, run.RunID, 0, func(ev store.Event) error {
		t.observe(ev)
		s.v.p.Status(fmt.Sprintf("run %s: %d events, last %s", run.RunID, t.events, strings.TrimPrefix(ev.Type, "agentos.")))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("stream events of %s: %w", run.RunID, err)
	}
	switch {
	case t.last.Type != store.EventRunCompleted:
		return "", fmt.Errorf("run %s ended with %q, want agentos.run.completed: %s", run.RunID, t.last.Type, string(t.last.Payload))
	case t.tools < 1:
		return "", fmt.Errorf("run %s completed without an ok agentos.tool.call.completed", run.RunID)
	case t.models < 1:
		if t.modelErr != "" {
			return "", &checkError{check: "sample run over SSE", service: "model-policy", err: errors.New(t.modelErr)}
		}
		return "", &checkError{check: "sample run over SSE", service: "model-policy", err: fmt.Errorf("run %s completed without agentos.model.completed", run.RunID)}
	}
	return fmt.Sprintf("%s completed: %d events, %d tool calls, %d model calls", run.RunID, t.events, t.tools, t.models), nil
}

// runTally counts what a run's event stream showed.
type runTally struct {
	events, tools, models int // all events, ok tool calls, model calls with a policy decision
	last                  store.Event
	modelErr              string // a model.completed without policy_outcome.decision
}

func (t *runTally) observe(ev store.Event) {
	t.events++
	t.last = ev
	switch ev.Type {
	case store.EventToolCallCompleted:
		var pl struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(ev.Payload, &pl)
		if pl.Status == "ok" {
			t.tools++
		}
	case store.EventModelCompleted:
		var pl struct {
			PolicyOutcome struct {
				Decision string `json:"decision"`
			} `json:"policy_outcome"`
		}
		_ = json.Unmarshal(ev.Payload, &pl)
		if pl.PolicyOutcome.Decision == "" {
			t.modelErr = "model.completed has no policy_outcome.decision"
		} else {
			t.models++
		}
	}
}

func (s *smokeTests) policyCheck(ctx context.Context) (string, error) {
	if s.probe == nil {
		return "", errors.New("no probe tenant (see the checks before)")
	}
	res, err := s.probe.PolicyCheck(ctx, "req_validate_"+time.Now().UTC().Format("150405"), "validate probe: write to ops@example.com")
	if err != nil {
		return "", err
	}
	switch res.Decision {
	case "allowed", "redacted", "blocked":
		return "decision " + res.Decision, nil
	}
	return "", fmt.Errorf("unexpected decision %q", res.Decision)
}

func (s *smokeTests) metricsChanged(ctx context.Context) (string, error) {
	n := s.v.n
	// The executor counts a run after its terminal event is committed and
	// published: a stream over the bus can see the event first, so the
	// counter may lag the stream by a moment.
	var after map[string]float64
	for deadline := time.Now().Add(5 * time.Second); ; {
		var err error
		if after, err = sumMetrics(ctx, n, "orchestrator", n.Cfg.OrchestratorURL); err != nil {
			return "", err
		}
		if after["agentos_runs_total"] > s.before["agentos_runs_total"] || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if after["agentos_runs_total"] <= s.before["agentos_runs_total"] {
		return "", fmt.Errorf("agentos_runs_total did not increase (%v -> %v)", s.before["agentos_runs_total"], after["agentos_runs_total"])
	}
	afterMP, err := sumMetrics(ctx, n, "model-policy", n.Cfg.ModelPolicyURL)
	if err != nil {
		return "", &checkError{check: "metrics counters changed", service: "model-policy", err: err}
	}
	name, ok := increasedCounter(s.beforeMP, afterMP)
	if !ok {
		return "", &checkError{check: "metrics counters changed", service: "model-policy", err: errors.New("no agentos_*_total counter of model-policy increased")}
	}
	return fmt.Sprintf("agentos_runs_total %v -> %v; model-policy %s increased", s.before["agentos_runs_total"], after["agentos_runs_total"], name), nil
}

// headerAuth checks that X-Tenant-Id alone is accepted in demo/dev and
// refused with 401 in prod.
func (s *smokeTests) headerAuth(ctx context.Context) (string, error) {
	n := s.v.n
	hc := &apiclient.Client{BaseURL: n.Cfg.OrchestratorURL, TenantID: s.tenantID, HTTP: n.HTTP}
	_, err := hc.ListAgents(ctx)
	if n.Cfg.DevMode() {
		if err != nil {
			return "", fmt.Errorf("X-Tenant-Id auth refused in %s mode: %w", n.Cfg.Mode, err)
		}
		return "X-Tenant-Id accepted (" + n.Cfg.Mode + ")", nil
	}
	if !errors.Is(err, errs.ErrUnauthorized) {
		return "", fmt.Errorf("prod must answer 401 to X-Tenant-Id alone, got %v", err)
	}
	return "X-Tenant-Id refused with 401 (prod)", nil
}

func (s *smokeTests) isolation(ctx context.Context) (string, error) {
	if s.run.RunID == "" {
		return "", errors.New("no run to probe (the sample run failed)")
	}
	return s.v.isolation(ctx, s.tenant, s.tenantID, s.run.RunID)
}

// isolation checks that the user's tenant (its admin token) cannot see
// the probe tenant's run: 404 on the run, its events as JSON and as SSE.
func (v *validator) isolation(ctx context.Context, tenant *apiclient.Client, tenantID, runID string) (string, error) {
	if tenantID == probeTenantID {
		return "", fmt.Errorf("the credentials' tenant is the probe tenant %s; isolation needs another", probeTenantID)
	}
	if _, err := tenant.GetRun(ctx, runID); !errors.Is(err, errs.ErrNotFound) {
		return "", fmt.Errorf("%s reading %s's run: want 404, got %v", tenantID, probeTenantID, errOrOK(err))
	}
	if _, err := tenant.ListEvents(ctx, runID); !errors.Is(err, errs.ErrNotFound) {
		return "", fmt.Errorf("%s reading %s's events: want 404, got %v", tenantID, probeTenantID, errOrOK(err))
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tenant.StreamEvents(sctx, runID, 0, func(store.Event) error { return nil }); !errors.Is(err, errs.ErrNotFound) {
		return "", fmt.Errorf("%s streaming %s's events: want 404, got %v", tenantID, probeTenantID, errOrOK(err))
	}
	return tenantID + " gets 404 on " + probeTenantID + "'s run, events (JSON and SSE)", nil
}

// ensureProbe makes sure the probe tenant exists and is active, with its
// own token budget and the sample agent, and returns a client holding a
// fresh probe token and a func revoking it.
func (v *validator) ensureProbe(ctx context.Context, admin *apiclient.Client) (*apiclient.Client, func(), string, error) {
	created := false
	t, err := admin.GetTenant(ctx, probeTenantID)
	switch {
	case errors.Is(err, errs.ErrNotFound):
		_, err = admin.CreateTenant(ctx, map[string]any{"tenant_id": probeTenantID,
			"name": "AgentOS smoke-test probe (agentos validate / redeploy)",
			"entitlements": map[string]any{"model_tiers_allowed": []string{"*"}, "model_backends_allowed": []string{"*"},
				"tool_ids_allowed": []string{"tool.echo"}},
			"quotas": map[string]any{"models": map[string]any{"token_budget": map[string]any{"window": "day", "max_tokens": probeDailyTokens}}}})
		if err != nil && !errors.Is(err, errs.ErrConflict) {
			return nil, nil, "", fmt.Errorf("create probe tenant %s: %w", probeTenantID, err)
		}
		created = true
	case err != nil:
		return nil, nil, "", fmt.Errorf("get probe tenant %s: %w", probeTenantID, err)
	case t.Status != "" && t.Status != store.TenantActive:
		return nil, nil, "", &checkError{check: "probe tenant ready", service: "orchestrator",
			next: "agentos tenants update " + probeTenantID + " --status active",
			err:  fmt.Errorf("probe tenant %s is %s; validate runs its smoke tests there", probeTenantID, t.Status)}
	}
	asProbe := *admin
	asProbe.TenantID = probeTenantID
	if _, err := asProbe.GetAgent(ctx, sampleAgentID); errors.Is(err, errs.ErrNotFound) {
		if _, err := asProbe.PutAgent(ctx, sampleAgentID, sampleAgentSpec()); err != nil {
			return nil, nil, "", fmt.Errorf("register %s in %s: %w", sampleAgentID, probeTenantID, err)
		}
	} else if err != nil {
		return nil, nil, "", fmt.Errorf("get %s in %s: %w", sampleAgentID, probeTenantID, err)
	}
	tok, err := admin.IssueToken(ctx, probeTenantID, apiclient.TokenRequest{PrincipalID: probePrincipal, Scopes: probeScopes, Roles: []string{"tenant_user"}})
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue probe token: %w", err)
	}
	c := &apiclient.Client{BaseURL: v.n.Cfg.OrchestratorURL, PolicyURL: v.n.Cfg.ModelPolicyURL, Token: tok.Secret, HTTP: v.n.HTTP}
	revoke := func() { _ = admin.RevokeToken(context.WithoutCancel(ctx), probeTenantID, tok.TokenID) }
	detail := probeTenantID + " ready"
	if created {
		detail = probeTenantID + " created (own daily budget " + fmt.Sprint(probeDailyTokens) + " tokens)"
	}
	return c, revoke, detail, nil
}

func errOrOK(err error) any {
	if err == nil {
		return "200 OK"
	}
	return err
}

// increasedCounter returns an agentos_*_total counter that grew.
func increasedCounter(before, after map[string]float64) (string, bool) {
	for name, v := range after {
		if strings.HasPrefix(name, "agentos_") && strings.HasSuffix(name, "_total") && v > before[name] {
			return name, true
		}
	}
	return "", false
}
