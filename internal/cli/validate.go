package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/store"
)

// Names used by validate's smoke tests.
const (
	sampleAgentID   = "agt_sample_echo_v1"
	probeTenantID   = "tnt_validate_probe"
	probePrincipal  = "usr_validate_probe"
	smokeRunTimeout = 60 * time.Second
)

func newValidateCmd() *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check every service's health, then run the smoke tests",
		Long: `validate checks /v1/health and /readyz of every service, then runs real
smoke tests: the sample agent run streamed over SSE to completion (with a tool
call and a model call through model-policy), a policy check, metrics counters,
the default tenant, header auth for the mode, and cross-tenant isolation.
It exits 0 only if everything passes and writes reports/validate-*.md/.json.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().StringVar(&profile, "profile", "local", "local or federated")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		n, err := nodeFromFlags(cf)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		p := NewProgress(out, isTerminal(os.Stdout))
		rep := newReport("validate", n, profile)
		v := &validator{n: n, p: p, rep: rep}
		err = v.run(cmd.Context())
		return finishReport(out, n, rep, p, err)
	}
	return cmd
}

// validator runs health checks and smoke tests, recording into a report.
type validator struct {
	n   *Node
	p   *Progress
	rep *Report
}

// checkError is a failed check with the service to blame and what to do.
type checkError struct {
	check   string
	service string
	next    string
	err     error
}

func (e *checkError) Error() string {
	if e.service != "" {
		return fmt.Sprintf("%s (%s): %v", e.check, e.service, e.err)
	}
	return fmt.Sprintf("%s: %v", e.check, e.err)
}

func (e *checkError) Unwrap() error { return e.err }

// run is the "validate" phase: health then smoke.
func (v *validator) run(ctx context.Context) error {
	v.p.Phase("validate")
	if err := v.health(ctx); err != nil {
		v.p.End(err, "")
		return err
	}
	err := v.smoke(ctx)
	v.p.End(err, "")
	return err
}

// health checks /v1/health and /readyz of every service.
func (v *validator) health(ctx context.Context) error {
	var failed *checkError
	ok := 0
	for _, s := range v.n.Services {
		for _, path := range []string{s.HealthPath, "/readyz"} {
			start := time.Now()
			name := s.Name + " " + path
			var err error
			var h Health
			if path == "/readyz" {
				err = getReady(ctx, v.n.HTTP, s.URL)
			} else {
				h, err = GetHealth(ctx, v.n.HTTP, s.URL, path)
				if err == nil {
					v.rep.Versions.Services[s.Name] = h.Version
				}
			}
			res := CheckResult{Name: name, OK: err == nil, DurationMs: time.Since(start).Milliseconds()}
			if err != nil {
				res.Error = err.Error()
				if failed == nil {
					failed = &checkError{check: "health " + name, service: s.Name, next: "agentos up", err: err}
					// A dependency named by /readyz is the thing to blame.
					if dep := readyDependency(err); dep != "" {
						failed.service = dep
					}
				}
			} else {
				res.Detail = "ok"
				if h.Version != "" {
					res.Detail = "version " + h.Version
				}
			}
			v.rep.Health = append(v.rep.Health, res)
		}
		if failed == nil || failed.service != s.Name {
			ok++
		}
		v.p.Milestone("services healthy", ok, len(v.n.Services))
	}
	if failed != nil {
		return failed
	}
	return nil
}

// getReady calls /readyz; a 503 names the failing dependency.
func getReady(ctx context.Context, hc *http.Client, base string) error {
	c := &Client{HTTP: hc}
	return c.do(ctx, http.MethodGet, base, "/readyz", nil, nil)
}

// readyDependency extracts the failing dependency from a /readyz error: the
// envelope's details.dependency, or a service name in its message.
func readyDependency(err error) string {
	var ae *APIError
	if !errors.As(err, &ae) {
		return ""
	}
	if d, ok := ae.Details["dependency"].(string); ok && d != "" {
		return d
	}
	if f, ok := ae.Details["failing"].([]any); ok && len(f) > 0 {
		if d, ok := f[0].(string); ok && d != "" {
			return d
		}
	}
	for _, name := range []string{"model-policy", "orchestrator", "federation", "store", "queue"} {
		if strings.Contains(ae.Message, name) {
			return name
		}
	}
	return ""
}

// clients returns the tenant-admin and platform-admin clients from
// credentials.json.
func (v *validator) clients() (tenant, admin *Client, creds *Credentials, err error) {
	creds, err = loadCredentials(v.n.Cfg.CredentialsFile())
	if err != nil {
		next := "agentos up"
		if v.n.Cfg.Mode == config.ModeProd {
			next = "agentos bootstrap --mode prod --tenant-id tnt_yourcompany"
		}
		return nil, nil, nil, &checkError{check: "credentials", next: next, err: err}
	}
	base := Client{BaseURL: v.n.Cfg.OrchestratorURL, PolicyURL: v.n.Cfg.ModelPolicyURL, HTTP: &http.Client{}}
	t, a := base, base
	t.Token = creds.TenantAdmin.Token
	a.Token = creds.PlatformAdmin.Token
	return &t, &a, creds, nil
}

// smoke runs the end-to-end smoke tests.
func (v *validator) smoke(ctx context.Context) error {
	tenant, admin, creds, err := v.clients()
	if err != nil {
		return err
	}
	checks := []struct {
		name    string
		service string
		fn      func(context.Context) (string, error)
	}{}
	var run store.Run
	var before, beforeMP map[string]float64
	add := func(name, service string, fn func(context.Context) (string, error)) {
		checks = append(checks, struct {
			name    string
			service string
			fn      func(context.Context) (string, error)
		}{name, service, fn})
	}
	tenantID := creds.TenantID
	if tenantID == "" {
		tenantID = v.n.Cfg.DefaultTenant
	}
	add("default tenant exists", "orchestrator", func(ctx context.Context) (string, error) {
		t, err := admin.GetTenant(ctx, tenantID)
		if err != nil {
			return "", err
		}
		if t.Status != "" && t.Status != store.TenantActive {
			return "", fmt.Errorf("tenant %s is %s", tenantID, t.Status)
		}
		v.rep.Seeded.Tenants = appendUnique(v.rep.Seeded.Tenants, tenantID)
		return tenantID + " " + t.Status, nil
	})
	add("metrics baseline", "orchestrator", func(ctx context.Context) (string, error) {
		var err error
		if before, err = Metrics(ctx, v.n.HTTP, v.n.Cfg.OrchestratorURL); err != nil {
			return "", err
		}
		beforeMP, err = Metrics(ctx, v.n.HTTP, v.n.Cfg.ModelPolicyURL)
		if err != nil {
			return "", &checkError{check: "metrics baseline", service: "model-policy", err: err}
		}
		return fmt.Sprintf("agentos_runs_total=%v", before["agentos_runs_total"]), nil
	})
	add("sample run over SSE", "orchestrator", func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, smokeRunTimeout)
		defer cancel()
		var err error
		run, err = tenant.CreateRun(ctx, sampleAgentID, "agentos validate smoke test", nil)
		if err != nil {
			return "", fmt.Errorf("create run on %s: %w", sampleAgentID, err)
		}
		var events, tools, models int
		var last store.Event
		var modelErr string
		err = tenant.StreamEvents(ctx, run.RunID, 0, func(ev store.Event) error {
			events++
			last = ev
			v.p.Status(fmt.Sprintf("run %s: %d events, last %s", run.RunID, events, strings.TrimPrefix(ev.Type, "agentos.")))
			switch ev.Type {
			case store.EventToolCallCompleted:
				var pl struct {
					Status string `json:"status"`
				}
				_ = json.Unmarshal(ev.Payload, &pl)
				if pl.Status == "ok" {
					tools++
				}
			case store.EventModelCompleted:
				var pl struct {
					Status string `json:"status"`
					Route  struct {
						Backend string `json:"backend"`
					} `json:"route"`
					PolicyOutcome struct {
						Decision string `json:"decision"`
					} `json:"policy_outcome"`
				}
				_ = json.Unmarshal(ev.Payload, &pl)
				if pl.PolicyOutcome.Decision == "" {
					modelErr = "model.completed has no policy_outcome.decision"
				} else {
					models++
				}
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("stream events of %s: %w", run.RunID, err)
		}
		switch {
		case last.Type != store.EventRunCompleted:
			return "", fmt.Errorf("run %s ended with %q, want agentos.run.completed: %s", run.RunID, last.Type, string(last.Payload))
		case tools < 1:
			return "", fmt.Errorf("run %s completed without an ok agentos.tool.call.completed", run.RunID)
		case models < 1:
			if modelErr != "" {
				return "", &checkError{check: "sample run over SSE", service: "model-policy", err: errors.New(modelErr)}
			}
			return "", &checkError{check: "sample run over SSE", service: "model-policy", err: fmt.Errorf("run %s completed without agentos.model.completed", run.RunID)}
		}
		return fmt.Sprintf("%s completed: %d events, %d tool calls, %d model calls", run.RunID, events, tools, models), nil
	})
	add("policy check", "model-policy", func(ctx context.Context) (string, error) {
		res, err := tenant.PolicyCheck(ctx, "req_validate_"+time.Now().UTC().Format("150405"), "validate probe: write to ops@example.com")
		if err != nil {
			return "", err
		}
		switch res.Decision {
		case "allowed", "redacted", "blocked":
			return "decision " + res.Decision, nil
		}
		return "", fmt.Errorf("unexpected decision %q", res.Decision)
	})
	add("metrics counters changed", "orchestrator", func(ctx context.Context) (string, error) {
		after, err := Metrics(ctx, v.n.HTTP, v.n.Cfg.OrchestratorURL)
		if err != nil {
			return "", err
		}
		if after["agentos_runs_total"] <= before["agentos_runs_total"] {
			return "", fmt.Errorf("agentos_runs_total did not increase (%v -> %v)", before["agentos_runs_total"], after["agentos_runs_total"])
		}
		afterMP, err := Metrics(ctx, v.n.HTTP, v.n.Cfg.ModelPolicyURL)
		if err != nil {
			return "", &checkError{check: "metrics counters changed", service: "model-policy", err: err}
		}
		name, ok := increasedCounter(beforeMP, afterMP)
		if !ok {
			return "", &checkError{check: "metrics counters changed", service: "model-policy", err: errors.New("no agentos_*_total counter of model-policy increased")}
		}
		return fmt.Sprintf("agentos_runs_total %v -> %v; model-policy %s increased", before["agentos_runs_total"], after["agentos_runs_total"], name), nil
	})
	add("header auth for mode", "orchestrator", func(ctx context.Context) (string, error) {
		hc := &Client{BaseURL: v.n.Cfg.OrchestratorURL, TenantID: tenantID, HTTP: v.n.HTTP}
		_, err := hc.ListAgents(ctx)
		if v.n.Cfg.DevMode() {
			if err != nil {
				return "", fmt.Errorf("X-Tenant-Id auth refused in %s mode: %w", v.n.Cfg.Mode, err)
			}
			return "X-Tenant-Id accepted (" + v.n.Cfg.Mode + ")", nil
		}
		if !IsStatus(err, http.StatusUnauthorized) {
			return "", fmt.Errorf("prod must answer 401 to X-Tenant-Id alone, got %v", err)
		}
		return "X-Tenant-Id refused with 401 (prod)", nil
	})
	add("cross-tenant isolation", "orchestrator", func(ctx context.Context) (string, error) {
		if run.RunID == "" {
			return "", errors.New("no run to probe (the sample run failed)")
		}
		return v.isolation(ctx, admin, run.RunID)
	})

	var first error
	passed := 0
	for _, c := range checks {
		if first != nil {
			v.rep.Smoke = append(v.rep.Smoke, CheckResult{Name: c.name, Error: "skipped: an earlier check failed"})
			continue
		}
		start := time.Now()
		detail, err := c.fn(ctx)
		res := CheckResult{Name: c.name, OK: err == nil, DurationMs: time.Since(start).Milliseconds(), Detail: detail}
		if err != nil {
			res.Error = err.Error()
			var ce *checkError
			if !errors.As(err, &ce) {
				ce = &checkError{check: c.name, service: c.service, err: err}
			}
			if ce.next == "" {
				ce.next = "agentos logs " + ce.service + " --tail 100"
			}
			first = ce
		} else {
			passed++
		}
		v.rep.Smoke = append(v.rep.Smoke, res)
		v.p.Milestone("smoke tests passed", passed, len(checks))
		mark := "pass"
		if err != nil {
			mark = "FAIL"
		}
		v.p.Info("%s  %-26s %5dms  %s", mark, c.name, res.DurationMs, firstNonEmpty(res.Error, res.Detail))
	}
	return first
}

// isolation makes sure a second tenant cannot see the first tenant's run or
// its events (404, never 403).
func (v *validator) isolation(ctx context.Context, admin *Client, runID string) (string, error) {
	if _, err := admin.GetTenant(ctx, probeTenantID); IsStatus(err, http.StatusNotFound) {
		if _, err := admin.CreateTenant(ctx, map[string]any{"tenant_id": probeTenantID, "name": "agentos validate probe"}); err != nil && !IsStatus(err, http.StatusConflict) {
			return "", fmt.Errorf("create %s: %w", probeTenantID, err)
		}
	} else if err != nil {
		return "", err
	}
	tok, err := admin.IssueToken(ctx, probeTenantID, TokenRequest{PrincipalID: probePrincipal,
		Scopes: []string{"runs:read", "runs:create", "events:read", "agents:read"}, Roles: []string{"tenant_user"}})
	if err != nil {
		return "", fmt.Errorf("issue probe token: %w", err)
	}
	defer func() { _ = admin.RevokeToken(context.WithoutCancel(ctx), probeTenantID, tok.TokenID) }()
	probe := &Client{BaseURL: v.n.Cfg.OrchestratorURL, Token: tok.Secret, HTTP: v.n.HTTP}
	if _, err := probe.GetRun(ctx, runID); !IsStatus(err, http.StatusNotFound) {
		return "", fmt.Errorf("%s reading another tenant's run: want 404, got %v", probeTenantID, errOrOK(err))
	}
	if _, err := probe.ListEvents(ctx, runID); !IsStatus(err, http.StatusNotFound) {
		return "", fmt.Errorf("%s reading another tenant's events: want 404, got %v", probeTenantID, errOrOK(err))
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := probe.StreamEvents(sctx, runID, 0, func(store.Event) error { return nil }); !IsStatus(err, http.StatusNotFound) {
		return "", fmt.Errorf("%s streaming another tenant's events: want 404, got %v", probeTenantID, errOrOK(err))
	}
	return probeTenantID + " gets 404 on run, events (JSON and SSE)", nil
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

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
