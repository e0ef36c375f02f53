package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/supervisor"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/internal/config"
)

// upOptions are the flags of up and redeploy.
type upOptions struct {
	profile      string
	bootTimeout  time.Duration
	skipValidate bool
	// nodeBPortOffset is added to node A's ports for node B (federated
	// profile); 0 means AGENTOS_NODE_B_PORT_OFFSET, the last up's, or 10.
	nodeBPortOffset int
	// replicas is the cluster profile's number of orchestrator and
	// model-policy replicas; 0 means the last up's, else DefaultReplicas.
	replicas int
	// natsServers is the cluster profile's number of NATS servers (1 or
	// 3); 0 means the last up's, else DefaultNATSServers.
	natsServers int
}

// bindUpFlags binds the flags of up and redeploy; profileDefault is the
// --profile default ("" picks federated when node B exists).
func bindUpFlags(cmd *cobra.Command, o *upOptions, profileDefault, profileUsage string) {
	cmd.Flags().StringVar(&o.profile, "profile", profileDefault, profileUsage)
	cmd.Flags().DurationVar(&o.bootTimeout, "boot-timeout", 60*time.Second, "how long to wait for each service to become healthy")
	cmd.Flags().BoolVar(&o.skipValidate, "skip-validate", false, "skip the smoke tests of the validate phase")
	cmd.Flags().IntVar(&o.nodeBPortOffset, "node-b-port-offset", 0,
		"federated profile: node B's ports are node A's plus this (env "+nodeBOffsetEnv+"; default: the last up's, else 10)")
	cmd.Flags().IntVar(&o.replicas, "replicas", 0,
		"cluster profile: orchestrator and model-policy replicas each (default: the last up's, else "+strconv.Itoa(DefaultReplicas)+")")
	cmd.Flags().IntVar(&o.natsServers, "nats-servers", 0,
		"cluster profile: NATS servers for the bus, 1 or 3 (a cluster; streams keep 3 replicas) (default: the last up's, else 1; none with AGENTOS_BUS_URL)")
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
dead ones (stale pid files) are restarted.

--profile federated is a two-node recipe on this machine: node A as above
and node B (stack_id stk_local_node_b, home $AGENTOS_HOME/node-b) on node A's
ports plus --node-b-port-offset (10), both seeded, with node certificates
from one federation CA and each listed as the other's peer (phase certs);
validate then also forwards a run from A to B and streams it back.

--profile cluster runs the control plane scaled out on this machine:
PostgreSQL (initdb under $AGENTOS_HOME/postgres, on the gateway's port + 5;
or AGENTOS_POSTGRES_URL's server), the bus: --nats-servers 1 or 3 NATS
servers with JetStream (` + "`agentos serve nats`" + `, stores under
$AGENTOS_HOME/nats, client port the gateway's + 6; a 3-server cluster's
streams keep 3 replicas; or AGENTOS_BUS_URL's NATS, never started or
stopped), --replicas N (2) model-policy and orchestrator replicas on them (replica k on the first's port + (k-1)*100),
federation once, and the gateway in front (AGENTOS_GATEWAY_ADDR, its
upstreams file written from the replicas). validate then also streams a run
created on one replica from another and cancels one through the gateway.`,
		Args: cobra.NoArgs,
	}
	cf := bindConfigFlags(cmd)
	bindUpFlags(cmd, &o, "", "local, federated (two nodes on this machine), or cluster (replicas on PostgreSQL behind the gateway); default: cluster when the last up made one, else local")
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
	if action == "up" {
		o.profile = defaultProfile(o.profile, n.Cfg.Home)
	}
	if o.profile, err = resolveProfile(o.profile, n.Cfg.Home); err != nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("preflight: %w", err)}
	}
	if o.profile == profileCluster {
		if err := setupCluster(n, &o); err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("preflight: %w", err)}
		}
	}
	if o.profile == profileFederated {
		if o.nodeBPortOffset, err = portOffset(o.nodeBPortOffset, n.Cfg); err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("preflight: %w", err)}
		}
		cfgB, err := nodeBConfig(n.Cfg, o.nodeBPortOffset)
		if err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("preflight: node B config invalid: %w", err)}
		}
		if err := attachNodeB(n, cfgB); err != nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("preflight: node B: %w", err)}
		}
	}
	p := NewProgress(out, isTerminal(os.Stdout) && !n.Cfg.NoSpinner)
	rep := newReport(action, n, o.profile)
	fmt.Fprintf(out, "agentos %s: %s node %s (mode %s) in %s\n", action, o.profile, n.Cfg.StackID, n.Cfg.Mode, n.Cfg.Home)
	if n.B != nil {
		fmt.Fprintf(out, "  and node %s in %s (ports +%d)\n", n.B.Cfg.StackID, n.B.Cfg.Home, o.nodeBPortOffset)
	}
	if isCluster(n) {
		fmt.Fprintf(out, "  %d orchestrator and %d model-policy replicas on PostgreSQL, behind the gateway %s\n",
			o.replicas, o.replicas, n.Cfg.GatewayAddr)
	}
	err = up(cmd.Context(), n, p, rep, o, action == "redeploy", cf.envFile)
	return finishReport(out, n, rep, p, err)
}

// up runs the phases; the caller writes the report.
func up(ctx context.Context, n *supervisor.Node, p *Progress, rep *Report, o upOptions, restartAll bool, envFile string) error {
	p.Phase("preflight")
	if err := preflight(ctx, n, p, o, envFile); err != nil {
		p.End(err, "")
		return err
	}
	if n.B != nil {
		p.Phase("certs")
		fs, err := setupFederation(n)
		if err != nil {
			err = &checkError{check: "certs federation identity",
				next: "ls -l " + federation.FilesIn(n.Cfg.Home).Dir + " " + federation.FilesIn(n.B.Cfg.Home).Dir +
					" (remove node B's federation/ to have it reissued)", err: err}
			p.End(err, "")
			return err
		}
		rep.Federation.CADir = fs.CADir
		rep.Federation.Peers = fs.Peers
		p.End(nil, fmt.Sprintf("one CA (%s); certificates and signing keys for %s and %s; each the other's peer",
			fs.CADir, n.Cfg.StackID, n.B.Cfg.StackID))
	}
	p.Phase("boot")
	if err := boot(ctx, n, p, rep, o, restartAll && !isCluster(n)); err != nil {
		p.End(err, "")
		return err
	}
	if isCluster(n) {
		if err := bootCluster(ctx, n, p, rep, o, restartAll); err != nil {
			p.End(err, "")
			return err
		}
	}
	p.Phase("seed")
	for _, x := range n.All() {
		r := rep
		if x != n {
			r = newReport(rep.Action, x, rep.Profile) // node B's seed details stay out of the report
		}
		if err := seed(ctx, x, p, r); err != nil {
			p.End(err, "")
			return err
		}
	}
	p.Phase("wire")
	for _, x := range n.All() {
		if err := wire(ctx, x, p); err != nil {
			p.End(err, "")
			return err
		}
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
func preflight(ctx context.Context, n *supervisor.Node, p *Progress, o upOptions, envFile string) error {
	switch o.profile {
	case profileLocal:
	case profileCluster:
		if err := preflightCluster(n, o); err != nil {
			return err
		}
	case profileFederated:
		if err := preflightFederated(n); err != nil {
			return err
		}
	default:
		return &checkError{check: "preflight profile", next: "agentos up --profile local",
			err: fmt.Errorf("profile %q is not supported by this build (want local, federated or cluster)", o.profile)}
	}
	if n.Cfg.Mode == config.ModeProd {
		if v := n.Cfg.BootstrapAdminToken; v != "" && len(v) < 32 {
			return &checkError{check: "preflight config", next: "export AGENTOS_BOOTSTRAP_ADMIN_TOKEN=$(openssl rand -hex 32)",
				err: errors.New("the bootstrap admin token (AGENTOS_BOOTSTRAP_ADMIN_TOKEN or the content of its _FILE) must be at least 32 characters in prod")}
		}
		if c, err := loadCredentials(n.Cfg.CredentialsFile()); err == nil && c.PlatformAdmin.TokenID != "bootstrap" && c.TenantID == n.Cfg.DefaultTenant && c.TenantAdmin.PrincipalID == "usr_tnt_demo_admin" {
			return &checkError{check: "preflight config", next: "agentos nuke --hard --yes (or use another --home)",
				err: fmt.Errorf("%s holds demo/dev secrets; prod refuses them", n.Cfg.CredentialsFile())}
		}
	}
	p.Status("config valid")
	for _, x := range n.All() {
		for _, d := range []string{x.Cfg.Home, x.Cfg.DataDir, x.RunDir(), x.LogDir(), x.ReportDir()} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return &checkError{check: "preflight home writable", node: x, next: "agentos up --home <writable dir>", err: err}
			}
		}
		probe := filepath.Join(x.Cfg.Home, ".write-probe")
		if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
			return &checkError{check: "preflight home writable", node: x, next: "agentos up --home <writable dir>", err: err}
		}
		_ = os.Remove(probe)
	}
	p.Status("home writable")
	if n.Cfg.Mode == config.ModeProd {
		// The services of a node sign their calls to each other with the
		// node key. Prod generates no secrets on its own; `up` is the
		// operator provisioning the node, so it creates the key here once
		// (0600) unless one is provided with AGENTOS_NODE_KEY_FILE.
		path := n.Cfg.NodeKeyPath()
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if _, err := auth.LoadOrCreateNodeKey(path, true); err != nil {
				return &checkError{check: "preflight node key", next: "set AGENTOS_NODE_KEY_FILE to a provisioned Ed25519 key", err: err}
			}
			p.Status("node key created at " + path)
		}
	}
	if err := writeEnvFileIfMissing(envFile, n.Cfg); err != nil {
		return &checkError{check: "preflight env file", next: "agentos up --env-file <path>", err: err}
	}
	if n.B != nil {
		if err := writeNodeEnv(nodeBEnvFile(n.Cfg.Home), n.B.Cfg, o.nodeBPortOffset); err != nil {
			return &checkError{check: "preflight node b settings", node: n.B, next: "agentos up --home <writable dir>", err: err}
		}
	}
	return preflightPorts(ctx, n, p)
}

// preflightFederated checks what the federated profile needs.
func preflightFederated(n *supervisor.Node) error {
	if _, ok := n.Service("federation"); !ok {
		return &checkError{check: "preflight profile", next: "agentos up --profile local",
			err: errors.New("federation is not available in this build: --profile federated needs `agentos serve federation`")}
	}
	if n.Cfg.Mode == config.ModeProd {
		return &checkError{check: "preflight profile", next: "agentos up --profile federated --mode dev",
			err: errors.New("the federated profile is a two-node recipe for one machine (demo/dev); in prod provision each node's certificates with `agentos certs` and its peers with `agentos peers add`")}
	}
	if set := federationFileOverrides(n.Cfg); len(set) > 0 {
		return &checkError{check: "preflight profile", next: "unset " + strings.Join(set, " "),
			err: fmt.Errorf("the federated profile keeps both nodes' identities in the default layout; %s would point node A elsewhere", strings.Join(set, ", "))}
	}
	return nil
}

// preflightPorts checks that every address of every node is free or held
// by one of our services.
func preflightPorts(ctx context.Context, n *supervisor.Node, p *Progress) error {
	type port struct {
		x    *supervisor.Node
		svc  string
		addr string
		flag string
		ours bool
	}
	var ports []port
	for _, x := range n.All() {
		for _, s := range x.Services {
			if s.External {
				continue
			}
			st := x.Inspect(ctx, s)
			ours := st.Healthy || (st.Alive && x.OwnsPID(st.PID))
			ports = append(ports, port{x, s.Name, s.Addr, portFlag(s), ours})
			if s.Name == "federation" {
				ports = append(ports, port{x, s.Name, x.Cfg.FederationPeerAddr, "--federation-peer-addr", ours})
			}
		}
	}
	for i, pt := range ports {
		if !pt.ours {
			told := false
			waiting := func() {
				if told {
					return
				}
				told = true
				p.Status(fmt.Sprintf("port %s: nothing listens, a closed connection still holds it (TIME_WAIT); waiting up to %s",
					pt.addr, supervisor.PortWait))
			}
			if err := supervisor.WaitPortFree(ctx, pt.addr, supervisor.PortWait, waiting); err != nil {
				next := fmt.Sprintf("lsof -i :%s  (or: agentos up %s 127.0.0.1:<free port>)", portOf(pt.addr), pt.flag)
				if pt.x.Name == "b" {
					next = fmt.Sprintf("lsof -i :%s  (or: agentos up --profile federated --node-b-port-offset <N>)", portOf(pt.addr))
				}
				what := "is in use by another process"
				if !supervisor.Listening(pt.addr) {
					what = "is held although nothing listens on it (see README, Troubleshooting: ports held with nothing listening)"
				}
				return &checkError{check: "preflight port " + pt.addr, service: pt.svc, node: pt.x, next: next,
					err: fmt.Errorf("port %s for %s %s: %v", pt.addr, pt.x.Label(pt.svc), what, err)}
			}
		}
		p.Milestone("ports available", i+1, len(ports))
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
func boot(ctx context.Context, a *supervisor.Node, p *Progress, rep *Report, o upOptions, restartAll bool) error {
	nodes := a.All()
	total := 0
	for _, n := range nodes {
		total += len(n.Services)
	}
	if restartAll {
		for j := len(nodes) - 1; j >= 0; j-- {
			n := nodes[j]
			for i := len(n.Services) - 1; i >= 0; i-- {
				s := n.Services[i]
				p.Status("stopping " + n.Label(s.Name))
				if _, err := n.Stop(s.Name, 15*time.Second); err != nil {
					return &checkError{check: "stop " + n.Label(s.Name), service: s.Name, node: n, next: "agentos status", err: err}
				}
			}
		}
	}
	healthy := 0
	for _, n := range nodes {
		if err := bootNode(ctx, n, p, rep, o, restartAll, &healthy, total); err != nil {
			return err
		}
	}
	return nil
}

// bootNode starts one node's services; healthy counts across nodes.
func bootNode(ctx context.Context, n *supervisor.Node, p *Progress, rep *Report, o upOptions, restartAll bool, healthy *int, total int) error {
	for _, s := range n.Services {
		sr, err := bootService(ctx, n, p, s, o, restartAll)
		if err != nil {
			return err
		}
		if err := afterHealthy(ctx, n, s, o.bootTimeout); err != nil {
			return &checkError{check: "boot " + s.Name, service: s.Name, node: n, next: "agentos logs " + s.Name + " --tail 100", err: err}
		}
		if st := n.Inspect(ctx, s); st.Healthy {
			sr.Healthy, sr.Version = true, st.Version
			rep.Versions.Services[s.Name] = st.Version
		}
		rep.Services = append(rep.Services, sr)
		*healthy++
		p.Milestone("services healthy", *healthy, total)
		p.Info("%-15s %-6s pid %-7d %s", n.Label(s.Name), "up", sr.PID, sr.Action)
	}
	return nil
}

// bootService leaves a healthy service running (an external one is only
// checked) and starts or restarts any other, waiting until it is healthy.
func bootService(ctx context.Context, n *supervisor.Node, p *Progress, s supervisor.Service, o upOptions, restartAll bool) (ServiceReport, error) {
	st := n.Inspect(ctx, s)
	sr := ServiceReport{Name: s.Name, Node: n.Name, PID: st.PID, Address: s.Addr, URL: s.DisplayURL(), LogFile: n.LogFile(s.Name)}
	switch {
	case s.External && !st.Healthy:
		next := "check AGENTOS_POSTGRES_URL"
		if s.KindOf() == supervisor.KindNATS {
			next = "check AGENTOS_BUS_URL"
		}
		return sr, &checkError{check: "boot " + s.Name, service: s.Name, node: n, next: next,
			err: fmt.Errorf("external %s at %s: %s", s.Name, s.DisplayURL(), st.Err)}
	case s.External:
		sr.Action, sr.PID = "external", 0
	case st.Healthy && st.Alive:
		sr.Action = "left running"
	case st.Healthy:
		sr.Action = "left running (not started by agentos up: no live pid file)"
		sr.PID = 0
	default:
		return startService(ctx, n, p, s, st, sr, o, restartAll)
	}
	return sr, nil
}

// startService starts a service that is not healthy (stopping its
// process first if it is alive) and waits until it is.
func startService(ctx context.Context, n *supervisor.Node, p *Progress, s supervisor.Service, st supervisor.ProcState, sr ServiceReport, o upOptions, restartAll bool) (ServiceReport, error) {
	sr.Action = "started"
	if st.Alive {
		sr.Action = "restarted (was unhealthy)"
		if _, err := n.Stop(s.Name, 10*time.Second); err != nil {
			return sr, &checkError{check: "restart " + n.Label(s.Name), service: s.Name, node: n, next: "agentos status", err: err}
		}
	} else if st.PID != 0 {
		sr.Action = "restarted (stale pid file)"
	}
	if restartAll {
		sr.Action = "restarted"
	}
	p.Status(fmt.Sprintf("starting %s on %s", n.Label(s.Name), s.Addr))
	pid, err := n.Start(s)
	if err != nil {
		return sr, &checkError{check: "boot " + n.Label(s.Name), service: s.Name, node: n, next: "agentos logs " + s.Name + n.NodeFlag(), err: err}
	}
	sr.PID = pid
	if err := n.WaitHealthy(ctx, s, pid, o.bootTimeout); err != nil {
		return sr, &checkError{check: "boot " + n.Label(s.Name), service: s.Name, node: n, next: "agentos logs " + s.Name + n.NodeFlag() + " --tail 100", err: err}
	}
	return sr, nil
}

// seededAgents are the agents demo/dev seeding creates (CONTRACT §7).
var seededAgents = []string{sampleAgentID, "my-agent", "agt_demo"}

// seed checks what the orchestrator seeded at startup (demo/dev).
func seed(ctx context.Context, n *supervisor.Node, p *Progress, rep *Report) error {
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
			return &checkError{node: n, check: "seed credentials" + n.OnNode(), service: "orchestrator", next: "agentos logs orchestrator" + n.NodeFlag() + " --tail 100",
				err: fmt.Errorf("%s was not written by the orchestrator: %v", credsPath, err)}
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep.Credentials.Exists = true
	if st, err := os.Stat(credsPath); err == nil && st.Mode().Perm()&0o077 != 0 {
		return &checkError{node: n, check: "seed credentials" + n.OnNode(), service: "orchestrator", next: "chmod 600 " + credsPath,
			err: fmt.Errorf("%s has mode %v, want 0600", credsPath, st.Mode().Perm())}
	}
	admin := &apiclient.Client{BaseURL: n.Cfg.OrchestratorURL, Token: creds.PlatformAdmin.Token, HTTP: n.HTTP}
	tenantID := firstNonEmpty(creds.TenantID, n.Cfg.DefaultTenant)
	total := 1 + len(seededAgents)
	done := 0
	if _, err := admin.GetTenant(ctx, tenantID); err != nil {
		return &checkError{node: n, check: "seed tenant " + tenantID + n.OnNode(), service: "orchestrator", next: "agentos logs orchestrator" + n.NodeFlag() + " --tail 100", err: err}
	}
	done++
	p.Milestone("seeded objects present"+n.OnNode(), done, total)
	admin.TenantID = tenantID
	for _, a := range seededAgents {
		if _, err := admin.GetAgent(ctx, a); err != nil {
			return &checkError{node: n, check: "seed agent " + a + n.OnNode(), service: "orchestrator", next: "agentos logs orchestrator" + n.NodeFlag() + " --tail 100", err: err}
		}
		done++
		p.Milestone("seeded objects present"+n.OnNode(), done, total)
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
func wire(ctx context.Context, n *supervisor.Node, p *Progress) error {
	total := len(n.Services) + 1
	done := 0
	for _, s := range n.Services {
		if s.HealthPath == "" {
			total-- // PostgreSQL: boot checked it; the services' /readyz include it
			continue
		}
		if err := getReady(ctx, n.HTTP, s.URL); err != nil {
			svc := s.Name
			if dep := readyDependency(err); dep != "" {
				svc = dep
			}
			return &checkError{node: n, check: "wire " + n.Label(s.Name) + " /readyz", service: svc, next: "agentos logs " + svc + n.NodeFlag() + " --tail 100", err: err}
		}
		done++
		p.Milestone("links ready"+n.OnNode(), done, total)
	}
	c := &apiclient.Client{PolicyURL: n.Cfg.ModelPolicyURL, HTTP: n.HTTP}
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
		return &checkError{node: n, check: "wire model catalogue" + n.OnNode(), service: "model-policy", next: "agentos logs model-policy" + n.NodeFlag() + " --tail 100", err: err}
	}
	if len(models) == 0 {
		return &checkError{node: n, check: "wire model catalogue" + n.OnNode(), service: "model-policy", next: "check AGENTOS_MODEL_POLICY_CONFIG",
			err: errors.New("model-policy lists no models for the default tenant")}
	}
	done++
	p.Milestone("links ready"+n.OnNode(), done, total)
	return nil
}

// finishReport records the outcome, prints the failure or the summary,
// writes the report and converts err into an exit code.
func finishReport(out io.Writer, n *supervisor.Node, rep *Report, p *Progress, err error) error {
	if err != nil {
		var ce *checkError
		if !errors.As(err, &ce) {
			ce = &checkError{check: rep.Action, next: "agentos status", err: err}
		}
		f := &Failure{Check: ce.check, Message: ce.err.Error(), Service: ce.service, NextCommand: ce.next}
		at := n
		if ce.node != nil {
			at = ce.node
		}
		if at.Name != "" {
			f.Node, f.StackID = at.Name, at.Cfg.StackID
		}
		if ce.service != "" {
			if _, ok := at.Service(ce.service); ok {
				f.LogFile = at.LogFile(ce.service)
				f.LogLines = supervisor.TailLines(f.LogFile, 15)
			}
		}
		if f.NextCommand == "" {
			f.NextCommand = "agentos status"
		}
		rep.Failure = f
		rep.Remediation = append(rep.Remediation, remediationFor(f)...)
	}
	rep.finish(err == nil, p.Results())
	werr := rep.write(n.ReportDir())
	fmt.Fprintln(out)
	if rep.Failure != nil {
		f := rep.Failure
		fmt.Fprintf(out, "FAILED: %s", f.Check)
		switch {
		case f.Service != "" && f.Node != "":
			fmt.Fprintf(out, " [service: %s, node %s (%s)]", f.Service, f.Node, f.StackID)
		case f.Service != "":
			fmt.Fprintf(out, " [service: %s]", f.Service)
		case f.Node != "":
			fmt.Fprintf(out, " [node %s (%s)]", f.Node, f.StackID)
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
		switch {
		case rep.Failure.Service != "" && rep.Failure.Node != "":
			msg += " (" + rep.Failure.Service + " on node " + rep.Failure.Node + ")"
		case rep.Failure.Service != "":
			msg += " (" + rep.Failure.Service + ")"
		case rep.Failure.Node != "":
			msg += " (node " + rep.Failure.Node + ")"
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
	case f.Service != "" && f.Node != "":
		tips = append(tips, "`agentos up --profile federated` restarts a dead service of either node; `agentos redeploy` restarts all of them and keeps data")
	case f.Service != "":
		tips = append(tips, "`agentos up` restarts a dead service; `agentos redeploy` restarts all of them and keeps data")
	}
	return tips
}

// printSummary is the post-success summary of up and redeploy.
func printSummary(out io.Writer, n *supervisor.Node, rep *Report) {
	c := n.Cfg
	fmt.Fprintf(out, "AgentOS node %s is up (%s mode)\n\n", c.StackID, c.Mode)
	if isCluster(n) {
		printClusterAddresses(out, n)
	}
	fmt.Fprintln(out, "  Product API:     "+c.OrchestratorURL+"  (runs, agents, SSE events)")
	fmt.Fprintln(out, "  Admin API:       "+c.OrchestratorURL+"/v1/admin/tenants")
	fmt.Fprintln(out, "  Model policy:    "+c.ModelPolicyURL+"  (models, policy checks; OpenAI SDK base URL: "+c.ModelPolicyURL+"/openai/v1)")
	if s, ok := n.Service("federation"); ok {
		fmt.Fprintln(out, "  Federation:      "+s.URL)
	}
	var metrics []string
	for _, s := range n.Services {
		if s.HealthPath != "" { // PostgreSQL has no /metrics
			metrics = append(metrics, s.URL+"/metrics")
		}
	}
	fmt.Fprintln(out, "  Observability:   "+strings.Join(metrics, " "))
	fmt.Fprintf(out, "  Logs:            %s/<service>.log   (agentos logs <service> -f)\n", n.LogDir())
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
	var fed []CheckResult
	if rep.Federation != nil {
		fed = rep.Federation.Checks
	}
	if len(rep.Health)+len(rep.Smoke)+len(fed) > 0 {
		pass, total := 0, 0
		var ms int64
		for _, cr := range append(append(append([]CheckResult{}, rep.Health...), rep.Smoke...), fed...) {
			total++
			ms += cr.DurationMs
			if cr.OK {
				pass++
			}
		}
		detail := fmt.Sprintf("health %d, smoke %d", len(rep.Health), len(rep.Smoke))
		if rep.Federation != nil {
			detail += fmt.Sprintf(", federation %d", len(fed))
		}
		fmt.Fprintf(out, "  Checks:          %d/%d passed (%s) in %s\n", pass, total, detail, fmtDuration(time.Duration(ms)*time.Millisecond))
	}
	if b := n.B; b != nil {
		fmt.Fprintf(out, "\n  Node B:          %s (%s mode), home %s\n", b.Cfg.StackID, b.Cfg.Mode, b.Cfg.Home)
		fmt.Fprintln(out, "    Product API:   "+b.Cfg.OrchestratorURL)
		fmt.Fprintln(out, "    Model policy:  "+b.Cfg.ModelPolicyURL)
		fmt.Fprintln(out, "    Federation:    "+b.Cfg.FederationURL+"  (peer API "+peerURL(b.Cfg)+")")
		fmt.Fprintf(out, "    Logs:          agentos logs <service> --node b   (%s)\n", b.LogDir())
		fmt.Fprintf(out, "  Peers:           %s <-> %s over mTLS (%s, %s)\n", n.Cfg.StackID, b.Cfg.StackID, peerURL(n.Cfg), peerURL(b.Cfg))
		fmt.Fprintf(out, "  Forward a run:   curl -H 'X-Tenant-Id: %s' -H 'Content-Type: application/json' %s/v1/federation/runs:forward \\\n", c.DefaultTenant, c.FederationURL)
		fmt.Fprintf(out, "                     -d '{\"forward\":{\"target_selector\":{\"stack_id\":\"%s\"},\"run_request\":{\"agent_id\":\"%s\",\"input\":\"hello\"}}}'\n", b.Cfg.StackID, sampleAgentID)
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
	kv("AGENTOS_GATEWAY_ADDR", c.GatewayAddr)
	kv("AGENTOS_STACK_ID", c.StackID)
	kv("AGENTOS_REGION", c.Region)
	b.WriteString("# AGENTOS_HOME=./.agentos\n")
	b.WriteString("# AGENTOS_DEFAULT_TENANT=tnt_demo\n")
	b.WriteString("# AGENTOS_QUOTA_RUN_CREATE_QPS=10\n# AGENTOS_QUOTA_CONCURRENT_RUNS=25\n# AGENTOS_QUOTA_INVOKE_QPS=20\n")
	b.WriteString("# AGENTOS_AUDIT_SINK=file:.agentos/data/audit/audit.jsonl\n")
	b.WriteString("# AGENTOS_MODEL_POLICY_CONFIG=models.yaml\n# AGENTOS_EXECUTORS=8\n# AGENTOS_LOG_LEVEL=info\n")
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
