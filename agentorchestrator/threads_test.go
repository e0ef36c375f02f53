package agentorchestrator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/modelport"
	"github.com/nexixai/agentos/internal/store"
)

// recordingModel is scriptedModel that keeps every request's messages.
type recordingModel struct {
	*scriptedModel
	mu    sync.Mutex
	input map[string][][]modelport.Message // by run id, one per call
}

func (m *recordingModel) Chat(ctx context.Context, ac auth.Context, req modelport.ChatRequest) (modelport.ChatResponse, error) {
	m.mu.Lock()
	m.input[req.RunID] = append(m.input[req.RunID], req.Input.Messages)
	m.mu.Unlock()
	return m.scriptedModel.Chat(ctx, ac, req)
}

func (m *recordingModel) firstCall(runID string) []modelport.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.input[runID][0]
}

func newThread(t *testing.T, b *testBundle, tenant string, meta map[string]string) string {
	t.Helper()
	resp, out := b.do("POST", "/v1/threads", tenant, map[string]any{"metadata": meta})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	return out["thread"].(map[string]any)["thread_id"].(string)
}

func threadRun(b *testBundle, tenant, threadID string, body map[string]any) (*http.Response, map[string]any) {
	b.t.Helper()
	body["agent_id"] = "agt_echo"
	return b.do("POST", "/v1/threads/"+threadID+"/runs", tenant, body)
}

func runID(out map[string]any) string { return out["run"].(map[string]any)["run_id"].(string) }

func roles(msgs []modelport.Message) string {
	var rs []string
	for _, m := range msgs {
		rs = append(rs, m.Role+":"+m.Content)
	}
	return strings.Join(rs, "|")
}

