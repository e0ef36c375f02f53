// Package supervisor starts, stops and watches the processes of a local
// AgentOS node: one detached `agentos serve <name>` per service, its pid
// file under run/ and its log under logs/, health polled over HTTP.
package supervisor

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nexixai/agentos/federation"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/outbound"
)

// Service is one supervised process of a node.
type Service struct {
	// Name names the process (pid file, log, status): orchestrator,
	// model-policy, federation, or in the cluster profile also
	// orchestrator-2, ..., gateway and postgres.
	Name string
	// Kind is what runs: an `agentos serve` subcommand, or KindPostgres;
	// "" means Name.
	Kind       string
	Addr       string // listen address
	URL        string // base URL (a postgres:// URL for KindPostgres)
	HealthPath string // /v1/health, /v1/federation/health, /healthz; "" for postgres
	// Env is added to this process's environment after the node's (a
	// replica's own address, its model-policy URL).
	Env []string
	// External marks a process this node only checks, never starts or
	// stops (a PostgreSQL server given with AGENTOS_POSTGRES_URL, a NATS
	// server given with AGENTOS_BUS_URL).
	External bool
	// Args are added to `agentos serve <kind>`'s flags (a NATS server's
	// name, ports and routes).
	Args []string
	// Monitor is a NATS server's HTTP monitor address (its health).
	Monitor string
}

// KindOf is the service's Kind, defaulting to its Name.
func (s Service) KindOf() string {
	if s.Kind != "" {
		return s.Kind
	}
	return s.Name
}

// DisplayURL is the URL without its password, for people and reports.
func (s Service) DisplayURL() string { return redactURL(s.URL) }

// Node is the on-disk layout and services of one local node.
type Node struct {
	Cfg      config.Config
	EnvFile  string // passed to children as --env-file (absolute), may be ""
	Exe      string // agentos binary to spawn
	Services []Service
	HTTP     *http.Client
	// ExtraEnv is added to the children's environment (tests use it).
	ExtraEnv []string
	// Name is "a" or "b" in the federated profile (two nodes on one
	// machine) and "" for a single node.
	Name string
	// B is node B of the federated profile when this is node A, nil
	// otherwise.
	B *Node
}

// All returns the node followed by node B when there is one.
func (n *Node) All() []*Node {
	if n.B != nil {
		return []*Node{n, n.B}
	}
	return []*Node{n}
}

// Label names a service of this node for people: "orchestrator" for a
// single node, "b/orchestrator" in the federated profile.
func (n *Node) Label(service string) string {
	if n.Name == "" {
		return service
	}
	return n.Name + "/" + service
}

// OnNode is " on node b" in the federated profile, "" for a single node.
func (n *Node) OnNode() string {
	if n.Name == "" {
		return ""
	}
	return " on node " + n.Name
}

// NodeFlag is the `--node` argument that selects this node in commands
// such as logs ("" for node A).
func (n *Node) NodeFlag() string {
	if n.Name == "" || n.Name == "a" {
		return ""
	}
	return " --node " + n.Name
}

// Paths under AGENTOS_HOME.
func (n *Node) RunDir() string          { return filepath.Join(n.Cfg.Home, "run") }
func (n *Node) LogDir() string          { return filepath.Join(n.Cfg.Home, "logs") }
func (n *Node) ReportDir() string       { return filepath.Join(n.Cfg.Home, "reports") }
func (n *Node) PIDFile(s string) string { return filepath.Join(n.RunDir(), s+".pid") }
func (n *Node) LogFile(s string) string { return filepath.Join(n.LogDir(), s+".log") }

