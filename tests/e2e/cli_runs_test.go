package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestCLIRunsCommands drives `agentos runs list|get|cancel|events` against
// a real node: a completed run, and a run held inside a webhook tool call
// (so it is running, deterministically) that `runs cancel` cancels while
// `runs events` follows it to its canceled event.
func TestCLIRunsCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	t.Parallel()
	n := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1"}})
	cli := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := n.Run(ctx, args...)
		if ee, ok := err.(*exec.ExitError); ok {
			return out, ee.ExitCode()
		}
		require.NoError(t, err, out)
		return out, 0
	}

	out, code := cli("run", "agt_sample_echo_v1", "hello runs", "--json")
	require.Equal(t, 0, code, out)
	var first struct {
		Run struct {
			RunID string `json:"run_id"`
		} `json:"run"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &first))
	done := first.Run.RunID
	require.NotEmpty(t, done)

	out, code = cli("runs", "list")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "RUN")
	require.Contains(t, out, done)
	out, code = cli("runs", "list", "--json", "--status", "completed", "--limit", "5")
	require.Equal(t, 0, code, out)
	var page struct {
		Runs []struct {
			RunID  string `json:"run_id"`
			Status string `json:"status"`
		} `json:"runs"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &page), out)
	require.NotEmpty(t, page.Runs)
	require.Equal(t, "completed", page.Runs[0].Status)

	out, code = cli("runs", "get", done)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "completed")
	require.Contains(t, out, "hello runs")
	out, code = cli("runs", "get", done, "--json")
	require.Equal(t, 0, code, out)
	require.True(t, json.Valid([]byte(out)), out)
	out, code = cli("runs", "get", "run_01nonexistent0000000000000")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "not_found")

	out, code = cli("runs", "events", done)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "completed: ")
	out, code = cli("runs", "events", done, "--json", "--after", "1")
	require.Equal(t, 0, code, out)
	for _, l := range strings.Split(out, "\n") {
		var ev struct {
			Event struct {
				Sequence int64 `json:"sequence"`
			} `json:"event"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
		require.Greater(t, ev.Event.Sequence, int64(1), "--after 1 starts after sequence 1")
	}
	out, code = cli("runs", "cancel", done)
	require.Equal(t, 1, code, "a completed run cannot be canceled: %s", out)
	require.Contains(t, out, "conflict")

	// A run held in a webhook tool call until the test ends.
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{"output":{"ok":true}}`))
	}))
	t.Cleanup(func() { close(release); hook.Close() })
	creds := n.Credentials()
	admin := func(method, path string, body any) {
		t.Helper()
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequest(method, n.URL("orchestrator")+path, bytes.NewReader(raw))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+creds.PlatformAdmin.Token)
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Less(t, resp.StatusCode, 300, "%s %s", method, path)
	}
	admin("PUT", "/v1/admin/tools/tool.e2e.hold", map[string]any{"tool": map[string]any{"name": "hold", "description": "Holds the call.",
		"input_schema": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}},
		"url":          hook.URL, "secret": "e2e-hold-secret-0123456789", "timeout_ms": 120000}})
	admin("PUT", "/v1/admin/agents/agt_e2e_hold", map[string]any{"agent": map[string]any{"name": "Hold", "model_ref": "tier:fast",
		"tools": []string{"tool.e2e.hold"}, "defaults": map[string]any{"timeout_ms": 120000}}})

	// `agentos run` would wait; create the run without following it.
	type result struct {
		out  string
		code int
	}
	follow := make(chan result, 1)
	var held string
	{
		req, err := http.NewRequest("POST", n.URL("orchestrator")+"/v1/agents/agt_e2e_hold/runs", strings.NewReader(`{"input":"wait"}`))
		require.NoError(t, err)
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var created struct {
			Run struct {
				RunID string `json:"run_id"`
			} `json:"run"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
		resp.Body.Close()
		held = created.Run.RunID
	}
	<-entered // the run is inside the tool call
	go func() {
		out, code := cli("runs", "events", held)
		follow <- result{out, code}
	}()
	out, code = cli("runs", "list", "--status", "running")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, held)
	out, code = cli("runs", "cancel", held, "--reason", "e2e test", "--json")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, held)
	r := <-follow
	require.Equal(t, 1, r.code, "events of a canceled run exit 1: %s", r.out)
	require.Contains(t, r.out, "canceled: ")
	out, code = cli("runs", "get", held)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "canceled")
}
