package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store/postgres/pgtest"
	"github.com/nexixai/agentos/internal/supervisor"
	"github.com/nexixai/agentos/tests/testnode"
)

// proc is a process the test started (nats, a worker) with its log.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(t *testing.T, n *testnode.Node, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(n.Home, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(t, err)
	cmd := exec.Command(n.Bin, args...)
	cmd.Dir = n.Home
	cmd.Env = append(append(os.Environ(), n.Env...), "AGENTOS_LOG_LEVEL=info")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGTERM) })
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// startAuthNATS runs `agentos serve nats` with authentication (the
// control key, and the workers of the node's store) and waits until it
// is healthy.
func startAuthNATS(t *testing.T, n *testnode.Node, addr, monitor, controlKey string) *proc {
	t.Helper()
	nats := startProc(t, n, "nats", "serve", "nats", "--name", "nats", "--addr", addr, "--monitor-addr", monitor,
		"--store-dir", filepath.Join(n.Home, "nats"), "--control-nkey-file", controlKey)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + monitor + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 60*time.Second, 100*time.Millisecond, "nats: %s", nats.output())
	return nats
}

// liveWorkers is GET /v1/admin/workers's live part, by worker id.
func liveWorkers(t *testing.T, base, admin string) map[string]map[string]any {
	t.Helper()
	code, out := runsJSON(t, "GET", base+"/v1/admin/workers", map[string]string{"Authorization": "Bearer " + admin}, nil)
	require.Equal(t, 200, code, out)
	live := map[string]map[string]any{}
	for _, w := range out["workers"].([]any) {
		m := w.(map[string]any)
		if l, ok := m["live"].(map[string]any); ok {
			live[m["worker_id"].(string)] = l
		}
	}
	return live
}

// toolCompletions returns the tool.call.completed payloads of a run
// after waiting for it to be terminal.
func toolCompletions(t *testing.T, client *http.Client, base, runID string) (status string, calls []map[string]any) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequest("GET", base+"/v1/runs/"+runID, nil)
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		resp, err := client.Do(req)
		require.NoError(t, err)
		var body struct {
			Run struct {
				Status string `json:"status"`
			} `json:"run"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		if s := body.Run.Status; s == "completed" || s == "failed" || s == "canceled" {
			status = s
			break
		}
		require.True(t, time.Now().Before(deadline), "run %s stuck in %s", runID, body.Run.Status)
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", base+"/v1/runs/"+runID+"/events", nil)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var evs struct {
		Events []struct {
			Type    string         `json:"type"`
			Payload map[string]any `json:"payload"`
		} `json:"events"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&evs))
	for _, e := range evs.Events {
		if e.Type == "agentos.tool.call.completed" {
			calls = append(calls, e.Payload)
		}
	}
	return status, calls
}

func createRun(t *testing.T, client *http.Client, base, agent, input string) string {
	t.Helper()
	code, out := runsJSON(t, "POST", base+"/v1/agents/"+agent+"/runs", map[string]string{"X-Tenant-Id": "tnt_demo"},
		map[string]any{"input": input})
	require.Equal(t, 201, code, out)
	return out["run"].(map[string]any)["run_id"].(string)
}