// New builds the node for cfg, with services in start order
// (model-policy first: the orchestrator depends on it); avail names the
// `agentos serve` subcommands this build has, and only those services are
// supervised. Home and data dir are made absolute so that children and
// reports agree whatever their cwd. envFile (may be "") is handed to the
// children as --env-file.
func New(cfg config.Config, envFile string, avail map[string]bool) (*Node, error) {
	var err error
	if cfg.Home, err = filepath.Abs(cfg.Home); err != nil {
		return nil, err
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return nil, err
	}
	if envFile != "" {
		if envFile, err = filepath.Abs(envFile); err != nil {
			return nil, err
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find agentos binary: %w", err)
	}
	n := &Node{Cfg: cfg, EnvFile: envFile, Exe: exe, HTTP: &http.Client{Timeout: 5 * time.Second, Transport: nodeTransport(cfg)}}
	all := []Service{
		{Name: "model-policy", Addr: cfg.ModelPolicyAddr, URL: cfg.ModelPolicyURL, HealthPath: "/v1/health"},
		{Name: "orchestrator", Addr: cfg.OrchestratorAddr, URL: cfg.OrchestratorURL, HealthPath: "/v1/health"},
		{Name: "federation", Addr: cfg.FederationAddr, URL: cfg.FederationURL, HealthPath: "/v1/federation/health"},
	}
	for _, s := range all {
		if avail[s.Name] {
			n.Services = append(n.Services, s)
		}
	}
	if len(n.Services) == 0 {
		return nil, errors.New("this build has no `agentos serve` services")
	}
	return n, nil
}

// Service returns the named service.
func (n *Node) Service(name string) (Service, bool) {
	for _, s := range n.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// ChildEnv is the environment of a spawned service: the parent's, with the
// resolved configuration on top so that child and parent agree.
func (n *Node) ChildEnv() []string {
	c := n.Cfg
	set := map[string]string{
		"AGENTOS_HOME":                  c.Home,
		"AGENTOS_DATA_DIR":              c.DataDir,
		"AGENTOS_MODE":                  c.Mode,
		"AGENTOS_ORCHESTRATOR_ADDR":     c.OrchestratorAddr,
		"AGENTOS_MODEL_POLICY_ADDR":     c.ModelPolicyAddr,
		"AGENTOS_FEDERATION_ADDR":       c.FederationAddr,
		"AGENTOS_FEDERATION_PEER_ADDR":  c.FederationPeerAddr,
		"AGENTOS_ORCHESTRATOR_URL":      c.OrchestratorURL,
		"AGENTOS_MODEL_POLICY_URL":      c.ModelPolicyURL,
		"AGENTOS_FEDERATION_URL":        c.FederationURL,
		"AGENTOS_STACK_ID":              c.StackID,
		"AGENTOS_REGION":                c.Region,
		"AGENTOS_ENVIRONMENT":           c.Environment,
		"AGENTOS_STORE_URL":             c.StoreURL,
		"AGENTOS_DEFAULT_TENANT":        c.DefaultTenant,
		"AGENTOS_QUOTA_RUN_CREATE_QPS":  strconv.FormatFloat(c.QuotaRunCreateQPS, 'f', -1, 64),
		"AGENTOS_QUOTA_CONCURRENT_RUNS": strconv.Itoa(c.QuotaConcurrentRuns),
		"AGENTOS_QUOTA_INVOKE_QPS":      strconv.FormatFloat(c.QuotaInvokeQPS, 'f', -1, 64),
		"AGENTOS_AUDIT_SINK":            c.AuditSink,
		"AGENTOS_EXECUTORS":             strconv.Itoa(c.Executors),
		"AGENTOS_IDEMPOTENCY_TTL_HOURS": strconv.Itoa(c.IdempotencyTTLHours),
		"AGENTOS_LOG_LEVEL":             c.LogLevel,
	}
	if c.BusURL != "" {
		set["AGENTOS_BUS_URL"] = c.BusURL
		set["AGENTOS_BUS_REPLICAS"] = strconv.Itoa(c.BusReplicas)
	}
	if c.BusNkeyFile != "" {
		set["AGENTOS_BUS_NKEY_FILE"] = c.BusNkeyFile
	}
	if c.HTTPFetchAllow != "" {
		set["AGENTOS_HTTP_FETCH_ALLOW"] = c.HTTPFetchAllow
	}
	if c.ModelPolicyConfig != "" {
		set["AGENTOS_MODEL_POLICY_CONFIG"] = c.ModelPolicyConfig
	}
	// Without a configured bootstrap token, the one `agentos bootstrap`
	// keeps in the secrets file (the children would not find it).
	if c.BootstrapAdminToken == "" {
		if p := n.BootstrapTokenFile(); fileExists(p) {
			set["AGENTOS_BOOTSTRAP_ADMIN_TOKEN_FILE"] = p
		}
	}
	env := make([]string, 0, len(os.Environ())+len(set))
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, over := set[k]; !over {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return append(env, n.ExtraEnv...)
}

// BootstrapTokenFile is where `agentos bootstrap` keeps the prod bootstrap
// admin token.
func (n *Node) BootstrapTokenFile() string {
	return filepath.Join(n.Cfg.Home, "secrets", "bootstrap-admin.token")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// ProcState is what the supervisor knows about one service.
type ProcState struct {
	Service
	PID     int       // from the pid file, 0 if none
	Alive   bool      // the pid is a running process
	Healthy bool      // health endpoint answered ok
	Version string    // from health
	Started time.Time // pid file modification time
	Err     string    // last health error
}

// ReadPID returns the pid recorded for a service (0 if none or unreadable).
func (n *Node) ReadPID(name string) (int, time.Time) {
	p := n.PIDFile(name)
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, time.Time{}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, time.Time{}
	}
	st, err := os.Stat(p)
	if err != nil {
		return pid, time.Time{}
	}
	return pid, st.ModTime()
}

// ProcessAlive reports whether pid is a live, non-zombie process.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie (exited, not yet reaped) still answers kill 0 on Linux.
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] == 'Z' {
			return false
		}
	}
	return true
}

