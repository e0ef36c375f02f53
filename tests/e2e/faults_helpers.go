package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/tests/testnode"
)

// pgServer is a PostgreSQL cluster of the test's own
// (scripts/pg-test-cluster.sh), whose server the test stops and starts
// again on the same port: the shared test server cannot be restarted.
type pgServer struct {
	t      testing.TB
	script string
	dir    string
	URL    string
}

// startPGServer starts a private cluster; like the other PostgreSQL tests
// it runs only where AGENTOS_TEST_POSTGRES_URL says PostgreSQL is there
// (CI), and skips otherwise.
func startPGServer(t testing.TB) *pgServer {
	t.Helper()
	pgtest.BaseURL(t)
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "pg-test-cluster.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its parents are private, and the server may run as
	// another user (postgres) when the tests run as root.
	dir, err := os.MkdirTemp("", "agentos-faults-pg-")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", script, "start", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("pg-test-cluster.sh start: %v\n%s", err, stderr.String())
	}
	p := &pgServer{t: t, script: script, dir: dir}
	t.Cleanup(func() { _ = exec.Command("bash", script, "stop", dir).Run() })
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "export "+pgtest.EnvVar+"="); ok {
			p.URL = strings.Trim(v, "'")
		}
	}
	if p.URL == "" {
		t.Fatalf("pg-test-cluster.sh start printed no URL:\n%s", out)
	}
	return p
}

func (p *pgServer) run(action string) {
	p.t.Helper()
	if out, err := exec.Command("bash", p.script, action, p.dir).CombinedOutput(); err != nil {
		p.t.Fatalf("pg-test-cluster.sh %s: %v\n%s", action, err, out)
	}
}

// Halt stops the server (pg_ctl stop -m fast: sessions are ended).
func (p *pgServer) Halt() { p.run("halt") }

// Resume starts it again with the same data and port.
func (p *pgServer) Resume() { p.run("resume") }

// natsServer is `agentos serve nats` as a process of its own (a single
// server, which fsyncs every message), stopped and started again on the
// same port and store.
type natsServer struct {
	t             testing.TB
	bin, dir, log string
	addr, monitor string
	mu            sync.Mutex
	cmd           *exec.Cmd
	done          chan struct{}
}

func startNATSServer(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{t: t, bin: testnode.Binary(t), dir: t.TempDir(), addr: testnode.FreeAddr(t), monitor: testnode.FreeAddr(t)}
	n.log = filepath.Join(n.dir, "nats.log")
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// URL is the server's client URL.
func (n *natsServer) URL() string { return "nats://" + n.addr }

// Start starts the server and waits until its JetStream is ready.
func (n *natsServer) Start() {
	n.t.Helper()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command(n.bin, "serve", "nats", "--addr", n.addr, "--monitor-addr", n.monitor,
		"--store-dir", filepath.Join(n.dir, "store"))
	// Its own home and nothing else: no setting of the test's environment.
	cmd.Env = []string{"AGENTOS_HOME=" + n.dir}
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+n.monitor+"/healthz?js-enabled-only=true", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(n.log)
	n.t.Fatalf("nats server not ready after 60s:\n%s", b)
}

// Stop stops the server (SIGTERM) and waits for it to exit.
func (n *natsServer) Stop() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// readyz is one /readyz answer: its status and the failing dependencies
// the error envelope names (details.failing on the orchestrator,
// details.dependency on model-policy).
func readyz(base string) (int, []string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/readyz", nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Error *struct {
			Code    string         `json:"code"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode == 200 {
		return 200, nil, nil
	}
	if body.Error == nil || body.Error.Code != "dependency_unavailable" {
		return resp.StatusCode, nil, fmt.Errorf("readyz %d without a dependency_unavailable error: %+v", resp.StatusCode, body.Error)
	}
	var failing []string
	if f, ok := body.Error.Details["failing"].([]any); ok {
		for _, v := range f {
			failing = append(failing, fmt.Sprint(v))
		}
	}
	if d, ok := body.Error.Details["dependency"].(string); ok {
		failing = append(failing, d)
	}
	return resp.StatusCode, failing, nil
}

// waitReadyz polls base's /readyz until it answers want (200, or 503
// naming dep) and returns how long that took.
func waitReadyz(t *testing.T, base string, want int, dep string) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < 90*time.Second {
		code, failing, err := readyz(base)
		if err == nil && code == want && (want == 200 || contains(failing, dep)) {
			return time.Since(start)
		}
		last = fmt.Sprintf("%d %v %v", code, failing, err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s/readyz never answered %d naming %q; last: %s", base, want, dep, last)
	return 0
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
