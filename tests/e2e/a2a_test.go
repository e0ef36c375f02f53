package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// rpc posts one JSON-RPC request to an A2A endpoint with a bearer token
// and decodes the response.
func rpc(t *testing.T, url, token, method string, params any) (result map[string]any, rpcErr map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "r1", "method": method, "params": params})
	require.NoError(t, err)
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Equal(t, 200, resp.StatusCode, string(raw))
	var out struct {
		ID     string         `json:"id"`
		Result map[string]any `json:"result"`
		Error  map[string]any `json:"error"`
	}
	require.NoError(t, json.Unmarshal(raw, &out), string(raw))
	require.Equal(t, "r1", out.ID)
	return out.Result, out.Error
}

func userMessage(text string, extra map[string]any) map[string]any {
	m := map[string]any{"kind": "message", "messageId": "m-" + strings.ReplaceAll(text, " ", "-"), "role": "user",
		"parts": []any{map[string]any{"kind": "text", "text": text}}}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// TestA2ATwoNodes: node A's agent calls node B's agent over A2A (a tool of
// kind "a2a" whose url is B's Agent Card and whose secret is a token of
// B), through A's SSRF guard; without the guard's allowance the same call
// is refused. B's JSON-RPC endpoint answers the protocol's errors.
func TestA2ATwoNodes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := testnode.Start(t, testnode.Options{})
	bAdmin := &apiclient.Client{BaseURL: b.URL("orchestrator"), Token: b.Credentials().PlatformAdmin.Token, TenantID: b.Credentials().TenantID}
	_, err := bAdmin.PutAgent(ctx, "agt_remote", map[string]any{"name": "Remote", "description": "Node B's agent.", "model_ref": "tier:fast"})
	require.NoError(t, err)
	tok, err := bAdmin.IssueToken(ctx, "tnt_demo", apiclient.TokenRequest{PrincipalID: "svc_node_a",
		Scopes: []string{"runs:create", "runs:read", "runs:cancel", "agents:read"}})
	require.NoError(t, err)
	endpoint := b.URL("orchestrator") + "/a2a/agt_remote"

	t.Run("protocol", func(t *testing.T) {
		// The node's card lists the agent as a skill.
		req, _ := http.NewRequest("GET", b.URL("orchestrator")+"/.well-known/agent-card.json", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Secret)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var card struct {
			URL    string `json:"url"`
			Skills []struct {
				ID string `json:"id"`
			} `json:"skills"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&card))
		resp.Body.Close()
		require.Equal(t, b.URL("orchestrator")+"/a2a", card.URL)
		require.Contains(t, card.Skills, struct {
			ID string `json:"id"`
		}{"agt_remote"})
		// Without a token: 401 before any JSON-RPC.
		resp, err = http.Post(endpoint, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"x"}}`))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 401, resp.StatusCode)

		_, e := rpc(t, endpoint, tok.Secret, "tasks/list", map[string]any{})
		require.EqualValues(t, -32601, e["code"])
		_, e = rpc(t, endpoint, tok.Secret, "message/send", map[string]any{"message": userMessage("x", map[string]any{"role": "agent"})})
		require.EqualValues(t, -32602, e["code"])
		require.Contains(t, e["message"], "message.role")
		_, e = rpc(t, endpoint, tok.Secret, "message/send", map[string]any{"message": userMessage("x", map[string]any{"taskId": "run_1"})})
		require.EqualValues(t, -32004, e["code"])
		_, e = rpc(t, b.URL("orchestrator")+"/a2a", tok.Secret, "message/send", map[string]any{"message": userMessage("x", nil)})
		require.EqualValues(t, -32602, e["code"])
		require.Contains(t, e["message"], "agent_id")
		_, e = rpc(t, b.URL("orchestrator")+"/a2a/agt_nowhere", tok.Secret, "message/send", map[string]any{"message": userMessage("x", nil)})
		require.EqualValues(t, -32000, e["code"])
		require.Equal(t, "not_found", e["data"].(map[string]any)["code"])

		// The node's endpoint routes by metadata; blocking false answers
		// the submitted task at once, and the same messageId is the same task.
		msg := userMessage("via the node card", map[string]any{"metadata": map[string]any{"agent_id": "agt_remote"}})
		res, e := rpc(t, b.URL("orchestrator")+"/a2a", tok.Secret, "message/send", map[string]any{"message": msg,
			"configuration": map[string]any{"blocking": false}})
		require.Nil(t, e)
		require.Equal(t, "task", res["kind"])
		again, e := rpc(t, b.URL("orchestrator")+"/a2a", tok.Secret, "message/send", map[string]any{"message": msg,
			"configuration": map[string]any{"blocking": false}})
		require.Nil(t, e)
		require.Equal(t, res["id"], again["id"], "idempotent per messageId")
		// tasks/resubscribe streams it to the end.
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": "tasks/resubscribe", "params": map[string]any{"id": res["id"]}})
		req, _ = http.NewRequest("POST", endpoint, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Secret)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		var last map[string]any
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev struct {
					Result map[string]any `json:"result"`
				}
				require.NoError(t, json.Unmarshal([]byte(data), &ev))
				last = ev.Result
			}
		}
		require.Equal(t, "status-update", last["kind"])
		require.Equal(t, true, last["final"])
		require.Equal(t, "completed", last["status"].(map[string]any)["state"])
	})

	// A2A context = thread: the first message (no contextId) starts a
	// thread whose id is the task's contextId; the second, with that
	// contextId, runs on the thread, and its model input carries the
	// first turn; tasks/get answers the same contextId; an unknown
	// contextId is an error.
	t.Run("conversation", func(t *testing.T) {
		first, e := rpc(t, endpoint, tok.Secret, "message/send", map[string]any{"message": userMessage("my name is Ada", nil)})
		require.Nil(t, e)
		require.Equal(t, "completed", first["status"].(map[string]any)["state"])
		ctxID := first["contextId"].(string)
		require.True(t, strings.HasPrefix(ctxID, "thr_"), ctxID)
		th, err := bAdmin.GetThread(ctx, ctxID)
		require.NoError(t, err, "the contextId is a thread")
		require.Equal(t, "a2a", th.Metadata["source"])
		before, err := bAdmin.ThreadMessages(ctx, ctxID)
		require.NoError(t, err)
		require.Equal(t, "my name is Ada", before[0].Content)

		second, e := rpc(t, endpoint, tok.Secret, "message/send", map[string]any{"message": userMessage("what is my name?",
			map[string]any{"contextId": ctxID})})
		require.Nil(t, e)
		require.Equal(t, "completed", second["status"].(map[string]any)["state"])
		require.Equal(t, ctxID, second["contextId"])
		got, e := rpc(t, endpoint, tok.Secret, "tasks/get", map[string]any{"id": second["id"]})
		require.Nil(t, e)
		require.Equal(t, ctxID, got["contextId"])
		run, err := bAdmin.GetRun(ctx, second["id"].(string))
		require.NoError(t, err)
		require.Equal(t, ctxID, run.ThreadID)
		// The second turn's model input: the first turn's messages, then
		// its own input.
		evs, err := bAdmin.ListEvents(ctx, run.RunID)
		require.NoError(t, err)
		var ids []string
		for _, m := range before {
			ids = append(ids, m.MessageID)
		}
		var requested int
		for _, ev := range evs {
			if ev.Type != store.EventModelRequested {
				continue
			}
			requested++
			var p struct {
				InputSummary struct {
					ThreadHistory struct {
						MessageIDs []string `json:"message_ids"`
					} `json:"thread_history"`
				} `json:"input_summary"`
			}
			require.NoError(t, json.Unmarshal(ev.Payload, &p))
			require.Equal(t, ids, p.InputSummary.ThreadHistory.MessageIDs)
		}
		require.Positive(t, requested)
		after, err := bAdmin.ThreadMessages(ctx, ctxID)
		require.NoError(t, err)
		var users []string
		for _, m := range after {
			if m.Role == "user" {
				users = append(users, m.Content)
			}
		}
		require.Equal(t, []string{"my name is Ada", "what is my name?"}, users)

		_, e = rpc(t, endpoint, tok.Secret, "message/send", map[string]any{"message": userMessage("lost",
			map[string]any{"contextId": "thr_unknown"})})
		require.EqualValues(t, -32000, e["code"])
		require.Equal(t, "not_found", e["data"].(map[string]any)["code"])
		require.Contains(t, e["message"], "contextId")
	})

	t.Run("node A calls node B", func(t *testing.T) {
		for _, allowed := range []bool{false, true} {
			var env []string
			if allowed {
				env = []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1"}
			}
			a := testnode.Start(t, testnode.Options{Env: env})
			aAdmin := &apiclient.Client{BaseURL: a.URL("orchestrator"), Token: a.Credentials().PlatformAdmin.Token, TenantID: a.Credentials().TenantID}
			require.NoError(t, aAdmin.Do(ctx, "PUT", aAdmin.BaseURL, "/v1/admin/tools/tool.a2a.node_b", map[string]any{"tool": map[string]any{
				"kind": "a2a", "name": "node_b", "description": "Asks node B's agent.",
				"url": endpoint + "/.well-known/agent-card.json", "secret": tok.Secret}}, nil))
			_, err := aAdmin.PutAgent(ctx, "agt_caller", map[string]any{"name": "Caller", "model_ref": "tier:fast",
				"tools": []string{"tool.a2a.node_b"}, "defaults": map[string]any{"on_tool_error": "fail"}})
			require.NoError(t, err)
			run, err := aAdmin.CreateRun(ctx, "agt_caller", "hello node B", nil)
			require.NoError(t, err)
			run = waitMemoryRun(ctx, t, aAdmin, run.RunID)
			if !allowed {
				// The SSRF guard refuses loopback unless allowed.
				require.Equal(t, store.RunFailed, run.Status)
				require.NotNil(t, run.Error)
				require.Contains(t, run.Error.Message, "AGENTOS_HTTP_FETCH_ALLOW")
				t.Logf("refused: %s: %s", run.Error.Code, run.Error.Message)
				continue
			}
			require.Equal(t, store.RunCompleted, run.Status, "%+v", run.Error)
			require.Contains(t, run.Output.Text, "Echo: hello node B", "node B's agent's answer")
			// On node B it is a run of agt_remote by A's service principal.
			runs, _, err := bAdmin.ListRuns(ctx, apiclient.RunFilter{AgentID: "agt_remote"})
			require.NoError(t, err)
			var found bool
			for _, r := range runs {
				if r.Input.Text == "hello node B" && r.PrincipalID == "svc_node_a" {
					found = true
				}
			}
			require.True(t, found, "node B ran the message for svc_node_a")
		}
	})
}

