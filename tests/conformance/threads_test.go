package conformance

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/tests/testnode"
)

// TestThreadsConformance starts a real node and validates every threads
// endpoint's live responses, success and error, against
// docs/api/agent-orchestrator/openapi.yaml.
func TestThreadsConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	spec := LoadSpec(t, "agent-orchestrator")
	node := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1"}})
	base := node.URL("orchestrator")
	user := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_demo"}}
	admin := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"Authorization": "Bearer " + node.Credentials().PlatformAdmin.Token,
		"X-Tenant-Id": "tnt_demo"}}
	status := func(resp *http.Response, want int, body []byte) {
		t.Helper()
		require.Equal(t, want, resp.StatusCode, string(body))
	}
	get := func(body []byte, keys ...string) any {
		var v any = JSON(t, body)
		for _, k := range keys {
			v = v.(map[string]any)[k]
		}
		return v
	}

	// A webhook tool that holds its call keeps a run active.
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte(`{"output":{"ok":true}}`))
	}))
	t.Cleanup(func() { close(release); hook.Close() })
	resp, body := admin.Do(t, "PUT", "/v1/admin/tools/tool.conf.hold", map[string]any{"tool": map[string]any{"name": "hold",
		"description": "Holds the call.", "input_schema": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}},
		"url": hook.URL, "secret": "conf-hold-secret-0123456789abcdef", "timeout_ms": 120000}})
	status(resp, 201, body)
	resp, body = admin.Do(t, "PUT", "/v1/admin/agents/agt_conf_hold", map[string]any{"agent": map[string]any{"name": "Hold",
		"model_ref": "tier:fast", "tools": []string{"tool.conf.hold"}, "defaults": map[string]any{"timeout_ms": 120000}}})
	status(resp, 201, body)
	resp, body = admin.Do(t, "POST", "/v1/admin/tenants", map[string]any{"tenant_id": "tnt_conf_threads_b", "name": "B"})
	status(resp, 201, body)
	other := &Client{Spec: spec, BaseURL: base, Headers: map[string]string{"X-Tenant-Id": "tnt_conf_threads_b"}}

	resp, body = user.Do(t, "POST", "/v1/threads", map[string]any{"metadata": map[string]any{"user": "u_conf"}})
	status(resp, 201, body)
	threadID := get(body, "thread", "thread_id").(string)
	resp, body = user.Do(t, "POST", "/v1/threads", nil)
	status(resp, 201, body)
	resp, body = user.Do(t, "POST", "/v1/threads", map[string]any{"metadata": map[string]any{"bad key": "x"}})
	status(resp, 400, body)
	resp, body = user.Do(t, "GET", "/v1/threads/"+threadID, nil)
	status(resp, 200, body)
	resp, body = other.Do(t, "GET", "/v1/threads/"+threadID, nil)
	status(resp, 404, body)
	resp, body = user.Do(t, "GET", "/v1/threads?metadata.user=u_conf&limit=5", nil)
	status(resp, 200, body)
	require.Len(t, get(body, "threads"), 1)
	resp, body = user.Do(t, "GET", "/v1/threads?metadata%5Buser%5D=u_conf", nil)
	status(resp, 200, body)
	require.Len(t, get(body, "threads"), 1)
	resp, body = user.Do(t, "GET", "/v1/threads?limit=1", nil)
	status(resp, 200, body)
	require.NotNil(t, get(body, "next_cursor"))
	resp, body = user.Do(t, "GET", "/v1/threads?limit=0", nil)
	status(resp, 400, body)

	// A run on the thread; its stream (with the thread's history in
	// model.requested) is valid frame by frame.
	key := map[string]string{"Idempotency-Key": "conf-thread-" + time.Now().Format("150405.000000")}
	run := map[string]any{"agent_id": "agt_sample_echo_v1", "input": "hello thread"}
	resp, body = user.Do(t, "POST", "/v1/threads/"+threadID+"/runs", run, key)
	status(resp, 201, body)
	runID := get(body, "run", "run_id").(string)
	resp, body = user.Do(t, "POST", "/v1/threads/"+threadID+"/runs", run, key)
	status(resp, 200, body)
	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/v1/runs/"+runID+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	sresp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	sbody := readAll(t, sresp)
	spec.ValidateResponse(t, req, sresp, sbody)
	evs := spec.ValidateSSE(t, req, sbody)
	require.Equal(t, "agentos.run.completed", evs[len(evs)-1].Type, string(sbody))
	resp, body = user.Do(t, "POST", "/v1/threads/"+threadID+"/runs", map[string]any{"agent_id": "agt_sample_echo_v1", "input": "again"})
	status(resp, 201, body)
	second := get(body, "run", "run_id").(string)
	req, err = http.NewRequestWithContext(t.Context(), "GET", base+"/v1/runs/"+second+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-Tenant-Id", "tnt_demo")
	sresp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	sbody = readAll(t, sresp)
	spec.ValidateSSE(t, req, sbody)
	require.Contains(t, string(sbody), `"thread_history"`)

	resp, body = user.Do(t, "GET", "/v1/threads/"+threadID+"/messages?limit=2", nil)
	status(resp, 200, body)
	cursor := get(body, "next_cursor").(string)
	resp, body = user.Do(t, "GET", "/v1/threads/"+threadID+"/messages?cursor="+cursor, nil)
	status(resp, 200, body)
	resp, body = user.Do(t, "GET", "/v1/threads/"+threadID+"/messages?cursor=nope", nil)
	status(resp, 400, body)
	resp, body = other.Do(t, "GET", "/v1/threads/"+threadID+"/messages", nil)
	status(resp, 404, body)

	// Double-texting against a held run.
	resp, body = user.Do(t, "POST", "/v1/threads/"+threadID+"/runs", map[string]any{"agent_id": "agt_conf_hold", "input": "hold on"})
	status(resp, 201, body)
	held := get(body, "run", "run_id").(string)
	<-entered
	resp, body = user.Do(t, "POST", "/v1/threads/"+threadID+"/runs", map[string]any{"agent_id": "agt_sample_echo_v1", "input": "x"})
	status(resp, 409, body)
	require.Equal(t, held, get(body, "error", "details", "active_run_id"))
	resp, body = user.Do(t, "DELETE", "/v1/threads/"+threadID, nil)
	status(resp, 409, body)
	resp, body = user.Do(t, "POST", "/v1/threads/"+threadID+"/runs", map[string]any{"agent_id": "agt_conf_hold", "input": "now",
		"multitask_strategy": "interrupt"})
	status(resp, 201, body)
	interrupting := get(body, "run", "run_id").(string)
	resp, body = user.Do(t, "GET", "/v1/runs/"+held, nil)
	status(resp, 200, body)
	require.Equal(t, "canceled", get(body, "run", "status"))
	resp, body = user.Do(t, "POST", "/v1/runs/"+interrupting+":cancel", nil)
	status(resp, 200, body)

	// The thread's runs, newest first; another tenant lists none.
	resp, body = user.Do(t, "GET", "/v1/runs?thread_id="+threadID+"&limit=3", nil)
	status(resp, 200, body)
	var listed []string
	for _, r := range get(body, "runs").([]any) {
		require.Equal(t, threadID, r.(map[string]any)["thread_id"])
		listed = append(listed, r.(map[string]any)["run_id"].(string))
	}
	require.Equal(t, []string{interrupting, held, second}, listed)
	resp, body = user.Do(t, "GET", "/v1/runs?thread_id="+threadID+"&cursor="+get(body, "next_cursor").(string), nil)
	status(resp, 200, body)
	require.Len(t, get(body, "runs"), 1)
	require.Equal(t, runID, get(body, "runs").([]any)[0].(map[string]any)["run_id"])
	resp, body = other.Do(t, "GET", "/v1/runs?thread_id="+threadID, nil)
	status(resp, 200, body)
	require.Empty(t, get(body, "runs"))

	resp, body = user.Do(t, "POST", "/v1/threads/"+threadID+"/runs", map[string]any{"input": "x"})
	status(resp, 400, body)
	resp, body = user.Do(t, "POST", "/v1/threads/"+threadID+"/runs", map[string]any{"agent_id": "agt_sample_echo_v1", "input": "x", "multitask_strategy": "later"})
	status(resp, 400, body)
	resp, body = user.Do(t, "POST", "/v1/threads/thr_missing/runs", map[string]any{"agent_id": "agt_sample_echo_v1", "input": "x"})
	status(resp, 404, body)
	resp, body = other.Do(t, "DELETE", "/v1/threads/"+threadID, nil)
	status(resp, 404, body)
	resp, body = user.Do(t, "DELETE", "/v1/threads/"+threadID, nil)
	status(resp, 200, body)
	resp, body = user.Do(t, "GET", "/v1/threads/"+threadID, nil)
	status(resp, 404, body)
}