// TestWorkerNodes is issue 12's worker nodes with real processes: a NATS
// server with authentication (`agentos serve nats --control-nkey-file`,
// workers from the PostgreSQL store's registry), an orchestrator and
// model-policy on it, and workers registered with `agentos workers add`
// and started with `agentos serve worker`.
//
//   - 200 runs of an agent whose tool is placed on gpu=a100: every tool
//     call ran on the a100 worker (worker_id in tool.call.completed), none
//     in the orchestrator, none on the t4 worker.
//   - kill -9 of the worker running an idempotent call: it is sent to the
//     other a100 worker; of the one running a non-idempotent call: the
//     call ends with error code interrupted. No run is stuck.
//   - A revoked worker is cut off and its credential refused.
func TestWorkerNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	pgURL := pgtest.URL(t)
	keys := t.TempDir()
	control, err := supervisor.EnsureControlNkey(keys)
	require.NoError(t, err)
	natsAddr, monitor := testnode.FreeAddr(t), testnode.FreeAddr(t)
	busURL := "nats://" + natsAddr

	// A slow HTTP server: the non-idempotent tool.http.fetch hangs on it.
	hold := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hold); slow.Close() })

	env := []string{"AGENTOS_STORE_URL=" + pgURL, "AGENTOS_BUS_URL=" + busURL, "AGENTOS_BUS_NKEY_FILE=" + control,
		"AGENTOS_WORKER_HEARTBEAT_TIMEOUT=2s", "AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1",
		"AGENTOS_QUOTA_RUN_CREATE_QPS=5000", "AGENTOS_QUOTA_CONCURRENT_RUNS=2000"}
	// The bus first (the orchestrator dials it at start); it reads the
	// worker registry from the store, retrying until the orchestrator
	// has made the schema.
	n := testnode.Start(t, testnode.Options{Services: []string{"model-policy"}, Env: env})
	nats := startAuthNATS(t, n, natsAddr, monitor, control)
	n.StartService("orchestrator")
	base := n.URL("orchestrator")
	admin := n.Credentials().PlatformAdmin.Token
	adminH := map[string]string{"Authorization": "Bearer " + admin}
	code, out := runsJSON(t, "PATCH", base+"/v1/admin/tenants/tnt_demo", adminH,
		map[string]any{"quotas": map[string]any{"tools": map[string]any{"tool_calls_per_minute": 100000}}})
	require.Equal(t, 200, code, out)

	ctx := context.Background()
	for id, labels := range map[string]string{"w-a100": "gpu=a100,zone=eu", "w-a100-b": "gpu=a100", "w-t4": "gpu=t4,zone=eu"} {
		msg, err := n.Run(ctx, "workers", "add", id, "--labels", labels)
		require.NoError(t, err, msg)
		require.Contains(t, msg, "registered")
	}
	msg, err := n.Run(ctx, "workers", "list", "--json")
	require.NoError(t, err, msg)
	var listed struct {
		Workers []struct {
			WorkerID string            `json:"worker_id"`
			Labels   map[string]string `json:"labels"`
			Status   string            `json:"status"`
		} `json:"workers"`
	}
	require.NoError(t, json.Unmarshal([]byte(msg), &listed), msg)
	require.Len(t, listed.Workers, 3)
	require.Equal(t, "w-a100", listed.Workers[0].WorkerID)
	require.Equal(t, map[string]string{"gpu": "a100", "zone": "eu"}, listed.Workers[0].Labels)

	workers := map[string]*proc{}
	startWorker := func(id string) {
		workers[id] = startProc(t, n, id, "serve", "worker", "--id", id)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, ok := liveWorkers(t, base, admin)[id]; ok {
				break
			}
			if time.Now().After(deadline) {
				_ = nats.cmd.Process.Signal(syscall.SIGQUIT)
				time.Sleep(2 * time.Second)
				out := nats.output()
				if i := strings.Index(out, "goroutine "); i >= 0 {
					out = out[i:]
				}
				var keep []string
				for _, g := range strings.Split(out, "\n\n") {
					if strings.Contains(g, "natsd") || strings.Contains(g, "Reload") || strings.Contains(g, "node.") {
						keep = append(keep, g)
					}
				}
				t.Fatalf("worker %s never heartbeated (exited %t):\n%s\nnats:\n%s", id, workers[id].exited(), workers[id].output(), strings.Join(keep, "\n\n"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	startWorker("w-a100")
	startWorker("w-t4")

	put := func(agent, tool string) {
		code, out := runsJSON(t, "PUT", base+"/v1/admin/agents/"+agent, adminH, map[string]any{"agent": map[string]any{
			"name": agent, "model_ref": "tier:fast", "tools": []string{tool},
			"placement": map[string]any{"labels": map[string]string{"gpu": "a100"}}}})
		require.Equal(t, 201, code, out)
	}
	put("agt-gpu-echo", "tool.echo")
	put("agt-gpu-sleep", "tool.sleep")
	put("agt-gpu-fetch", "tool.http.fetch")

	// 200 runs: every tool call on the a100 worker.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	const runs = 200
	var wg sync.WaitGroup
	work := make(chan int)
	errsCh := make(chan string, runs)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				id := createRun(t, client, base, "agt-gpu-echo", fmt.Sprintf("hello %d", i))
				status, calls := toolCompletions(t, client, base, id)
				switch {
				case status != "completed":
					errsCh <- fmt.Sprintf("run %s %s", id, status)
				case len(calls) != 1:
					errsCh <- fmt.Sprintf("run %s: %d tool calls", id, len(calls))
				case calls[0]["worker_id"] != "w-a100" || calls[0]["status"] != "ok":
					errsCh <- fmt.Sprintf("run %s: tool call %v", id, calls[0])
				}
			}
		}()
	}
	start := time.Now()
	for i := range runs {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errsCh)
	var problems []string
	for p := range errsCh {
		problems = append(problems, p)
	}
	require.Empty(t, problems)
	t.Logf("%d placed runs in %s (%.1f runs/s)", runs, time.Since(start).Round(time.Millisecond), runs/time.Since(start).Seconds())

	// kill -9 mid-call of an idempotent tool: sent again to the other a100 worker.
	startWorker("w-a100-b")
	// (after the heartbeats say the 200 runs' calls are over: a stale
	// in_flight would name the wrong holder)
	require.Eventually(t, func() bool {
		live := liveWorkers(t, base, admin)
		for _, id := range []string{"w-a100", "w-a100-b"} {
			if l, ok := live[id]; !ok || l["in_flight"].(float64) != 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond)
	runID := createRun(t, client, base, "agt-gpu-sleep", "4s")
	holder := waitHolder(t, base, admin, "w-a100", "w-a100-b")
	workers[holder].signal(syscall.SIGKILL)
	status, calls := toolCompletions(t, client, base, runID)
	require.Equal(t, "completed", status)
	require.Len(t, calls, 1)
	other := map[string]string{"w-a100": "w-a100-b", "w-a100-b": "w-a100"}[holder]
	require.Equal(t, other, calls[0]["worker_id"], "retried on the other matching worker: %v", calls[0])
	require.Equal(t, "ok", calls[0]["status"])
	require.EqualValues(t, 1, calls[0]["retries"])

	// kill -9 mid-call of a non-idempotent tool: interrupted, the run ends.
	// (after a heartbeat says the previous call is over)
	require.Eventually(t, func() bool {
		l, ok := liveWorkers(t, base, admin)[other]
		return ok && l["in_flight"].(float64) == 0
	}, 30*time.Second, 50*time.Millisecond)
	runID = createRun(t, client, base, "agt-gpu-fetch", slow.URL+"/hang")
	require.Equal(t, other, waitHolder(t, base, admin, other))
	workers[other].signal(syscall.SIGKILL)
	status, calls = toolCompletions(t, client, base, runID)
	require.Equal(t, "completed", status, "the model sees the error; the run is not stuck")
	require.Len(t, calls, 1)
	require.Equal(t, "error", calls[0]["status"])
	require.Equal(t, "interrupted", calls[0]["error"].(map[string]any)["code"], "%v", calls[0])
	require.Equal(t, other, calls[0]["worker_id"])

	// No a100 worker left: a placed call waits for one, then fails.
	runID = createRun(t, client, base, "agt-gpu-echo", "nobody")
	_, calls = toolCompletions(t, client, base, runID)
	require.Len(t, calls, 1)
	require.Equal(t, "dependency_unavailable", calls[0]["error"].(map[string]any)["code"], "%v", calls[0])

	// A worker dedicated to the demo tenant takes its calls (the other
	// tenants' side is worker/tenants_test.go).
	msg, err = n.Run(ctx, "workers", "add", "w-demo", "--labels", "gpu=a100", "--tenants", "tnt_demo")
	require.NoError(t, err, msg)
	require.Contains(t, msg, "dedicated to tnt_demo")
	startWorker("w-demo")
	require.Equal(t, []any{"tnt_demo"}, liveWorkers(t, base, admin)["w-demo"]["tenants"])
	runID = createRun(t, client, base, "agt-gpu-echo", "dedicated")
	status, calls = toolCompletions(t, client, base, runID)
	require.Equal(t, "completed", status)
	require.Len(t, calls, 1)
	require.Equal(t, "w-demo", calls[0]["worker_id"], "%v", calls[0])

	// Revocation: the live t4 worker is cut off, and refused again.
	msg, err = n.Run(ctx, "workers", "revoke", "w-t4")
	require.NoError(t, err, msg)
	require.Eventually(t, workers["w-t4"].exited, 30*time.Second, 100*time.Millisecond,
		"the revoked worker is still connected:\n%s", workers["w-t4"].output())
	require.Contains(t, workers["w-t4"].output(), "refused")
	again, err := n.Run(ctx, "serve", "worker", "--id", "w-t4")
	require.Error(t, err)
	require.Contains(t, strings.ToLower(again), "authorization violation", again)
}

// waitHolder waits until one of ids reports a task in flight.
func waitHolder(t *testing.T, base, admin string, ids ...string) string {
	t.Helper()
	var got string
	require.Eventually(t, func() bool {
		live := liveWorkers(t, base, admin)
		for _, id := range ids {
			if l, ok := live[id]; ok && l["in_flight"].(float64) > 0 {
				got = id
				return true
			}
		}
		return false
	}, 30*time.Second, 20*time.Millisecond)
	return got
}