// TestA2ACancelRunningTask: a task whose run is held in a model call is
// working; tasks/cancel cancels the run (the task answers canceled) and a
// second cancel is TaskNotCancelable.
func TestA2ACancelRunningTask(t *testing.T) {
	t.Parallel()
	mpURL, _ := hangingModelPolicy(t)
	n := testnode.Start(t, testnode.Options{Services: []string{"orchestrator"}, Env: []string{"AGENTOS_MODEL_POLICY_URL=" + mpURL}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	token := n.Credentials().PlatformAdmin.Token
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: token, TenantID: n.Credentials().TenantID}
	_, err := admin.PutAgent(ctx, "agt_slow", map[string]any{"name": "Slow", "model_ref": "tier:fast"})
	require.NoError(t, err)
	endpoint := n.URL("orchestrator") + "/a2a/agt_slow"
	withTenant := func(method string, params any) (map[string]any, map[string]any) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": "r1", "method": method, "params": params})
		req, _ := http.NewRequest("POST", endpoint, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("X-Tenant-Id", "tnt_demo")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out struct {
			Result map[string]any `json:"result"`
			Error  map[string]any `json:"error"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out.Result, out.Error
	}
	task, e := withTenant("message/send", map[string]any{"message": userMessage("wait for me", nil),
		"configuration": map[string]any{"blocking": false}})
	require.Nil(t, e)
	id := task["id"].(string)
	// Wait until the run holds in its model call: working.
	for {
		got, e := withTenant("tasks/get", map[string]any{"id": id})
		require.Nil(t, e)
		if got["status"].(map[string]any)["state"] == "working" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the task never started working")
		case <-time.After(50 * time.Millisecond):
		}
	}
	got, e := withTenant("tasks/cancel", map[string]any{"id": id})
	require.Nil(t, e)
	require.Equal(t, "canceled", got["status"].(map[string]any)["state"])
	_, e = withTenant("tasks/cancel", map[string]any{"id": id})
	require.EqualValues(t, -32002, e["code"])
	run, err := admin.GetRun(ctx, id)
	require.NoError(t, err)
	require.Equal(t, store.RunCanceled, run.Status)
}
