package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/supervisor"
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
its events back through A (gapless sequence 1..N, terminal event last).

--profile cluster (the default after ` + "`agentos up --profile cluster`" + `) checks every
process (PostgreSQL by a connection), then also streams a run created on the
first orchestrator replica from the last, and cancels a run created on the
last through the gateway, reading its state back from the first.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	cmd.Flags().StringVar(&profile, "profile", "", "local, federated (node A and node B of `agentos up --profile federated`) or cluster (default: cluster when `agentos up --profile cluster` made one, else local)")
	testAlert := cmd.Flags().Bool("test-alert", false, "also send a test alert e-mail through AGENTOS_ALERT_* (see agentos test-alert)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		n, err := nodeFromFlags(cf)
		if err != nil {
			return err
		}
		profile = defaultProfile(profile, n.Cfg.Home)
		if profile, err = resolveProfile(profile, n.Cfg.Home); err != nil {
			return &ExitError{Code: 2, Err: err}
		}
		if profile == profileCluster {
			if ok, err := loadCluster(n); err != nil || !ok {
				return &ExitError{Code: 2, Err: cmp.Or(err, fmt.Errorf("no cluster under %s: run `agentos up --profile cluster` first", n.Cfg.Home))}
			}
		}
		if profile == profileFederated {
			ok, err := loadNodeB(n)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if !ok {
				return &ExitError{Code: 2, Err: fmt.Errorf("no node B under %s: run `agentos up --profile federated` first", n.Cfg.Home)}
			}
			if _, ok := n.Service("federation"); !ok {
				return &ExitError{Code: 2, Err: errors.New("federation is not available in this build")}
			}
		}
		out := cmd.OutOrStdout()
		p := NewProgress(out, isTerminal(os.Stdout) && !n.Cfg.NoSpinner)
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
	n   *supervisor.Node
	p   *Progress
	rep *Report
}

// checkError is a failed check with the service to blame and what to do.
type checkError struct {
	check   string
	service string
	node    *supervisor.Node // the node the service belongs to; nil: node A
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
	for _, n := range v.n.All() {
		total += len(n.Services)
	}
	for _, n := range v.n.All() {
		for _, s := range n.Services {
			for _, path := range healthPaths(s) {
				start := time.Now()
				name := n.Label(s.Name) + " " + path
				var err error
				var h apiclient.Health
				switch path {
				case "/readyz":
					err = getReady(ctx, n.HTTP, s.URL)
				case pgConnect:
					h.Version, err = inspectHealth(ctx, n, s)
				default:
					h, err = apiclient.GetHealth(ctx, n.HTTP, s.URL, path)
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

// profileFlag is " --profile federated" when a has node B,
// " --profile cluster" for the cluster profile.
func profileFlag(a *supervisor.Node) string {
	switch {
	case a.B != nil:
		return " --profile federated"
	case isCluster(a):
		return " --profile cluster"
	}
	return ""
}

// pgConnect names the health check of a process without an HTTP health
// endpoint (PostgreSQL): a connection and a query.
const pgConnect = "connect"

// healthPaths are the checks of one process.
func healthPaths(s supervisor.Service) []string {
	if s.HealthPath == "" {
		return []string{pgConnect}
	}
	return []string{s.HealthPath, "/readyz"}
}

// inspectHealth is the supervisor's health check of s, as an error.
func inspectHealth(ctx context.Context, n *supervisor.Node, s supervisor.Service) (string, error) {
	st := n.Inspect(ctx, s)
	if !st.Healthy {
		return "", errors.New(st.Err)
	}
	return st.Version, nil
}

// getReady calls /readyz; a 503 names the failing dependency.
func getReady(ctx context.Context, hc *http.Client, base string) error {
	c := &apiclient.Client{HTTP: hc}
	return c.Do(ctx, http.MethodGet, base, "/readyz", nil, nil)
}

// readyDependency extracts the failing dependency from a /readyz error: the
// envelope's details.dependency, or a service name in its message.
func readyDependency(err error) string {
	var ae *errs.Error
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

// check is one smoke test: fn returns a detail line or an error; service
// (on node, nil for node A) is blamed unless the error is a *checkError.
type check struct {
	name    string
	service string
	node    *supervisor.Node
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
				ce.next = "agentos logs " + ce.service + n.NodeFlag() + " --tail 100"
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
