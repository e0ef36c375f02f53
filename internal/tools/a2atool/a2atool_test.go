package a2atool_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/a2atool"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/toolstest"
)

// remote is a scripted A2A server: its card names transport and its
// message/send answers answer; tasks/get answers the task completed.
type remote struct {
	transport string
	answer    string
	gets      atomic.Int32
	auth      atomic.Value
	sent      atomic.Value
}

func (rm *remote) serve(t *testing.T) *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rm.auth.Store(r.Header.Get("Authorization"))
		if r.Method == "GET" {
			_, _ = io.WriteString(w, `{"name":"r","url":"`+srv.URL+`/rpc","preferredTransport":"`+rm.transport+`","protocolVersion":"0.3.0","skills":[]}`)
			return
		}
		var req struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		require.NoError(t, json.NewDecoder(r.Body).Decode(&req))
		switch req.Method {
		case "message/send":
			rm.sent.Store(string(req.Params))
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,`+rm.answer+`}`)
		case "tasks/get":
			rm.gets.Add(1)
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"kind":"task","id":"t1","contextId":"c1","status":{"state":"completed"},
				"artifacts":[{"artifactId":"a","parts":[{"kind":"text","text":"done later"}]}]}}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newTool(t *testing.T, rm *remote, secret string) tools.Tool {
	srv := rm.serve(t)
	allow, err := builtin.ParseAllow("127.0.0.1")
	require.NoError(t, err)
	return a2atool.New(store.ToolDef{ToolID: "tool.a2a.r", Name: "r", Description: "remote", Kind: a2atool.Kind,
		URL: srv.URL + "/card.json", Secret: secret}, builtin.GuardedClient(builtin.HTTPFetchConfig{Allow: allow}))
}

func call(t *testing.T, tl tools.Tool, input string) (json.RawMessage, error) {
	return tools.InvokeTool(t.Context(), tl, toolstest.Call("tnt_a", json.RawMessage(input)), 0)
}

func TestCompletedTask(t *testing.T) {
	t.Parallel()
	rm := &remote{transport: "JSONRPC", answer: `"result":{"kind":"task","id":"t1","contextId":"c1","status":{"state":"completed"},
		"artifacts":[{"artifactId":"a","parts":[{"kind":"text","text":"hi back"},{"kind":"data","data":{"n":1}}]}]}`}
	tl := newTool(t, rm, "remote-bearer-token-123")
	out, err := call(t, tl, `{"text":"hi","context_id":"c1"}`)
	require.NoError(t, err)
	var o a2atool.Output
	require.NoError(t, json.Unmarshal(out, &o))
	require.Equal(t, a2atool.Output{TaskID: "t1", ContextID: "c1", State: "completed", Text: "hi back\n{\"n\":1}"}, a2atool.Output{TaskID: o.TaskID, ContextID: o.ContextID, State: o.State, Text: o.Text})
	require.Equal(t, "Bearer remote-bearer-token-123", rm.auth.Load())
	sent := rm.sent.Load().(string)
	require.Contains(t, sent, `"messageId":"agentos-run_toolstest-tcall_toolstest"`, "the message id is the run's tool call")
	require.Contains(t, sent, `"contextId":"c1"`)
	require.Contains(t, sent, `"blocking":true`)
}

func TestWorkingTaskIsPolled(t *testing.T) {
	t.Parallel()
	rm := &remote{transport: "", answer: `"result":{"kind":"task","id":"t1","contextId":"c1","status":{"state":"working"}}`}
	out, err := call(t, newTool(t, rm, ""), `{"text":"hi"}`)
	require.NoError(t, err)
	require.Contains(t, string(out), "done later")
	require.EqualValues(t, 1, rm.gets.Load())
	require.Equal(t, "", rm.auth.Load(), "no secret, no Authorization")
}

func TestMessageAnswer(t *testing.T) {
	t.Parallel()
	rm := &remote{transport: "JSONRPC", answer: `"result":{"kind":"message","messageId":"m","role":"agent","contextId":"c9","parts":[{"kind":"text","text":"direct"}]}`}
	out, err := call(t, newTool(t, rm, ""), `{"text":"hi"}`)
	require.NoError(t, err)
	require.JSONEq(t, `{"context_id":"c9","state":"completed","text":"direct"}`, string(out))
}

func TestRemoteFailures(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		rm   *remote
		code errs.Code
		msg  string
	}{
		"rpc error":   {&remote{transport: "JSONRPC", answer: `"error":{"code":-32602,"message":"bad text"}`}, errs.DependencyUnavailable, "bad text"},
		"failed task": {&remote{transport: "JSONRPC", answer: `"result":{"kind":"task","id":"t1","contextId":"c","status":{"state":"failed","message":{"kind":"message","messageId":"x","role":"agent","parts":[{"kind":"text","text":"boom"}]}}}`}, errs.DependencyUnavailable, "ended failed: boom"},
		"grpc only":   {&remote{transport: "GRPC"}, errs.DependencyUnavailable, "only JSONRPC"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := call(t, newTool(t, tc.rm, ""), `{"text":"hi"}`)
			require.Error(t, err)
			require.Equal(t, tc.code, errs.CodeOf(err), "%v", err)
			require.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestSSRFGuard(t *testing.T) {
	t.Parallel()
	rm := &remote{transport: "JSONRPC"}
	srv := rm.serve(t)
	tl := a2atool.New(store.ToolDef{ToolID: "tool.a2a.r", Name: "r", Description: "remote", Kind: a2atool.Kind, URL: srv.URL + "/card.json"},
		builtin.GuardedClient(builtin.HTTPFetchConfig{}))
	_, err := call(t, tl, `{"text":"hi"}`)
	require.Equal(t, errs.Forbidden, errs.CodeOf(err), "%v", err)
	require.True(t, strings.Contains(err.Error(), "AGENTOS_HTTP_FETCH_ALLOW"), "%v", err)
	require.Nil(t, rm.auth.Load(), "nothing reached the server")
}

func TestDefaultSchema(t *testing.T) {
	t.Parallel()
	spec := a2atool.New(store.ToolDef{ToolID: "tool.a2a.r", Name: "r", Description: "d", Kind: a2atool.Kind, URL: "http://x"}, nil).Spec()
	require.JSONEq(t, string(a2atool.DefaultInputSchema), string(spec.InputSchema))
	require.NoError(t, tools.CheckSpec(spec))
}
