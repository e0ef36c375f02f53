// Package testnode starts AgentOS services as real processes on loopback
// for end-to-end and contract tests: it builds the agentos binary once per
// test process and runs `agentos serve <service>` with a private home and
// free ports.
package testnode

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/agentos once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "agentos-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "agentos")
		touchSources(root)
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/agentos")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// touchSources stats every Go source file and the module files. The go
// command caches test results by the files a test opens or stats: without
// this, a test that runs the binary built here would be "(cached)" after a
// change to the code under test, which it does not import.
func touchSources(root string) {
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".sql") || d.Name() == "go.mod" || d.Name() == "go.sum") {
			_, _ = os.Stat(path)
		}
		return nil
	})
}

// FreeAddr returns a 127.0.0.1 address whose port is free now, for a
// process the test starts to listen on. The port is chosen below the
// kernel's ephemeral range: a port from listening on :0 comes from that
// range, and between closing it and the service binding it any outgoing
// connection on the machine may take it as its local port (it happened in
// CI). Below the range only listeners take ports. A port is handed out
// once per test process.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo := ephemeralLow()
	for range 500 {
		if lo <= minTestPort+1000 {
			break
		}
		port := minTestPort + rand.IntN(lo-minTestPort)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		_ = ln.Close()
		return addr
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// minTestPort is the lowest port FreeAddr hands out (above common services).
const minTestPort = 20000

var handedOut sync.Map // port → true

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// net.ipv4.ip_local_port_range; 32768 when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 0 {
		return 32768
	}
	return lo
}

// Node is one AgentOS node made of service processes.
type Node struct {
	t       testing.TB
	Bin     string
	Home    string
	Env     []string
	Addrs   map[string]string // service → listen address
	mu      sync.Mutex
	procs   map[string]*exec.Cmd
	waiters map[string]chan struct{}
}

// Options configure a node.
type Options struct {
	// Services to start, in order (default orchestrator, model-policy).
	Services []string
	// Mode is demo (default), dev or prod.
	Mode string
	// Env adds environment variables (KEY=VALUE).
	Env []string
}

// Start starts a node and stops it when the test ends.
func Start(t testing.TB, o Options) *Node {
	t.Helper()
	if len(o.Services) == 0 {
		o.Services = []string{"orchestrator", "model-policy"}
	}
	if o.Mode == "" {
		o.Mode = "demo"
	}
	n := &Node{t: t, Bin: Binary(t), Home: t.TempDir(), procs: map[string]*exec.Cmd{}, waiters: map[string]chan struct{}{},
		Addrs: map[string]string{"orchestrator": FreeAddr(t), "model-policy": FreeAddr(t), "federation": FreeAddr(t), "federation-peer": FreeAddr(t),
			"gateway": FreeAddr(t)}}
	n.Env = append([]string{
		"AGENTOS_HOME=" + n.Home,
		"AGENTOS_MODE=" + o.Mode,
		"AGENTOS_ORCHESTRATOR_ADDR=" + n.Addrs["orchestrator"],
		"AGENTOS_MODEL_POLICY_ADDR=" + n.Addrs["model-policy"],
		"AGENTOS_FEDERATION_ADDR=" + n.Addrs["federation"],
		"AGENTOS_FEDERATION_PEER_ADDR=" + n.Addrs["federation-peer"],
		"AGENTOS_GATEWAY_ADDR=" + n.Addrs["gateway"],
		"AGENTOS_LOG_LEVEL=warn",
	}, o.Env...)
	t.Cleanup(n.StopAll)
	for _, s := range o.Services {
		n.StartService(s)
	}
	return n
}

// URL returns a service's base URL.
func (n *Node) URL(service string) string { return "http://" + n.Addrs[service] }

func healthPath(service string) string {
	if service == "federation" {
		return "/v1/federation/health"
	}
	if service == "gateway" {
		return "/healthz" // its /v1/health is the orchestrator's
	}
	return "/v1/health"
}

// StartService starts one service and waits until it is healthy.
func (n *Node) StartService(service string) {
	n.t.Helper()
	logPath := filepath.Join(n.Home, service+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(n.Bin, "serve", service)
	cmd.Dir = n.Home
	cmd.Env = append(os.Environ(), n.Env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	n.mu.Lock()
	n.procs[service], n.waiters[service] = cmd, done
	n.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			n.t.Fatalf("%s exited during startup:\n%s", service, n.Log(service))
		default:
		}
		resp, err := http.Get(n.URL(service) + healthPath(service))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	n.t.Fatalf("%s not healthy after 60s:\n%s", service, n.Log(service))
}

// PID returns the process id of a running service (0 if not started).
func (n *Node) PID(service string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.procs[service]; c != nil && c.Process != nil {
		return c.Process.Pid
	}
	return 0
}

// Log returns a service's log so far.
func (n *Node) Log(service string) string {
	b, _ := os.ReadFile(filepath.Join(n.Home, service+".log"))
	return string(b)
}

// Kill sends SIGKILL to a service (a crash) and waits for it to die.
func (n *Node) Kill(service string) { n.signal(service, syscall.SIGKILL) }

// Stop sends SIGTERM (a clean shutdown) and waits for the exit.
func (n *Node) Stop(service string) { n.signal(service, syscall.SIGTERM) }

func (n *Node) signal(service string, sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.procs[service], n.waiters[service]
	delete(n.procs, service)
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// StopAll stops every service.
func (n *Node) StopAll() {
	n.mu.Lock()
	var names []string
	for s := range n.procs {
		names = append(names, s)
	}
	n.mu.Unlock()
	for _, s := range names {
		n.Stop(s)
	}
}

// Credentials is the demo/dev credentials file.
type Credentials struct {
	TenantID      string `json:"tenant_id"`
	PlatformAdmin struct {
		PrincipalID string `json:"principal_id"`
		Token       string `json:"token"`
	} `json:"platform_admin"`
	TenantAdmin struct {
		PrincipalID string `json:"principal_id"`
		Token       string `json:"token"`
	} `json:"tenant_admin"`
}

// Credentials reads $AGENTOS_HOME/credentials.json.
func (n *Node) Credentials() Credentials {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Home, "credentials.json"))
	if err != nil {
		n.t.Fatal(err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		n.t.Fatal(err)
	}
	return c
}

// Run executes the agentos CLI with the node's environment.
func (n *Node) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.Bin, args...)
	cmd.Dir = n.Home
	cmd.Env = append(os.Environ(), n.Env...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
