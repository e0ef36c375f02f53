package interop

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// a2aNode returns the node binary of tests/interop/a2a and node itself, or
// skips (fails under AGENTOS_TEST_A2A_SDK=1, which .ci/run sets after its
// npm ci) when the @a2a-js/sdk install is missing.
func a2aSDK(t *testing.T) (dir, nodeBin string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	dir, err := filepath.Abs("a2a")
	require.NoError(t, err)
	required := os.Getenv("AGENTOS_TEST_A2A_SDK") == "1"
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@a2a-js", "sdk", "package.json")); err != nil {
		msg := "the A2A JS SDK is not installed: run (cd tests/interop/a2a && npm ci)"
		if required {
			t.Fatal(msg + " (AGENTOS_TEST_A2A_SDK=1 makes it required)")
		}
		t.Skip(msg)
	}
	nodeBin, err = exec.LookPath("node")
	if err != nil {
		if required {
			t.Fatal("node is not on PATH (AGENTOS_TEST_A2A_SDK=1 makes it required)")
		}
		t.Skip("node is not on PATH")
	}
	return dir, nodeBin
}

// TestA2AJSClientAgainstNode: the official @a2a-js/sdk client reads an
// agent's card, sends it a message (message/send) and gets the completed
// task with the run's output as its artifact, streams a second one
// (message/stream) with the first task's contextId (the same thread: its
// model input carries the first turn), gets it back (tasks/get), and sees
// the A2A errors for an unknown task and for canceling a finished one.
func TestA2AJSClientAgainstNode(t *testing.T) {
	t.Parallel()
	dir, nodeBin := a2aSDK(t)
	n := testnode.Start(t, testnode.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := n.Run(ctx, "tokens", "issue", "--tenant", "tnt_demo", "--principal", "usr_a2a",
		"--scopes", "runs:create,runs:read,runs:cancel,agents:read", "--json")
	require.NoError(t, err, out)
	var issued struct {
		Token struct {
			Secret string `json:"secret"`
		} `json:"token"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &issued), out)
	creds := n.Credentials()
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: creds.PlatformAdmin.Token, TenantID: creds.TenantID}
	_, err = admin.PutAgent(ctx, "agt_a2a", map[string]any{"name": "A2A agent", "description": "Echoes over A2A.", "model_ref": "tier:fast"})
	require.NoError(t, err)

	cmd := exec.CommandContext(ctx, nodeBin, "client.mjs")
	cmd.Dir = dir
	// Only what node needs: the script reads no AgentOS setting.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"A2A_AGENT_URL=" + n.URL("orchestrator") + "/a2a/agt_a2a", "A2A_TOKEN=" + issued.Token.Secret}
	raw, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("node client.mjs: %v\n%s\n%s", err, raw, ee.Stderr)
	}
	require.NoError(t, err)
	var got struct {
		Card struct {
			Name, URL string
			Streaming bool
			Schemes   []string
		}
		Send struct {
			Kind, ID, ContextID, State, Artifact string
		}
		Stream struct {
			Kinds, States       []string
			Final               bool
			Artifact, ContextID string
		}
		Get           struct{ ID, State string }
		NotFound      string
		NotCancelable string
	}
	require.NoError(t, json.Unmarshal(raw, &got), string(raw))
	t.Logf("a2a-js client saw: %s", raw)
	require.Equal(t, "A2A agent", got.Card.Name)
	require.Equal(t, n.URL("orchestrator")+"/a2a/agt_a2a", got.Card.URL)
	require.True(t, got.Card.Streaming)
	require.Contains(t, got.Card.Schemes, "bearer")

	require.Equal(t, "task", got.Send.Kind)
	require.Equal(t, "completed", got.Send.State)
	require.Contains(t, got.Send.Artifact, "hello from the a2a-js client")
	run, err := admin.GetRun(ctx, got.Send.ID)
	require.NoError(t, err, "the task id is the run id")
	require.Equal(t, store.RunCompleted, run.Status)
	require.Equal(t, "agt_a2a", run.AgentID)
	require.JSONEq(t, `"`+got.Send.ContextID+`"`, string(mustJSON(t, contextID(t, run))))

	require.Equal(t, "task", got.Stream.Kinds[0])
	require.Equal(t, "status-update", got.Stream.Kinds[len(got.Stream.Kinds)-1])
	require.Contains(t, got.Stream.Kinds, "artifact-update")
	require.True(t, got.Stream.Final)
	require.Equal(t, "completed", got.Stream.States[len(got.Stream.States)-1])
	require.Contains(t, got.Stream.Artifact, "streamed from the a2a-js client")
	require.Equal(t, got.Send.ContextID, got.Stream.ContextID, "the second message continued the context")
	// The context is a thread: the streamed (second) task's run is on it,
	// and its model input carried the first message's turn.
	require.Equal(t, run.ThreadID, got.Send.ContextID)
	streamed, err := admin.GetRun(ctx, got.Get.ID)
	require.NoError(t, err)
	require.Equal(t, got.Send.ContextID, streamed.ThreadID)
	evs, err := admin.ListEvents(ctx, streamed.RunID)
	require.NoError(t, err)
	var history []string
	for _, ev := range evs {
		if ev.Type == store.EventModelRequested {
			var p struct {
				InputSummary struct {
					ThreadHistory struct {
						MessageIDs []string `json:"message_ids"`
					} `json:"thread_history"`
				} `json:"input_summary"`
			}
			require.NoError(t, json.Unmarshal(ev.Payload, &p))
			history = p.InputSummary.ThreadHistory.MessageIDs
			break
		}
	}
	msgs, err := admin.ThreadMessages(ctx, got.Send.ContextID)
	require.NoError(t, err)
	require.Equal(t, "hello from the a2a-js client", msgs[0].Content)
	require.NotEmpty(t, history)
	require.Equal(t, msgs[0].MessageID, history[0], "the second turn's model input starts with the first turn")
	require.Equal(t, "completed", got.Get.State)
	require.Equal(t, "TaskNotFoundJSONRPCError", got.NotFound)
	require.Equal(t, "TaskNotCancelableJSONRPCError", got.NotCancelable)
}

func contextID(t *testing.T, run store.Run) string {
	var c struct {
		A2A struct {
			ContextID string `json:"context_id"`
		} `json:"a2a"`
	}
	require.NoError(t, json.Unmarshal(run.Context, &c), string(run.Context))
	return c.A2A.ContextID
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestA2AToolCallsJSServer: an agent whose tool is a remote A2A agent
// (kind "a2a", registered by the tenant) calls an @a2a-js/sdk server
// through the SSRF guard (loopback allowed by AGENTOS_HTTP_FETCH_ALLOW)
// and completes with the remote's answer.
func TestA2AToolCallsJSServer(t *testing.T) {
	t.Parallel()
	dir, nodeBin := a2aSDK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := exec.CommandContext(ctx, nodeBin, "server.mjs")
	srv.Dir = dir
	stdin, err := srv.StdinPipe()
	require.NoError(t, err)
	stdout, err := srv.StdoutPipe()
	require.NoError(t, err)
	srv.Stderr = os.Stderr
	require.NoError(t, srv.Start())
	t.Cleanup(func() { _ = stdin.Close(); _ = srv.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	port, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTENING ")
	require.True(t, ok, line)

	n := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_HTTP_FETCH_ALLOW=127.0.0.1"}})
	creds := n.Credentials()
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: creds.PlatformAdmin.Token, TenantID: creds.TenantID}
	require.NoError(t, admin.Do(ctx, "PUT", admin.BaseURL, "/v1/admin/tools/tool.a2a.echo", map[string]any{"tool": map[string]any{
		"kind": "a2a", "name": "remote_echo", "description": "Asks the remote echo agent.",
		"url": "http://127.0.0.1:" + port + "/.well-known/agent-card.json"}}, nil))
	_, err = admin.PutAgent(ctx, "agt_a2a_caller", map[string]any{"name": "Caller", "model_ref": "tier:fast",
		"tools": []string{"tool.a2a.echo"}})
	require.NoError(t, err)
	run, err := admin.CreateRun(ctx, "agt_a2a_caller", "hello remote agent", nil)
	require.NoError(t, err)
	for !run.Status.Terminal() {
		time.Sleep(50 * time.Millisecond)
		run, err = admin.GetRun(ctx, run.RunID)
		require.NoError(t, err)
	}
	require.Equal(t, store.RunCompleted, run.Status, "%+v", run.Error)
	// The builtin model answers with the tool's text: the remote's artifact.
	require.Contains(t, run.Output.Text, "remote agent got: hello remote agent")
	steps, err := admin.ListEvents(ctx, run.RunID)
	require.NoError(t, err)
	var sawTool bool
	for _, e := range steps {
		if strings.Contains(string(mustJSON(t, e)), `"state":"completed"`) {
			sawTool = true
		}
	}
	require.True(t, sawTool, "a tool result with the remote task's state completed")
}