// Inspect returns the state of one service: pid, liveness and health.
func (n *Node) Inspect(ctx context.Context, s Service) ProcState {
	st := ProcState{Service: s}
	st.PID, st.Started = n.ReadPID(s.Name)
	st.Alive = ProcessAlive(st.PID)
	v, err := procFor(s).health(ctx, n, s)
	if err != nil {
		st.Err = err.Error()
	} else {
		st.Healthy, st.Version = true, v
	}
	return st
}

// PortFree reports whether addr can be bound now.
func PortFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// PortWait bounds how long preflight waits for a port that nothing listens
// on to be released: a TCP TIME_WAIT lasts 60 s on Linux.
const PortWait = 65 * time.Second

// WaitPortFree returns nil once addr can be bound. A port can be held with
// nothing listening on it: by a closed outgoing connection in TIME_WAIT
// that had it as its ephemeral local port (Linux picks those from
// 32768-60999 by default, which includes 50081-50094), for up to a minute.
// That is waited out (calling waiting each round) for at most max; a port
// something listens on fails at once.
func WaitPortFree(ctx context.Context, addr string, max time.Duration, waiting func()) error {
	deadline := time.Now().Add(max)
	for {
		err := PortFree(addr)
		if err == nil || Listening(addr) || !time.Now().Before(deadline) {
			return err
		}
		waiting()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Listening reports whether something accepts connections on addr.
func Listening(addr string) bool {
	c, err := net.DialTimeout("tcp", DialHost(addr), time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Start spawns the service detached (own session): `agentos serve <kind>`,
// or the server binary of its kind, with output appended to
// logs/<name>.log and the pid written to run/<name>.pid.
func (n *Node) Start(s Service) (int, error) {
	if s.External {
		return 0, fmt.Errorf("%s is external (%s): not started by agentos", s.Name, s.DisplayURL())
	}
	for _, d := range []string{n.RunDir(), n.LogDir(), n.Cfg.DataDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	pr := procFor(s)
	if err := pr.prepare(n, s); err != nil {
		return 0, fmt.Errorf("prepare %s: %w", s.Name, err)
	}
	cmd, err := pr.command(n, s)
	if err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(n.LogFile(s.Name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- agentos up: starting %s at %s ----\n", s.Name, time.Now().UTC().Format(time.RFC3339))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Stdin = nil
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", s.Name, err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(n.PIDFile(s.Name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return 0, err
	}
	// Reap the child if it exits while we are still running, so it does
	// not linger as a zombie that looks alive.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// serveCommand is `agentos serve <kind>` with the node's environment plus
// the service's own.
func (n *Node) serveCommand(s Service) *exec.Cmd {
	args := []string{"serve", s.KindOf()}
	if n.EnvFile != "" {
		args = append(args, "--env-file", n.EnvFile)
	}
	cmd := exec.Command(n.Exe, append(args, s.Args...)...)
	cmd.Env = append(n.ChildEnv(), s.Env...)
	return cmd
}

// WaitHealthy polls the service's health until ok, the process dies, or
// the timeout.
func (n *Node) WaitHealthy(ctx context.Context, s Service, pid int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		hctx, hcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := procFor(s).health(hctx, n, s)
		hcancel()
		if err == nil {
			return nil
		}
		last = err
		if pid > 0 && !ProcessAlive(pid) {
			return fmt.Errorf("%s exited during startup (pid %d)", s.Name, pid)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy after %s: %v", s.Name, timeout, last)
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// Stop asks the named service's process to stop (SIGTERM to its process
// group; a PostgreSQL server gets SIGINT, its fast shutdown), waits up to
// grace, then SIGKILLs the group; it removes the pid file. Stopping a
// service that is not running is fine; an external one is left alone.
func (n *Node) Stop(name string, grace time.Duration) (bool, error) {
	s, ok := n.Service(name)
	if !ok {
		s = Service{Name: name}
	}
	if s.External {
		return false, nil
	}
	pid, _ := n.ReadPID(name)
	defer os.Remove(n.PIDFile(name))
	if !ProcessAlive(pid) {
		return false, nil
	}
	pr := procFor(s)
	if !ownsPID(pid, pr) {
		return false, fmt.Errorf("pid %d in %s is not a %s process; not signalling it", pid, n.PIDFile(name), s.KindOf())
	}
	pr.signal(pid)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !ProcessAlive(pid) {
			return true, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 40 && ProcessAlive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	return true, nil
}

// OwnsPID guards against a recycled pid: on Linux the process's command
// line must mention "serve". Elsewhere it is trusted.
func (n *Node) OwnsPID(pid int) bool { return ownsPID(pid, agentosProc{}) }

// ownsPID checks pid's command line with pr (trusted where /proc is not).
func ownsPID(pid int, pr proc) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return true
	}
	return pr.owns(string(b))
}

// TailLines returns the last n lines of a file (nil if unreadable).
func TailLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const maxRead = 1 << 20
	if st, err := f.Stat(); err == nil && st.Size() > maxRead {
		_, _ = f.Seek(st.Size()-maxRead, 0)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}

// DirSize sums the sizes of regular files under dir.
func DirSize(dir string) int64 {
	var total int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	return total
}

// nodeTransport is the CLI's HTTP transport to a node: it also trusts the
// node's federation CA, whose certificate the federation client API serves
// over TLS in prod.
func nodeTransport(cfg config.Config) http.RoundTripper {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(federation.FilesIn(cfg.Home).CA); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	t := outbound.Transport(outbound.FromConfig(cfg), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	t.Proxy = http.ProxyFromEnvironment // as http.DefaultTransport did (loopback is never proxied)
	return t
}

// DialHost replaces an unspecified listen host (0.0.0.0, ::, "") by
// 127.0.0.1 so that the address can be dialled.
func DialHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
