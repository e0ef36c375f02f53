package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/internal/config"
)

// upOptions are the flags of up and redeploy.
type upOptions struct {
	profile      string
	bootTimeout  time.Duration
	skipValidate bool
}

func bindUpFlags(cmd *cobra.Command, o *upOptions) {
	cmd.Flags().StringVar(&o.profile, "profile", "local", "local or federated")
	cmd.Flags().DurationVar(&o.bootTimeout, "boot-timeout", 60*time.Second, "how long to wait for each service to become healthy")
	cmd.Flags().BoolVar(&o.skipValidate, "skip-validate", false, "skip the smoke tests of the validate phase")
}

func newUpCmd() *cobra.Command {
	var o upOptions
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a whole node on this machine as supervised background processes",
		Long: `up starts model-policy, the orchestrator (and federation when this build has
it) as background processes with state under AGENTOS_HOME: data/, logs/,
run/*.pid, credentials.json (0600), reports/. Phases: preflight, boot, seed,
wire, validate, report. It is idempotent: healthy services are left alone,
dead ones (stale pid files) are restarted.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	bindUpFlags(cmd, &o)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return runUpCmd(cmd, cf, o, "up")
	}
	return cmd
}

// runUpCmd is up and redeploy: redeploy stops every service first.
func runUpCmd(cmd *cobra.Command, cf *configFlags, o upOptions, action string) error {
	out := cmd.OutOrStdout()
	n, err := nodeFromFlags(cf)
	if err != nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("preflight: config invalid: %w", err)}
	}
	p := NewProgress(out, isTerminal(os.Stdout))
	rep := newReport(action, n, o.profile)
	fmt.Fprintf(out, "agentos %s: %s node %s (mode %s) in %s\n", action, o.profile, n.Cfg.StackID, n.Cfg.Mode, n.Cfg.Home)
	err = up(cmd.Context(), n, p, rep, o, action == "redeploy", cf.envFile)
	return finishReport(out, n, rep, p, err)
}

// up runs the phases; the caller writes the report.
func up(ctx context.Context, n *Node, p *Progress, rep *Report, o upOptions, restartAll bool, envFile string) error {
	p.Phase("preflight")
	if err := preflight(ctx, n, p, o, envFile); err != nil {
		p.End(err, "")
		return err
	}
	p.Phase("boot")
	if err := boot(ctx, n, p, rep, o, restartAll); err != nil {
		p.End(err, "")
		return err
	}
	p.Phase("seed")
	if err := seed(ctx, n, p, rep); err != nil {
		p.End(err, "")
		return err
	}
	p.Phase("wire")
	if err := wire(ctx, n, p); err != nil {
		p.End(err, "")
		return err
	}
	p.End(nil, "")
	if o.skipValidate {
		p.Skip("validate", "--skip-validate")
		return nil
	}
	if n.Cfg.Mode == config.ModeProd && !fileExists(n.Cfg.CredentialsFile()) {
		v := &validator{n: n, p: p, rep: rep}
		p.Phase("validate")
		err := v.health(ctx)
		p.End(err, "health only: smoke tests need credentials from `agentos bootstrap`")
		return err
	}
	v := &validator{n: n, p: p, rep: rep}
	return v.run(ctx)
}

// preflight checks the configuration, the home directory and the ports.
func preflight(ctx context.Context, n *Node, p *Progress, o upOptions, envFile string) error {
	switch o.profile {
	case "local":
	case "federated":
		return &checkError{check: "preflight profile", next: "agentos up --profile local",
			err: errors.New("federation is not available in this build: --profile federated needs `agentos serve federation` and the federation PKI")}
	default:
		return &checkError{check: "preflight profile", next: "agentos up --profile local",
			err: fmt.Errorf("profile %q is not supported by this build (want local or federated)", o.profile)}
	}
	if n.Cfg.Mode == config.ModeProd {
		if v := os.Getenv("AGENTOS_BOOTSTRAP_ADMIN_TOKEN"); v != "" && len(v) < 32 {
			return &checkError{check: "preflight config", next: "export AGENTOS_BOOTSTRAP_ADMIN_TOKEN=$(openssl rand -hex 32)",
				err: errors.New("AGENTOS_BOOTSTRAP_ADMIN_TOKEN must be at least 32 characters in prod")}
		}
		if c, err := loadCredentials(n.Cfg.CredentialsFile()); err == nil && c.PlatformAdmin.TokenID != "bootstrap" && c.TenantID == n.Cfg.DefaultTenant && c.TenantAdmin.PrincipalID == "usr_tnt_demo_admin" {
			return &checkError{check: "preflight config", next: "agentos nuke --hard --yes-really (or use another --home)",
				err: fmt.Errorf("%s holds demo/dev secrets; prod refuses them", n.Cfg.CredentialsFile())}
		}
	}
	p.Status("config valid")
	for _, d := range []string{n.Cfg.Home, n.Cfg.DataDir, n.runDir(), n.logDir(), n.reportDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return &checkError{check: "preflight home writable", next: "agentos up --home <writable dir>", err: err}
		}
	}
	probe := filepath.Join(n.Cfg.Home, ".write-probe")
	if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
		return &checkError{check: "preflight home writable", next: "agentos up --home <writable dir>", err: err}
	}
	_ = os.Remove(probe)
	p.Status("home writable")
	if err := writeEnvFileIfMissing(envFile, n.Cfg); err != nil {
		return &checkError{check: "preflight env file", next: "agentos up --env-file <path>", err: err}
	}
	free := 0
	for _, s := range n.Services {
		st := n.inspect(ctx, s)
		if st.Healthy || (st.Alive && n.ownsPID(st.PID)) {
			free++ // ours: up will keep or restart it
		} else if err := portFree(s.Addr); err != nil {
			flag := "--" + s.Name + "-addr"
			if s.Name == "orchestrator" {
				flag = "--orchestrator-addr"
			}
			return &checkError{check: "preflight port " + s.Addr, service: s.Name,
				next: fmt.Sprintf("lsof -i :%s  (or: agentos up %s 127.0.0.1:<free port>)", portOf(s.Addr), flag),
				err:  fmt.Errorf("port %s for %s is in use by another process: %v", s.Addr, s.Name, err)}
		} else {
			free++
		}
		p.Milestone("ports available", free, len(n.Services))
	}
	return nil
}

func portOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// boot starts what is not running and waits until every service is healthy.
func boot(ctx context.Context, n *Node, p *Progress, rep *Report, o upOptions, restartAll bool) error {
	if restartAll {
		for i := len(n.Services) - 1; i >= 0; i-- {
			s := n.Services[i]
			p.Status("stopping " + s.Name)
			if _, err := n.stop(s.Name, 15*time.Second); err != nil {
				return &checkError{check: "stop " + s.Name, service: s.Name, next: "agentos status", err: err}
			}
		}
	}
	healthy := 0
	for _, s := range n.Services {
		st := n.inspect(ctx, s)
		sr := ServiceReport{Name: s.Name, PID: st.PID, Address: s.Addr, URL: s.URL, LogFile: n.logFile(s.Name)}
		switch {
		case st.Healthy && st.Alive:
			sr.Action = "left running"
		case st.Healthy:
			sr.Action = "left running (not started by agentos up: no live pid file)"
			sr.PID = 0
		default:
			sr.Action = "started"
			if st.Alive {
				sr.Action = "restarted (was unhealthy)"
				if _, err := n.stop(s.Name, 10*time.Second); err != nil {
					return &checkError{check: "restart " + s.Name, service: s.Name, next: "agentos status", err: err}
				}
			} else if st.PID != 0 {
				sr.Action = "restarted (stale pid file)"
			}
			if restartAll {
				sr.Action = "restarted"
			}
			p.Status(fmt.Sprintf("starting %s on %s", s.Name, s.Addr))
			pid, err := n.start(s)
			if err != nil {
				return &checkError{check: "boot " + s.Name, service: s.Name, next: "agentos logs " + s.Name, err: err}
			}
			sr.PID = pid
			if err := n.waitHealthy(ctx, s, pid, o.bootTimeout); err != nil {
				return &checkError{check: "boot " + s.Name, service: s.Name, next: "agentos logs " + s.Name + " --tail 100", err: err}
			}
		}
		if h, err := GetHealth(ctx, n.HTTP, s.URL, s.HealthPath); err == nil {
			sr.Healthy, sr.Version = true, h.Version
			rep.Versions.Services[s.Name] = h.Version
		}
		rep.Services = append(rep.Services, sr)
		healthy++
		p.Milestone("services healthy", healthy, len(n.Services))
		p.Info("%-13s %-6s pid %-7d %s", s.Name, "up", sr.PID, sr.Action)
	}
	return nil
}

// seededAgents are the agents demo/dev seeding creates (CONTRACT §7).
var seededAgents = []string{sampleAgentID, "my-agent", "agt_demo"}

// seed checks what the orchestrator seeded at startup (demo/dev).
func seed(ctx context.Context, n *Node, p *Progress, rep *Report) error {
	if n.Cfg.Mode == config.ModeProd {
		p.Status("prod: nothing seeded; create the first admin and tenant with `agentos bootstrap`")
		return nil
	}
	credsPath := n.Cfg.CredentialsFile()
	deadline := time.Now().Add(20 * time.Second)
	var creds *Credentials
	var err error
	for {
		if creds, err = loadCredentials(credsPath); err == nil && creds.PlatformAdmin.Token != "" {
			break
		}
		if time.Now().After(deadline) {
			return &checkError{check: "seed credentials", service: "orchestrator", next: "agentos logs orchestrator --tail 100",
				err: fmt.Errorf("%s was not written by the orchestrator: %v", credsPath, err)}
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep.Credentials.Exists = true
	if st, err := os.Stat(credsPath); err == nil && st.Mode().Perm()&0o077 != 0 {
		return &checkError{check: "seed credentials", service: "orchestrator", next: "chmod 600 " + credsPath,
			err: fmt.Errorf("%s has mode %v, want 0600", credsPath, st.Mode().Perm())}
	}
	admin := &Client{BaseURL: n.Cfg.OrchestratorURL, Token: creds.PlatformAdmin.Token, HTTP: n.HTTP}
	tenantID := firstNonEmpty(creds.TenantID, n.Cfg.DefaultTenant)
	total := 1 + len(seededAgents)
	done := 0
	if _, err := admin.GetTenant(ctx, tenantID); err != nil {
		return &checkError{check: "seed tenant " + tenantID, service: "orchestrator", next: "agentos logs orchestrator --tail 100", err: err}
	}
	done++
	p.Milestone("seeded objects present", done, total)
	admin.TenantID = tenantID
	for _, a := range seededAgents {
		if _, err := admin.GetAgent(ctx, a); err != nil {
			return &checkError{check: "seed agent " + a, service: "orchestrator", next: "agentos logs orchestrator --tail 100", err: err}
		}
		done++
		p.Milestone("seeded objects present", done, total)
	}
	rep.Seeded = Seeded{
		Tenants:    []string{tenantID},
		Principals: []string{creds.PlatformAdmin.PrincipalID, creds.TenantAdmin.PrincipalID},
		Agents:     append([]string(nil), seededAgents...),
		Tools:      []string{"tool.echo"},
	}
	return nil
}

// wire checks that the services reach each other: every /readyz (the
// orchestrator's includes model-policy) and model-policy's model catalogue.
func wire(ctx context.Context, n *Node, p *Progress) error {
	total := len(n.Services) + 1
	done := 0
	for _, s := range n.Services {
		if err := getReady(ctx, n.HTTP, s.URL); err != nil {
			svc := s.Name
			if dep := readyDependency(err); dep != "" {
				svc = dep
			}
			return &checkError{check: "wire " + s.Name + " /readyz", service: svc, next: "agentos logs " + svc + " --tail 100", err: err}
		}
		done++
		p.Milestone("links ready", done, total)
	}
	c := &Client{PolicyURL: n.Cfg.ModelPolicyURL, HTTP: n.HTTP}
	if creds, err := loadCredentials(n.Cfg.CredentialsFile()); err == nil {
		c.Token = creds.TenantAdmin.Token
	} else if n.Cfg.DevMode() {
		c.TenantID = n.Cfg.DefaultTenant
	}
	if c.Token == "" && c.TenantID == "" {
		p.Status("model catalogue not checked: no credentials yet")
		return nil
	}
	models, err := c.ListModels(ctx)
	if err != nil {
		return &checkError{check: "wire model catalogue", service: "model-policy", next: "agentos logs model-policy --tail 100", err: err}
	}
	if len(models) == 0 {
		return &checkError{check: "wire model catalogue", service: "model-policy", next: "check AGENTOS_MODEL_POLICY_CONFIG",
			err: errors.New("model-policy lists no models for the default tenant")}
	}
	done++
	p.Milestone("links ready", done, total)
	return nil
}

// finishReport records the outcome, prints the failure or the summary,
// writes the report and converts err into an exit code.
func finishReport(out io.Writer, n *Node, rep *Report, p *Progress, err error) error {
	if err != nil {
		var ce *checkError
		if !errors.As(err, &ce) {
			ce = &checkError{check: rep.Action, next: "agentos status", err: err}
		}
		f := &Failure{Check: ce.check, Message: ce.err.Error(), Service: ce.service, NextCommand: ce.next}
		if ce.service != "" {
			if _, ok := n.service(ce.service); ok {
				f.LogFile = n.logFile(ce.service)
				f.LogLines = tailLines(f.LogFile, 15)
			}
		}
		if f.NextCommand == "" {
			f.NextCommand = "agentos status"
		}
		rep.Failure = f
		rep.Remediation = append(rep.Remediation, remediationFor(f)...)
	}
	rep.finish(err == nil, p.Results())
	werr := rep.write(n.reportDir())
	fmt.Fprintln(out)
	if rep.Failure != nil {
		f := rep.Failure
		fmt.Fprintf(out, "FAILED: %s", f.Check)
		if f.Service != "" {
			fmt.Fprintf(out, " [service: %s]", f.Service)
		}
		fmt.Fprintf(out, "\n  %s\n", f.Message)
		if len(f.LogLines) > 0 {
			fmt.Fprintf(out, "  last lines of %s:\n", f.LogFile)
			for _, l := range f.LogLines {
				fmt.Fprintf(out, "    | %s\n", l)
			}
		}
		fmt.Fprintf(out, "  next: %s\n", f.NextCommand)
	} else if rep.Action == "up" || rep.Action == "redeploy" {
		printSummary(out, n, rep)
	}
	if werr == nil {
		fmt.Fprintf(out, "report: %s (and .json)\n", rep.Reports.Markdown)
	} else {
		fmt.Fprintf(out, "report not written: %v\n", werr)
	}
	if err != nil {
		msg := "failed: " + rep.Failure.Check
		if rep.Failure.Service != "" {
			msg += " (" + rep.Failure.Service + ")"
		}
		return &ExitError{Code: 1, Err: errors.New(msg)}
	}
	return werr
}

func remediationFor(f *Failure) []string {
	tips := []string{"run `" + f.NextCommand + "`"}
	switch {
	case strings.HasPrefix(f.Check, "preflight port"):
		tips = append(tips, "pick free ports with --orchestrator-addr/--model-policy-addr or AGENTOS_*_ADDR in .agentos.env")
	case f.Service != "":
		tips = append(tips, "`agentos up` restarts a dead service; `agentos redeploy` restarts all of them and keeps data")
	}
	return tips
}

// printSummary is the post-success summary of up and redeploy.
func printSummary(out io.Writer, n *Node, rep *Report) {
	c := n.Cfg
	fmt.Fprintf(out, "AgentOS node %s is up (%s mode)\n\n", c.StackID, c.Mode)
	fmt.Fprintln(out, "  Product API:     "+c.OrchestratorURL+"  (runs, agents, SSE events)")
	fmt.Fprintln(out, "  Admin API:       "+c.OrchestratorURL+"/v1/admin/tenants")
	fmt.Fprintln(out, "  Model policy:    "+c.ModelPolicyURL+"  (models, policy checks, OpenAI-compatible /v1/chat/completions)")
	if s, ok := n.service("federation"); ok {
		fmt.Fprintln(out, "  Federation:      "+s.URL)
	}
	var metrics []string
	for _, s := range n.Services {
		metrics = append(metrics, s.URL+"/metrics")
	}
	fmt.Fprintln(out, "  Observability:   "+strings.Join(metrics, " "))
	fmt.Fprintf(out, "  Logs:            %s/<service>.log   (agentos logs <service> -f)\n", n.logDir())
	fmt.Fprintf(out, "  Credentials:     %s (0600)\n", c.CredentialsFile())
	fmt.Fprintln(out, "                   rotate: agentos tokens issue --tenant <t> --principal <p>; agentos tokens revoke --tenant <t> <token_id>")
	if c.DevMode() {
		fmt.Fprintf(out, "  Default tenant:  %s (X-Tenant-Id: %s works in %s mode)\n", c.DefaultTenant, c.DefaultTenant, c.Mode)
	} else {
		fmt.Fprintln(out, "  Default tenant:  none in prod: agentos bootstrap --tenant-id tnt_<name>")
	}
	fmt.Fprintln(out, "  New tenant:      agentos tenants create tnt_acme --name Acme")
	fmt.Fprintf(out, "  Default quotas:  %v runs/s create, %v concurrent runs, %v model calls/s per tenant\n",
		c.QuotaRunCreateQPS, c.QuotaConcurrentRuns, c.QuotaInvokeQPS)
	fmt.Fprintln(out, "                   override: agentos tenants update <t> --max-concurrent-runs N, or AGENTOS_QUOTA_* in .agentos.env")
	if len(rep.Health)+len(rep.Smoke) > 0 {
		pass, total := 0, 0
		var ms int64
		for _, cr := range append(append([]CheckResult{}, rep.Health...), rep.Smoke...) {
			total++
			ms += cr.DurationMs
			if cr.OK {
				pass++
			}
		}
		fmt.Fprintf(out, "  Checks:          %d/%d passed (health %d, smoke %d) in %s\n", pass, total, len(rep.Health), len(rep.Smoke),
			fmtDuration(time.Duration(ms)*time.Millisecond))
	}
	fmt.Fprintf(out, "\n  Try: agentos run %s \"hello\"\n\n", sampleAgentID)
}

// writeEnvFileIfMissing generates the editable .agentos.env with the
// effective settings, so that later commands find the same node.
func writeEnvFileIfMissing(path string, c config.Config) error {
	if path == "" || fileExists(path) {
		return nil
	}
	var b strings.Builder
	b.WriteString("# Generated by `agentos up`. Edit freely; flags and environment variables override it.\n")
	b.WriteString("# Precedence: flags > environment > this file > built-in defaults. See docs/operations.md.\n")
	kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, v) }
	kv("AGENTOS_MODE", c.Mode)
	kv("AGENTOS_ORCHESTRATOR_ADDR", c.OrchestratorAddr)
	kv("AGENTOS_MODEL_POLICY_ADDR", c.ModelPolicyAddr)
	kv("AGENTOS_FEDERATION_ADDR", c.FederationAddr)
	kv("AGENTOS_FEDERATION_PEER_ADDR", c.FederationPeerAddr)
	kv("AGENTOS_STACK_ID", c.StackID)
	kv("AGENTOS_REGION", c.Region)
	b.WriteString("# AGENTOS_HOME=./.agentos\n")
	b.WriteString("# AGENTOS_DEFAULT_TENANT=tnt_demo\n")
	b.WriteString("# AGENTOS_QUOTA_RUN_CREATE_QPS=10\n# AGENTOS_QUOTA_CONCURRENT_RUNS=25\n# AGENTOS_QUOTA_INVOKE_QPS=20\n")
	b.WriteString("# AGENTOS_AUDIT_SINK=file:.agentos/data/audit/audit.jsonl\n")
	b.WriteString("# AGENTOS_MODEL_POLICY_CONFIG=models.yaml\n# AGENTOS_EXECUTORS=8\n# AGENTOS_LOG_LEVEL=info\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
