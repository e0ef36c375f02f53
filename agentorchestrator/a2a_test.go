package agentorchestrator

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
)

// a2aSend posts message/send (blocking) to agt_echo's A2A endpoint and
// returns the JSON-RPC result and error.
func a2aSend(b *testBundle, tenant string, msg map[string]any) (map[string]any, map[string]any) {
	b.t.Helper()
	resp, out := b.do("POST", "/a2a/agt_echo", tenant, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "message/send",
		"params": map[string]any{"message": msg}})
	require.Equal(b.t, http.StatusOK, resp.StatusCode, out)
	res, _ := out["result"].(map[string]any)
	rerr, _ := out["error"].(map[string]any)
	return res, rerr
}

func a2aMessage(id, text, contextID string) map[string]any {
	m := map[string]any{"kind": "message", "messageId": id, "role": "user", "parts": []any{map[string]any{"kind": "text", "text": text}}}
	if contextID != "" {
		m["contextId"] = contextID
	}
	return m
}

// TestA2AContextIsThread: a message without contextId starts a thread
// (contextId = thread id; a retry is the same task on the same thread); a
// second message with that contextId runs on the thread and its model
// input carries the first turn; an unknown contextId, or another tenant's
// thread, is not_found and creates nothing.
func TestA2AContextIsThread(t *testing.T) {
	t.Parallel()
	rec := &recordingModel{scriptedModel: &scriptedModel{}, input: map[string][][]modelport.Message{}}
	b := setup(t, bundleOpts{port: rec})
	ctx := context.Background()

	first, e := a2aSend(b, "tnt_a", a2aMessage("m-1", "my name is Ada", ""))
	require.Nil(t, e)
	require.Equal(t, "completed", first["status"].(map[string]any)["state"])
	ctxID := first["contextId"].(string)
	require.True(t, strings.HasPrefix(ctxID, "thr_"), ctxID)
	th, err := b.db.GetThread(ctx, "tnt_a", ctxID)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"source": "a2a", "agent_id": "agt_echo"}, th.Metadata)
	again, e := a2aSend(b, "tnt_a", a2aMessage("m-1", "my name is Ada", ""))
	require.Nil(t, e)
	require.Equal(t, first["id"], again["id"], "a retried message is the same task")
	require.Equal(t, ctxID, again["contextId"])

	second, e := a2aSend(b, "tnt_a", a2aMessage("m-2", "what is my name?", ctxID))
	require.Nil(t, e)
	require.Equal(t, ctxID, second["contextId"])
	run, err := b.db.GetRun(ctx, "tnt_a", second["id"].(string))
	require.NoError(t, err)
	require.Equal(t, ctxID, run.ThreadID)
	require.Equal(t, store.MultitaskEnqueue, run.MultitaskStrategy)
	require.Equal(t, `system:echo|user:my name is Ada|assistant:|tool:{"text":"my name is Ada"}|`+
		`assistant:Echo: {"text":"my name is Ada"}|user:what is my name?`, roles(rec.firstCall(run.RunID)))
	resp, out := b.do("POST", "/a2a/agt_echo", "tnt_a", map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tasks/get",
		"params": map[string]any{"id": run.RunID}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, ctxID, out["result"].(map[string]any)["contextId"])

	for name, tc := range map[string]struct{ tenant, contextID string }{
		"unknown":                 {"tnt_a", "thr_unknown"},
		"another tenant's thread": {"tnt_b", ctxID},
	} {
		_, e = a2aSend(b, tc.tenant, a2aMessage("m-x-"+tc.tenant, "hi", tc.contextID))
		require.NotNil(t, e, name)
		require.EqualValues(t, rpcServerError, e["code"], name)
		require.Equal(t, "not_found", e["data"].(map[string]any)["code"], name)
		require.Equal(t, "message.contextId", e["data"].(map[string]any)["details"].(map[string]any)["field"], name)
	}
	runs, _, err := b.db.ListRuns(ctx, store.ListRunsParams{TenantID: "tnt_b"})
	require.NoError(t, err)
	require.Empty(t, runs)
	threads, _, err := b.db.ListThreads(ctx, store.ListThreadsParams{TenantID: "tnt_b"})
	require.NoError(t, err)
	require.Empty(t, threads)

	// An unknown agent leaves no thread behind.
	resp, out = b.do("POST", "/a2a/agt_nope", "tnt_a", map[string]any{"jsonrpc": "2.0", "id": 3, "method": "message/send",
		"params": map[string]any{"message": a2aMessage("m-3", "hi", "")}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "not_found", out["error"].(map[string]any)["data"].(map[string]any)["code"])
	threads, _, err = b.db.ListThreads(ctx, store.ListThreadsParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Len(t, threads, 1)
}
