package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/federation/peers"
	"github.com/nexixai/agentos/federation/pki"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
)

// Names used by validate's smoke tests. The smoke run and policy check run
// in their own probe tenant, with its own token budget, so they never
// spend (or fail on) a user's tenant's quota.
const (
	sampleAgentID   = "agt_sample_echo_v1"
	probeTenantID   = "tnt_agentos_probe"
	probePrincipal  = auth.ValidateProbePrincipalID
	smokeRunTimeout = 60 * time.Second
	// probeDailyTokens is the probe tenant's own daily token budget: a
	// smoke run takes a few hundred tokens on the builtin backend.
	probeDailyTokens = 2_000_000
)

// probeScopes are what the smoke tests do as the probe tenant.
var probeScopes = []string{"runs:read", "runs:create", "runs:cancel", "events:read", "agents:read", "policy:check"}

func newValidateCmd() *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check every service's health, then run the smoke tests",
		Long: `validate checks /v1/health and /readyz of every service, then runs real
smoke tests: the sample agent run streamed over SSE to completion (with a tool
call and a model call through model-policy), a policy check, metrics counters,
the default tenant, header auth for the mode, and cross-tenant isolation.
It exits 0 only if everything passes and writes reports/validate-*.md/.json.

The smoke run and policy check run in the probe tenant ` + probeTenantID + `, never
in a user's tenant: validate (and redeploy, which runs it) creates it when
missing, with its own daily token budget and the sample agent, and issues
a short-lived token for ` + probePrincipal + ` that it revokes at the end. So a
user tenant whose budget is spent does not make validate fail. The isolation
check reads the probe's run with your tenant's admin token (want 404).

--profile federated also checks node B's services (made by
` + "`agentos up --profile federated`" + `), both peers files, each node's mTLS peer
API with the other's certificate, then forwards a run from A to B and streams
its events back through A (gapless sequence 1..N, terminal event last).`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().StringVar(&profile, "profile", profileLocal, "local, or federated (node A and node B of `agentos up --profile federated`)")
	testAlert := cmd.Flags().Bool("test-alert", false, "also send a test alert e-mail through AGENTOS_ALERT_* (see agentos test-alert)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		n, err := nodeFromFlags(cf)
		if err != nil {
			return err
		}
		if profile, err = resolveProfile(profile, n.Cfg.Home); err != nil {
			return &ExitError{Code: 2, Err: err}
		}
		if profile == profileFederated {
			ok, err := loadNodeB(n)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if !ok {
				return &ExitError{Code: 2, Err: fmt.Errorf("no node B under %s: run `agentos up --profile federated` first", n.Cfg.Home)}
			}
			if _, ok := n.service("federation"); !ok {
				return &ExitError{Code: 2, Err: errors.New("federation is not available in this build")}
			}
		}
		out := cmd.OutOrStdout()
		p := NewProgress(out, isTerminal(os.Stdout))
		rep := newReport("validate", n, profile)
		v := &validator{n: n, p: p, rep: rep}
		err = v.run(cmd.Context())
		if *testAlert {
			err = v.testAlertCheck(cmd.Context(), err)
		}
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
	node    *Node // the node the service belongs to; nil: node A
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

// health checks /v1/health and /readyz of every service of every node.
func (v *validator) health(ctx context.Context) error {
	var failed *checkError
	ok, total := 0, 0
	for _, n := range v.n.all() {
		total += len(n.Services)
	}
	for _, n := range v.n.all() {
		for _, s := range n.Services {
			for _, path := range []string{s.HealthPath, "/readyz"} {
				start := time.Now()
				name := n.label(s.Name) + " " + path
				var err error
				var h Health
				if path == "/readyz" {
					err = getReady(ctx, n.HTTP, s.URL)
				} else {
					h, err = GetHealth(ctx, n.HTTP, s.URL, path)
					if err == nil {
						v.rep.Versions.Services[s.Name] = h.Version
					}
				}
				res := CheckResult{Name: name, OK: err == nil, DurationMs: time.Since(start).Milliseconds()}
				if err != nil {
					res.Error = err.Error()
					if failed == nil {
						failed = &checkError{check: "health " + name, service: s.Name, node: n, next: "agentos up" + profileFlag(v.n), err: err}
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
			if failed == nil || failed.node != n || failed.service != s.Name {
				ok++
			}
			v.p.Milestone("services healthy", ok, total)
		}
	}
	if failed != nil {
		return failed
	}
	return nil
}

// profileFlag is " --profile federated" when a has node B.
func profileFlag(a *Node) string {
	if a.B != nil {
		return " --profile federated"
	}
	return ""
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
	base := Client{BaseURL: v.n.Cfg.OrchestratorURL, PolicyURL: v.n.Cfg.ModelPolicyURL, HTTP: outbound.ModelClient(outbound.ForModels(v.n.Cfg))}
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
	var checks []check
	var run store.Run
	var before, beforeMP map[string]float64
	add := func(name, service string, fn func(context.Context) (string, error)) {
		checks = append(checks, check{name: name, service: service, fn: fn})
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
	var probe *Client
	revokeProbe := func() {}
	defer func() { revokeProbe() }()
	add("probe tenant ready", "orchestrator", func(ctx context.Context) (string, error) {
		var detail string
		var err error
		var revoke func()
		probe, revoke, detail, err = v.ensureProbe(ctx, admin)
		if revoke != nil {
			revokeProbe = revoke
		}
		return detail, err
	})
	add("sample run over SSE", "orchestrator", func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, smokeRunTimeout)
		defer cancel()
		if probe == nil {
			return "", errors.New("no probe tenant (see the check before)")
		}
		tenant := probe
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
		if probe == nil {
			return "", errors.New("no probe tenant (see the checks before)")
		}
		res, err := probe.PolicyCheck(ctx, "req_validate_"+time.Now().UTC().Format("150405"), "validate probe: write to ops@example.com")
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
		return v.isolation(ctx, tenant, tenantID, run.RunID)
	})

	if err := v.runChecks(ctx, "smoke tests passed", checks, &v.rep.Smoke); err != nil {
		return err
	}
	if v.n.B != nil {
		return v.federation(ctx, tenant)
	}
	return nil
}

// check is one smoke test: fn returns a detail line or an error; service
// (on node, nil for node A) is blamed unless the error is a *checkError.
type check struct {
	name    string
	service string
	node    *Node
	fn      func(context.Context) (string, error)
}

// runChecks runs checks in order, recording each into dst; after the first
// failure the rest are recorded as skipped. It returns the first failure.
func (v *validator) runChecks(ctx context.Context, milestone string, checks []check, dst *[]CheckResult) error {
	var first error
	passed := 0
	for _, c := range checks {
		if first != nil {
			*dst = append(*dst, CheckResult{Name: c.name, Error: "skipped: an earlier check failed"})
			continue
		}
		start := time.Now()
		detail, err := c.fn(ctx)
		res := CheckResult{Name: c.name, OK: err == nil, DurationMs: time.Since(start).Milliseconds(), Detail: detail}
		if err != nil {
			res.Error = err.Error()
			var ce *checkError
			if !errors.As(err, &ce) {
				ce = &checkError{check: c.name, service: c.service, node: c.node, err: err}
			}
			if ce.next == "" {
				n := v.n
				if ce.node != nil {
					n = ce.node
				}
				ce.next = "agentos logs " + ce.service + n.nodeFlag() + " --tail 100"
			}
			first = ce
		} else {
			passed++
		}
		*dst = append(*dst, res)
		v.p.Milestone(milestone, passed, len(checks))
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
// isolation checks that the user's tenant (its admin token) cannot see
// the probe tenant's run: 404 on the run, its events as JSON and as SSE.
func (v *validator) isolation(ctx context.Context, tenant *Client, tenantID, runID string) (string, error) {
	if tenantID == probeTenantID {
		return "", fmt.Errorf("the credentials' tenant is the probe tenant %s; isolation needs another", probeTenantID)
	}
	if _, err := tenant.GetRun(ctx, runID); !IsStatus(err, http.StatusNotFound) {
		return "", fmt.Errorf("%s reading %s's run: want 404, got %v", tenantID, probeTenantID, errOrOK(err))
	}
	if _, err := tenant.ListEvents(ctx, runID); !IsStatus(err, http.StatusNotFound) {
		return "", fmt.Errorf("%s reading %s's events: want 404, got %v", tenantID, probeTenantID, errOrOK(err))
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tenant.StreamEvents(sctx, runID, 0, func(store.Event) error { return nil }); !IsStatus(err, http.StatusNotFound) {
		return "", fmt.Errorf("%s streaming %s's events: want 404, got %v", tenantID, probeTenantID, errOrOK(err))
	}
	return tenantID + " gets 404 on " + probeTenantID + "'s run, events (JSON and SSE)", nil
}

// ensureProbe makes sure the probe tenant exists and is active, with its
// own token budget and the sample agent, and returns a client holding a
// fresh probe token and a func revoking it.
func (v *validator) ensureProbe(ctx context.Context, admin *Client) (*Client, func(), string, error) {
	created := false
	t, err := admin.GetTenant(ctx, probeTenantID)
	switch {
	case IsStatus(err, http.StatusNotFound):
		_, err = admin.CreateTenant(ctx, map[string]any{"tenant_id": probeTenantID,
			"name": "AgentOS smoke-test probe (agentos validate / redeploy)",
			"entitlements": map[string]any{"model_tiers_allowed": []string{"*"}, "model_backends_allowed": []string{"*"},
				"tool_ids_allowed": []string{"tool.echo"}},
			"quotas": map[string]any{"models": map[string]any{"token_budget": map[string]any{"window": "day", "max_tokens": probeDailyTokens}}}})
		if err != nil && !IsStatus(err, http.StatusConflict) {
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
	if _, err := asProbe.GetAgent(ctx, sampleAgentID); IsStatus(err, http.StatusNotFound) {
		if _, err := asProbe.PutAgent(ctx, sampleAgentID, sampleAgentSpec()); err != nil {
			return nil, nil, "", fmt.Errorf("register %s in %s: %w", sampleAgentID, probeTenantID, err)
		}
	} else if err != nil {
		return nil, nil, "", fmt.Errorf("get %s in %s: %w", sampleAgentID, probeTenantID, err)
	}
	tok, err := admin.IssueToken(ctx, probeTenantID, TokenRequest{PrincipalID: probePrincipal, Scopes: probeScopes, Roles: []string{"tenant_user"}})
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue probe token: %w", err)
	}
	c := &Client{BaseURL: v.n.Cfg.OrchestratorURL, PolicyURL: v.n.Cfg.ModelPolicyURL, Token: tok.Secret, HTTP: v.n.HTTP}
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

// federation runs the federated profile's checks after node A's smoke
// tests: both peers files, each node's peer API reached over mTLS with the
// other node's certificate (info and capabilities), a run forwarded from A
// to B through A's federation client API, its events streamed back through
// A (gapless sequence 1..N, terminal event last), and the run as node B's
// orchestrator sees it.
func (v *validator) federation(ctx context.Context, tenant *Client) error {
	a, b := v.n, v.n.B
	if v.rep.Federation == nil {
		v.rep.Federation = &FederationReport{Peers: map[string]string{}, Checks: []CheckResult{}}
	}
	var fwd federation.Forwarded
	var streamed []store.Event
	checks := []check{
		{name: "peers configured", service: "federation", fn: func(context.Context) (string, error) {
			return checkPeersFiles(a, b)
		}},
		{name: "a→b peer info over mTLS", service: "federation", node: b, fn: func(ctx context.Context) (string, error) {
			return probePeer(ctx, a, b)
		}},
		{name: "b→a peer info over mTLS", service: "federation", node: a, fn: func(ctx context.Context) (string, error) {
			return probePeer(ctx, b, a)
		}},
		{name: "forward a→b", service: "federation", fn: func(ctx context.Context) (string, error) {
			var err error
			fwd, err = forwardRun(ctx, tenant, a.Cfg.FederationURL, b.Cfg.StackID)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s created on %s as %s", fwd.RemoteRunID, fwd.RemoteStackID, fwd.TenantID), nil
		}},
		{name: "stream back through a", service: "federation", fn: func(ctx context.Context) (string, error) {
			if fwd.RemoteRunID == "" {
				return "", errors.New("no forwarded run to stream")
			}
			ctx, cancel := context.WithTimeout(ctx, smokeRunTimeout)
			defer cancel()
			var err error
			streamed, err = streamForwarded(ctx, tenant, a.Cfg.FederationURL, fwd, func(ev store.Event) {
				v.p.Status(fmt.Sprintf("forwarded run %s: event %d %s", fwd.RemoteRunID, ev.Sequence, strings.TrimPrefix(ev.Type, "agentos.")))
			})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d events, sequence 1..%d, last %s", len(streamed), len(streamed), streamed[len(streamed)-1].Type), nil
		}},
		{name: "forwarded run on b", service: "orchestrator", node: b, fn: func(ctx context.Context) (string, error) {
			return checkRunOnB(ctx, b, fwd, len(streamed))
		}},
	}
	return v.runChecks(ctx, "federation checks passed", checks, &v.rep.Federation.Checks)
}

// checkPeersFiles makes sure each node lists the other as a peer at its
// peer API URL.
func checkPeersFiles(a, b *Node) (string, error) {
	for _, x := range []struct{ self, other *Node }{{a, b}, {b, a}} {
		path := nodeFederationFiles(x.self).Peers
		ps, err := peers.Load(path)
		if err != nil {
			return "", &checkError{check: "peers configured", service: "federation", node: x.self,
				next: "agentos up --profile federated", err: fmt.Errorf("node %s peers file: %w", x.self.Name, err)}
		}
		found := false
		for _, p := range ps {
			if p.StackID == x.other.Cfg.StackID {
				found = true
				if want := peerURL(x.other.Cfg); p.FederationURL != want {
					return "", &checkError{check: "peers configured", service: "federation", node: x.self,
						next: "agentos up --profile federated",
						err:  fmt.Errorf("node %s lists %s at %s, want %s (%s)", x.self.Name, p.StackID, p.FederationURL, want, path)}
				}
			}
		}
		if !found {
			return "", &checkError{check: "peers configured", service: "federation", node: x.self,
				next: "agentos up --profile federated",
				err:  fmt.Errorf("node %s does not list %s in %s", x.self.Name, x.other.Cfg.StackID, path)}
		}
	}
	return fmt.Sprintf("%s lists %s and %s lists %s", a.Cfg.StackID, b.Cfg.StackID, b.Cfg.StackID, a.Cfg.StackID), nil
}

// probePeer calls to's mTLS peer API with from's node certificate and checks
// its peer info names to's stack and its capabilities include forwarding
// and event streaming.
func probePeer(ctx context.Context, from, to *Node) (string, error) {
	f := nodeFederationFiles(from)
	nt, err := pki.LoadNodeTLS(f.CA, f.Cert, f.Key)
	if err != nil {
		return "", &checkError{check: from.Name + "→" + to.Name + " peer info over mTLS", service: "federation", node: from,
			next: "agentos up --profile federated", err: fmt.Errorf("node %s certificate: %w", from.Name, err)}
	}
	hc := outbound.Client(outbound.FromConfig(from.Cfg), nt.ClientConfig(nil, ""))
	hc.Timeout = 10 * time.Second
	defer hc.CloseIdleConnections()
	c := &Client{HTTP: hc}
	base := peerURL(to.Cfg)
	var info struct {
		Peer federation.PeerInfo `json:"peer"`
	}
	if err := c.do(ctx, http.MethodGet, base, "/v1/federation/peer", nil, &info); err != nil {
		return "", fmt.Errorf("GET %s/v1/federation/peer with %s's certificate: %w", base, from.Cfg.StackID, err)
	}
	if info.Peer.StackID != to.Cfg.StackID {
		return "", fmt.Errorf("%s answers as stack %q, want %s", base, info.Peer.StackID, to.Cfg.StackID)
	}
	var caps struct {
		Capabilities federation.Capabilities `json:"capabilities"`
	}
	if err := c.do(ctx, http.MethodGet, base, "/v1/federation/peer/capabilities", nil, &caps); err != nil {
		return "", fmt.Errorf("GET %s/v1/federation/peer/capabilities: %w", base, err)
	}
	for _, want := range []string{federation.CapRunsForward, federation.CapEventsStream} {
		if !caps.Capabilities.Has(want) {
			return "", fmt.Errorf("%s does not offer %s", to.Cfg.StackID, want)
		}
	}
	return fmt.Sprintf("%s (region %s, version %s) offers %s, %s", info.Peer.StackID, info.Peer.Region, info.Peer.Build.Version,
		federation.CapRunsForward, federation.CapEventsStream), nil
}

// forwardRun asks the federation client API at base to run the sample
// agent on stack target.
func forwardRun(ctx context.Context, c *Client, base, target string) (federation.Forwarded, error) {
	body := map[string]any{"forward": map[string]any{
		"target_selector": map[string]any{"stack_id": target,
			"required_capabilities": []string{"runs.forward", "events_stream"}},
		"run_request": map[string]any{"agent_id": sampleAgentID,
			"input":           map[string]any{"type": "text", "text": "agentos validate: federated smoke test"},
			"idempotency_key": "validate-fed-" + time.Now().UTC().Format("20060102T150405.000000000")},
	}}
	var out struct {
		Forwarded federation.Forwarded `json:"forwarded"`
	}
	if err := c.do(ctx, http.MethodPost, base, "/v1/federation/runs:forward", body, &out); err != nil {
		return out.Forwarded, fmt.Errorf("POST %s/v1/federation/runs:forward: %w", base, err)
	}
	f := out.Forwarded
	switch {
	case f.RemoteStackID != target:
		return f, fmt.Errorf("forwarded to %q, want %s", f.RemoteStackID, target)
	case f.RemoteRunID == "":
		return f, errors.New("forward answered without remote_run_id")
	case f.RemoteEventsURL == "":
		return f, errors.New("forward answered without remote_events_url")
	}
	return f, nil
}

// streamForwarded reads the forwarded run's events over SSE through the
// federation client API at base until the terminal event, and checks them:
// the run and tenant of the forward, sequence 1..N without gaps, the
// terminal event last and agentos.run.completed.
func streamForwarded(ctx context.Context, c *Client, base string, f federation.Forwarded, progress func(store.Event)) ([]store.Event, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+f.RemoteEventsURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	c.authorize(req)
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, decodeAPIError(resp.StatusCode, data)
	}
	var evs []store.Event
	err = ReadSSE(resp.Body, func(fr SSEFrame) error {
		if len(fr.Data) == 0 {
			return nil
		}
		ev, err := DecodeEventData(fr.Data)
		if err != nil {
			return err
		}
		evs = append(evs, ev)
		progress(ev)
		if store.IsTerminalEvent(ev.Type) {
			return errStreamDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStreamDone) {
		return evs, fmt.Errorf("after %d events: %w", len(evs), err)
	}
	return evs, checkEventSequence(evs, f)
}

// checkEventSequence checks a forwarded run's streamed events.
func checkEventSequence(evs []store.Event, f federation.Forwarded) error {
	if len(evs) == 0 {
		return errors.New("the stream ended without events")
	}
	for i, ev := range evs {
		switch {
		case ev.Sequence != int64(i+1):
			return fmt.Errorf("event %d has sequence %d: want gapless 1..N", i+1, ev.Sequence)
		case ev.RunID != f.RemoteRunID:
			return fmt.Errorf("event %d belongs to run %q, want %s", ev.Sequence, ev.RunID, f.RemoteRunID)
		case f.TenantID != "" && ev.TenantID != f.TenantID:
			return fmt.Errorf("event %d belongs to tenant %q, want %s", ev.Sequence, ev.TenantID, f.TenantID)
		case i < len(evs)-1 && store.IsTerminalEvent(ev.Type):
			return fmt.Errorf("terminal event %s at sequence %d is not the last", ev.Type, ev.Sequence)
		}
	}
	last := evs[len(evs)-1]
	if !store.IsTerminalEvent(last.Type) {
		return fmt.Errorf("the stream ended after %s (sequence %d) without a terminal event", last.Type, last.Sequence)
	}
	if last.Type != store.EventRunCompleted {
		return fmt.Errorf("the forwarded run ended with %s, want %s: %s", last.Type, store.EventRunCompleted, string(last.Payload))
	}
	return nil
}

// checkRunOnB reads the forwarded run from node B's orchestrator with node
// B's tenant-admin credentials: it must be completed there with the events
// that were streamed back.
func checkRunOnB(ctx context.Context, b *Node, f federation.Forwarded, streamed int) (string, error) {
	if f.RemoteRunID == "" {
		return "", errors.New("no forwarded run to look up")
	}
	creds, err := loadCredentials(b.Cfg.CredentialsFile())
	if err != nil {
		return "", &checkError{check: "forwarded run on b", service: "orchestrator", node: b, next: "agentos up --profile federated", err: err}
	}
	c := &Client{BaseURL: b.Cfg.OrchestratorURL, Token: creds.TenantAdmin.Token, HTTP: b.HTTP}
	run, err := c.GetRun(ctx, f.RemoteRunID)
	if err != nil {
		return "", fmt.Errorf("GET run %s on %s: %w", f.RemoteRunID, b.Cfg.StackID, err)
	}
	if run.Status != store.RunCompleted {
		return "", fmt.Errorf("run %s is %s on %s, want completed", run.RunID, run.Status, b.Cfg.StackID)
	}
	evs, err := c.ListEvents(ctx, f.RemoteRunID)
	if err != nil {
		return "", fmt.Errorf("list events of %s on %s: %w", f.RemoteRunID, b.Cfg.StackID, err)
	}
	if len(evs) != streamed {
		return "", fmt.Errorf("%s holds %d events of %s, but %d were streamed back through node a", b.Cfg.StackID, len(evs), run.RunID, streamed)
	}
	return fmt.Sprintf("%s completed on %s with %d events", run.RunID, b.Cfg.StackID, len(evs)), nil
}