func TestThreadConversationCarriesEarlierTurns(t *testing.T) {
	t.Parallel()
	rec := &recordingModel{scriptedModel: &scriptedModel{}, input: map[string][][]modelport.Message{}}
	b := setup(t, bundleOpts{port: rec})
	threadID := newThread(t, b, "tnt_a", map[string]string{"user": "u1"})

	var runs []string
	for _, text := range []string{"one", "two", "three"} {
		resp, out := threadRun(b, "tnt_a", threadID, map[string]any{"input": text})
		require.Equal(t, http.StatusCreated, resp.StatusCode, out)
		require.Equal(t, threadID, out["run"].(map[string]any)["thread_id"])
		id := runID(out)
		b.waitStatus("tnt_a", id, store.RunCompleted)
		runs = append(runs, id)
	}
	// Each turn: user, assistant tool call, tool result, assistant answer.
	require.Equal(t, "system:echo|user:one", roles(rec.firstCall(runs[0])))
	require.Equal(t, `system:echo|user:one|assistant:|tool:{"text":"one"}|assistant:Echo: {"text":"one"}|user:two`,
		roles(rec.firstCall(runs[1])))
	third := rec.firstCall(runs[2])
	require.Equal(t, `system:echo|user:one|assistant:|tool:{"text":"one"}|assistant:Echo: {"text":"one"}|`+
		`user:two|assistant:|tool:{"text":"two"}|assistant:Echo: {"text":"two"}|user:three`, roles(third))
	require.Len(t, third[2].ToolCalls, 1)
	require.Equal(t, third[3].ToolCallID, third[2].ToolCalls[0].ID)

	// The thread's messages, paged; the model.requested event names them.
	resp, out := b.do("GET", "/v1/threads/"+threadID+"/messages?limit=5", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Len(t, out["messages"], 5)
	require.Equal(t, "5", out["next_cursor"])
	resp, out = b.do("GET", "/v1/threads/"+threadID+"/messages?cursor=5", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Len(t, out["messages"], 7)
	require.Nil(t, out["next_cursor"])
	evs := b.streamEvents("tnt_a", runs[2])
	var hist map[string]any
	for _, e := range evs {
		if e.Type == store.EventModelRequested {
			hist = decodePayload(t, e)["input_summary"].(map[string]any)["thread_history"].(map[string]any)
			break
		}
	}
	require.EqualValues(t, 8, hist["messages"])
	require.Len(t, hist["message_ids"], 8)

	// Another tenant finds nothing.
	for _, p := range []string{"/v1/threads/" + threadID, "/v1/threads/" + threadID + "/messages"} {
		resp, _ := b.do("GET", p, "tnt_b", nil)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
	}
	resp, _ = threadRun(b, "tnt_b", threadID, map[string]any{"input": "x"})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = b.do("DELETE", "/v1/threads/"+threadID, "tnt_b", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, out = b.do("GET", "/v1/threads?metadata.user=u1", "tnt_b", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, out["threads"])
	for _, q := range []string{"metadata.user=u1", "metadata%5Buser%5D=u1"} {
		resp, out = b.do("GET", "/v1/threads?"+q, "tnt_a", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Len(t, out["threads"], 1, q)
	}
	resp, out = b.do("GET", "/v1/threads?metadata%5Buser%5D=u2", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, out["threads"])

	resp, out = b.do("DELETE", "/v1/threads/"+threadID, "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	resp, _ = b.do("GET", "/v1/threads/"+threadID+"/messages", "tnt_a", nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	recs, err := b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Equal(t, "thread.delete", recs[len(recs)-1].Action)
}

func TestThreadHistoryWindow(t *testing.T) {
	t.Parallel()
	rec := &recordingModel{scriptedModel: &scriptedModel{}, input: map[string][][]modelport.Message{}}
	b := setup(t, bundleOpts{port: rec})
	b.srv.cfg.Node.ThreadHistoryMessages = 6
	threadID := newThread(t, b, "tnt_a", nil)
	var last string
	for _, text := range []string{"one", "two", "three"} {
		_, out := threadRun(b, "tnt_a", threadID, map[string]any{"input": text})
		last = runID(out)
		b.waitStatus("tnt_a", last, store.RunCompleted)
	}
	// 8 earlier messages, a window of 6: the newest whole turn (4), since
	// the window starts at a user message.
	require.Equal(t, `system:echo|user:two|assistant:|tool:{"text":"two"}|assistant:Echo: {"text":"two"}|user:three`,
		roles(rec.firstCall(last)))
}

func TestThreadMultitaskStrategies(t *testing.T) {
	t.Parallel()
	model := &scriptedModel{}
	model.blockFrom.Store(1) // every model call blocks: runs stay active
	b := setup(t, bundleOpts{model: model})
	threadID := newThread(t, b, "tnt_a", nil)

	resp, out := threadRun(b, "tnt_a", threadID, map[string]any{"input": "first"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	first := runID(out)
	b.waitStatus("tnt_a", first, store.RunRunning)

	resp, out = threadRun(b, "tnt_a", threadID, map[string]any{"input": "x"})
	require.Equal(t, http.StatusConflict, resp.StatusCode, out)
	require.Equal(t, "conflict", out["error"].(map[string]any)["code"])
	require.Equal(t, first, out["error"].(map[string]any)["details"].(map[string]any)["active_run_id"])

	resp, out = threadRun(b, "tnt_a", threadID, map[string]any{"input": "later", "multitask_strategy": "enqueue"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	queued := runID(out)
	resp, out = b.do("GET", "/v1/threads/"+threadID, "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.Equal(t, first, out["thread"].(map[string]any)["active_run_id"])
	resp, out = b.do("DELETE", "/v1/threads/"+threadID, "tnt_a", nil)
	require.Equal(t, http.StatusConflict, resp.StatusCode, out)

	// interrupt: the first run is canceled, its turn kept (its input: the
	// model call it was making never answered); the new one is active and
	// the enqueued one still waits behind it.
	resp, out = threadRun(b, "tnt_a", threadID, map[string]any{"input": "now", "multitask_strategy": "interrupt"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	interrupting := runID(out)
	b.waitStatus("tnt_a", first, store.RunCanceled)
	b.waitStatus("tnt_a", interrupting, store.RunRunning)
	run, err := b.db.GetRun(context.Background(), "tnt_a", queued)
	require.NoError(t, err)
	require.Equal(t, store.RunQueued, run.Status)

	// rollback: the interrupting run is canceled and its turn discarded.
	resp, out = threadRun(b, "tnt_a", threadID, map[string]any{"input": "instead", "multitask_strategy": "rollback"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	rollingBack := runID(out)
	b.waitStatus("tnt_a", interrupting, store.RunCanceled)
	b.waitStatus("tnt_a", rollingBack, store.RunRunning)

	// The enqueued run starts when the runs before it have ended.
	resp, out = b.do("POST", "/v1/runs/"+rollingBack+":cancel", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	b.waitStatus("tnt_a", queued, store.RunRunning)

	resp, out = b.do("GET", "/v1/threads/"+threadID+"/messages", "tnt_a", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	var got []string
	for _, m := range out["messages"].([]any) {
		mm := m.(map[string]any)
		got = append(got, mm["role"].(string)+":"+mm["content"].(string))
	}
	require.Equal(t, []string{"user:first", "user:instead"}, got)
}

func TestThreadBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{noExec: true})
	threadID := newThread(t, b, "tnt_a", nil)
	for name, tc := range map[string]struct {
		method, path string
		body         any
		field        string
	}{
		"metadata key":      {"POST", "/v1/threads", map[string]any{"metadata": map[string]any{"a b": "x"}}, "metadata"},
		"metadata type":     {"POST", "/v1/threads", map[string]any{"metadata": map[string]any{"a": 1}}, "metadata.a"},
		"no agent":          {"POST", "/v1/threads/" + threadID + "/runs", map[string]any{"input": "x"}, "agent_id"},
		"strategy":          {"POST", "/v1/threads/" + threadID + "/runs", map[string]any{"input": "x", "agent_id": "agt_echo", "multitask_strategy": "later"}, "multitask_strategy"},
		"input":             {"POST", "/v1/threads/" + threadID + "/runs", map[string]any{"agent_id": "agt_echo"}, "input"},
		"limit":             {"GET", "/v1/threads?limit=0", nil, "limit"},
		"cursor":            {"GET", "/v1/threads/" + threadID + "/messages?cursor=x", nil, "cursor"},
		"list metadata key": {"GET", "/v1/threads?metadata.a%20b=1", nil, "metadata"},
	} {
		resp, out := b.do(tc.method, tc.path, "tnt_a", tc.body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %v", name, out)
		require.Equal(t, "invalid_request", out["error"].(map[string]any)["code"], name)
		require.Contains(t, out["error"].(map[string]any)["message"], tc.field, name)
	}
	resp, out := threadRun(b, "tnt_a", "thr_nope", map[string]any{"input": "x"})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, out)
	resp, out = b.do("POST", "/v1/threads/"+threadID+"/runs", "tnt_a", map[string]any{"input": "x", "agent_id": "agt_nope"})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, out)
	runs, _, err := b.db.ListRuns(context.Background(), store.ListRunsParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	require.Empty(t, runs)
}

func decodePayload(t *testing.T, e store.Event) map[string]any {
	t.Helper()
	var p map[string]any
	require.NoError(t, json.Unmarshal(e.Payload, &p))
	return p
}
