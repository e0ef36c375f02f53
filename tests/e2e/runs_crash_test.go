package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/events"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// runsJSON sends a JSON request to the orchestrator as tnt_demo.
func runsJSON(t *testing.T, method, url string, hdr map[string]string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

// runsStream reads a run's whole SSE stream.
func runsStream(t *testing.T, base, runID string) []store.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	var evs []store.Event
	require.NoError(t, events.ReadSSE(resp.Body, func(f events.Frame) error {
		e, err := events.DecodeFrame(f)
		if err != nil {
			return err
		}
		evs = append(evs, e)
		return nil
	}))
	return evs
}

// TestRunsSurviveKill9 kills the orchestrator with SIGKILL while runs are
// queued and running (some inside a slow, non-idempotent HTTP tool call),
// restarts it, and checks that every accepted run reaches a terminal
// state with a gapless event sequence, and that no in-flight tool call was
// executed twice.
func TestRunsSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	var hits sync.Map // path → count
	var inflight atomic.Int64
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := hits.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		inflight.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "slow answer")
	}))
	defer slow.Close()
	defer close(release)

	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1", "AGENTOS_EXECUTORS=4", "AGENTOS_QUOTA_RUN_CREATE_QPS=100"}})
	base := node.URL("orchestrator")
	admin := map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token, "X-Tenant-Id": "tnt_demo"}
	code, out := runsJSON(t, "PUT", base+"/v1/admin/agents/agt_fetch", admin, map[string]any{"agent": map[string]any{
		"name": "fetcher", "model_ref": "tier:fast", "instructions": "Fetch the URL the user gives, then summarise it.",
		"tools": []string{"tool.http.fetch"}, "defaults": map[string]any{"max_steps": 4, "timeout_ms": 120000}}})
	require.Equal(t, 201, code, out)

	user := map[string]string{"X-Tenant-Id": "tnt_demo"}
	var runIDs []string
	for i := 0; i < 4; i++ {
		code, out := runsJSON(t, "POST", base+"/v1/agents/agt_fetch/runs", user, map[string]any{"input": fmt.Sprintf("%s/slow/%d", slow.URL, i)})
		require.Equal(t, 201, code, out)
		runIDs = append(runIDs, out["run"].(map[string]any)["run_id"].(string))
	}
	for i := 0; i < 20; i++ {
		code, out := runsJSON(t, "POST", base+"/v1/agents/agt_sample_echo_v1/runs", user, map[string]any{"input": fmt.Sprintf("echo %d", i)})
		require.Equal(t, 201, code, out)
		runIDs = append(runIDs, out["run"].(map[string]any)["run_id"].(string))
	}
	require.Eventually(t, func() bool { return inflight.Load() >= 4 }, 30*time.Second, 20*time.Millisecond,
		"the fetch runs should be inside their tool call:\n%s", node.Log("orchestrator"))

	node.Kill("orchestrator")
	node.StartService("orchestrator")

	for _, id := range runIDs {
		evs := runsStream(t, base, id)
		require.NotEmpty(t, evs)
		for i, e := range evs {
			require.Equal(t, int64(i+1), e.Sequence, "run %s: gap or duplicate at %d", id, i)
		}
		last := evs[len(evs)-1]
		require.True(t, store.IsTerminalEvent(last.Type), "run %s ended with %s", id, last.Type)
		code, out := runsJSON(t, "GET", base+"/v1/runs/"+id, user, nil)
		require.Equal(t, 200, code)
		require.Contains(t, []string{"completed", "failed"}, out["run"].(map[string]any)["status"])
	}
	hits.Range(func(k, v any) bool {
		require.EqualValues(t, 1, v.(*atomic.Int64).Load(), "tool call to %s executed more than once", k)
		return true
	})
}
