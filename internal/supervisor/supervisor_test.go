package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/tests/testnode"
)

// fakeEnv makes the test binary act as a service when the supervisor
// spawns it (`<test binary> serve <name> ...`): it answers health on the
// address the child environment gives it, so that start, health, stop and
// pid files are exercised on real processes.
const fakeEnv = "AGENTOS_TEST_SUPERVISOR_FAKE_SERVICE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" && len(os.Args) >= 3 && os.Args[1] == "serve" {
		os.Exit(runFakeService(os.Args[2]))
	}
	os.Exit(m.Run())
}

func runFakeService(name string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	envFile := ""
	for i, a := range os.Args {
		if a == "--env-file" && i+1 < len(os.Args) {
			envFile = os.Args[i+1]
		}
	}
	cfg, err := config.Load(os.LookupEnv, envFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	addr := map[string]string{"model-policy": cfg.ModelPolicyAddr, "orchestrator": cfg.OrchestratorAddr}[name]
	if addr == "" {
		fmt.Fprintln(os.Stderr, "unknown fake service", name)
		return 2
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ok", "service": name, "version": "0.0.0-fake"})
	})
	fmt.Printf("fake %s listening on %s\n", name, addr)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// newFakeNode is a node in a temp home whose services are this test binary.
func newFakeNode(t *testing.T) *Node {
	t.Helper()
	home := t.TempDir()
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, filepath.Join(home, "none.env"))
	require.NoError(t, err)
	cfg.Home = home
	cfg.OrchestratorAddr = testnode.FreeAddr(t)
	cfg.ModelPolicyAddr = testnode.FreeAddr(t)
	require.NoError(t, cfg.Finish())
	n, err := New(cfg, "", map[string]bool{"orchestrator": true, "model-policy": true})
	require.NoError(t, err)
	exe, err := os.Executable()
	require.NoError(t, err)
	n.Exe = exe
	n.ExtraEnv = []string{fakeEnv + "=1"}
	t.Cleanup(func() {
		for _, s := range n.Services {
			_, _ = n.Stop(s.Name, 5*time.Second)
		}
	})
	return n
}

func TestNewOrdersServicesAndSkipsMissingOnes(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	require.Equal(t, []string{"model-policy", "orchestrator"}, []string{n.Services[0].Name, n.Services[1].Name})
	_, ok := n.Service("federation")
	require.False(t, ok, "federation is not in this build's services")
	_, err := New(n.Cfg, "", map[string]bool{})
	require.ErrorContains(t, err, "no `agentos serve` services")
}

func TestStartStopAndStalePID(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	ctx := context.Background()
	s, _ := n.Service("model-policy")

	st := n.Inspect(ctx, s)
	require.False(t, st.Healthy)
	require.Zero(t, st.PID)

	pid, err := n.Start(s)
	require.NoError(t, err)
	require.NoError(t, n.WaitHealthy(ctx, s, pid, 30*time.Second))
	st = n.Inspect(ctx, s)
	require.True(t, st.Healthy)
	require.True(t, st.Alive)
	require.Equal(t, pid, st.PID)
	require.Equal(t, "0.0.0-fake", st.Version)
	require.True(t, Listening(s.Addr))
	require.Contains(t, strings.Join(TailLines(n.LogFile("model-policy"), 5), "\n"), "fake model-policy listening")

	was, err := n.Stop("model-policy", 5*time.Second)
	require.NoError(t, err)
	require.True(t, was)
	require.False(t, ProcessAlive(pid))
	require.NoFileExists(t, n.PIDFile("model-policy"))

	// A stale pid file (process gone): dead, unhealthy, not signalled.
	require.NoError(t, os.WriteFile(n.PIDFile("model-policy"), []byte(fmt.Sprint(pid)), 0o644))
	st = n.Inspect(ctx, s)
	require.Equal(t, pid, st.PID)
	require.False(t, st.Alive)
	require.False(t, st.Healthy)
	require.NotEmpty(t, st.Err)
	was, err = n.Stop("model-policy", time.Second)
	require.NoError(t, err)
	require.False(t, was)
	require.NoFileExists(t, n.PIDFile("model-policy"))
}

// A service that exits during startup fails WaitHealthy at once, naming
// it, instead of waiting out the timeout.
func TestWaitHealthyNoticesAnExit(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	s := Service{Name: "no-such-service", Addr: testnode.FreeAddr(t), HealthPath: "/v1/health"}
	s.URL = "http://" + s.Addr
	pid, err := n.Start(s) // the fake serves no such service: it exits with status 2
	require.NoError(t, err)
	err = n.WaitHealthy(context.Background(), s, pid, time.Minute)
	require.ErrorContains(t, err, fmt.Sprintf("no-such-service exited during startup (pid %d)", pid))
}

func TestChildEnvCarriesResolvedConfig(t *testing.T) {
	t.Parallel()
	n := newFakeNode(t)
	env := map[string]string{}
	for _, kv := range n.ChildEnv() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	require.Equal(t, n.Cfg.Home, env["AGENTOS_HOME"])
	require.True(t, filepath.IsAbs(env["AGENTOS_HOME"]))
	require.Equal(t, n.Cfg.OrchestratorAddr, env["AGENTOS_ORCHESTRATOR_ADDR"])
	require.Equal(t, n.Cfg.ModelPolicyURL, env["AGENTOS_MODEL_POLICY_URL"])
	require.Equal(t, "demo", env["AGENTOS_MODE"])
	require.Equal(t, "1", env[fakeEnv])
}

func TestPortFree(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	require.Error(t, PortFree(l.Addr().String()))
	require.NoError(t, PortFree(testnode.FreeAddr(t)))
}

func TestWaitPortFree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// A port something listens on fails at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	waited := 0
	require.Error(t, WaitPortFree(ctx, l.Addr().String(), time.Minute, func() { waited++ }))
	require.Zero(t, waited)

	// A port held by a socket that does not listen (as a TIME_WAIT
	// connection holds one) is waited for until it is released.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	require.Error(t, PortFree(addr), "bound without listening still holds the port")
	require.Error(t, WaitPortFree(ctx, addr, 300*time.Millisecond, func() {}), "still held when the wait ends")
	var released atomic.Bool
	go func() {
		time.Sleep(300 * time.Millisecond)
		released.Store(true)
		_ = syscall.Close(fd)
	}()
	waited = 0
	require.NoError(t, WaitPortFree(ctx, addr, time.Minute, func() { waited++ }))
	require.True(t, released.Load())
	require.Positive(t, waited)
}
