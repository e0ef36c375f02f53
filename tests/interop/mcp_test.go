package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/apiclient"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/tests/testnode"
)

// mcpNpm is tests/interop/mcp with its npm packages installed (.ci/run
// runs npm ci there); the test is skipped, saying how to install them,
// when they are not.
type mcpNpm struct {
	dir, node string
}

func (m mcpNpm) entry(pkg string) string {
	return filepath.Join(m.dir, "node_modules", "@modelcontextprotocol", pkg, "dist", "index.js")
}

func needMCPNpm(t *testing.T) mcpNpm {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	dir, err := filepath.Abs("mcp")
	require.NoError(t, err)
	required := os.Getenv("AGENTOS_TEST_MCP_SDK") == "1"
	for _, p := range []string{"server-everything", "server-memory", "sdk"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", p, "package.json")); err != nil {
			msg := fmt.Sprintf("the npm MCP packages are not installed: run (cd tests/interop/mcp && npm ci) (%v)", err)
			if required {
				t.Fatal(msg + " (AGENTOS_TEST_MCP_SDK=1 makes them required)")
			}
			t.Skip(msg)
		}
	}
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node must be on PATH when tests/interop/mcp is installed")
	return mcpNpm{dir: dir, node: node}
}

// nodeEnv is the environment of the Node.js processes the MCP tests start:
// PATH and HOME only (no AGENTOS_* setting reaches them).
func nodeEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
}

// startEverythingHTTP runs server-everything's streamable HTTP transport on
// a free loopback port and returns its /mcp URL and process.
func startEverythingHTTP(t *testing.T, m mcpNpm) (string, *exec.Cmd) {
	t.Helper()
	_, port, err := net.SplitHostPort(testnode.FreeAddr(t))
	require.NoError(t, err)
	cmd := exec.Command(m.node, "--import", "./loopback.mjs", m.entry("server-everything"), "streamableHttp")
	cmd.Dir = m.dir
	cmd.Env = append(nodeEnv(), "PORT="+port)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "http://127.0.0.1:" + port + "/mcp"
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "server-everything (streamable HTTP) did not listen: %s", &stderr)
	return url, cmd
}

// runToEnd creates a run and waits for it to end; it returns the run and
// its events.
func runToEnd(t *testing.T, c *apiclient.Client, agentID, text string) (store.Run, []store.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := c.CreateRun(ctx, agentID, text, nil)
	require.NoError(t, err)
	var evs []store.Event
	require.NoError(t, c.StreamEvents(ctx, run.RunID, 0, func(e store.Event) error {
		evs = append(evs, e)
		return nil
	}))
	run, err = c.GetRun(ctx, run.RunID)
	require.NoError(t, err)
	return run, evs
}

type toolDone struct {
	ToolID string          `json:"tool_id"`
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func toolCalls(t *testing.T, evs []store.Event) []toolDone {
	t.Helper()
	var out []toolDone
	for _, e := range evs {
		if e.Type == store.EventToolCallCompleted {
			var d toolDone
			require.NoError(t, json.Unmarshal(e.Payload, &d))
			out = append(out, d)
		}
	}
	return out
}

// findProcessWithEnv returns the pid of the process whose environment
// holds kv (a stdio MCP server the node started, marked by the test).
func findProcessWithEnv(t *testing.T, kv string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			n, err := strconv.Atoi(d.Name())
			if err != nil {
				continue
			}
			env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
			if err == nil && bytes.Contains(append([]byte{0}, env...), []byte("\x00"+kv+"\x00")) {
				pid = n
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "no process with %s", kv)
	return pid
}

// TestMCPNpmServersInAgentRuns: real npm MCP servers registered on a real
// node: server-everything over stdio and over streamable HTTP, and
// server-memory over stdio. An agent run calls mcp.everything.echo, a
// server-memory tool and the HTTP server's echo and completes; another
// tenant neither sees nor calls them; the stdio server killed mid-call
// gives that call a clear error and the next run's call works; the HTTP
// server gone gives dependency_unavailable naming it.
func TestMCPNpmServersInAgentRuns(t *testing.T) {
	t.Parallel()
	m := needMCPNpm(t)
	httpURL, httpCmd := startEverythingHTTP(t, m)
	n := testnode.Start(t, testnode.Options{Env: []string{"AGENTOS_MCP_HTTP_ALLOW=127.0.0.1"}})
	creds := n.Credentials()
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: creds.PlatformAdmin.Token, TenantID: creds.TenantID}
	ctx := context.Background()
	mark := fmt.Sprintf("MCP_TEST_MARK=%d", time.Now().UnixNano())
	_, err := admin.PutMCPServer(ctx, "everything", map[string]any{"transport": "stdio", "command": m.node,
		"args": []string{m.entry("server-everything"), "stdio"}, "env": map[string]string{strings.Split(mark, "=")[0]: strings.Split(mark, "=")[1]}})
	require.NoError(t, err)
	_, err = admin.PutMCPServer(ctx, "memory", map[string]any{"transport": "stdio", "command": m.node,
		"args": []string{m.entry("server-memory")}, "env": map[string]string{"MEMORY_FILE_PATH": filepath.Join(t.TempDir(), "memory.jsonl")}})
	require.NoError(t, err)
	srv, err := admin.PutMCPServer(ctx, "web", map[string]any{"url": httpURL, "headers": map[string]string{"X-Caller": "agentos-test"}})
	require.NoError(t, err)
	require.Equal(t, []string{"X-Caller"}, srv.HeaderNames)

	got, err := admin.GetMCPServer(ctx, "everything")
	require.NoError(t, err)
	require.Equal(t, "available", got.Status, "%+v", got.Error)
	require.Contains(t, got.Tools, "mcp.everything.echo")
	registry, unavailable, err := admin.ListRegistryTools(ctx)
	require.NoError(t, err)
	require.Empty(t, unavailable)
	schemas := map[string]map[string]any{}
	for _, tl := range registry {
		schemas[tl.ToolID] = tl.InputSchema
	}
	for _, id := range []string{"mcp.everything.echo", "mcp.memory.search_nodes", "mcp.memory.create_entities", "mcp.web.echo"} {
		require.Contains(t, schemas, id)
	}
	require.Equal(t, []any{"message"}, schemas["mcp.everything.echo"]["required"])

	_, err = admin.PutAgent(ctx, "agt_mcp", map[string]any{"name": "MCP user", "model_ref": "tier:fast",
		"instructions": "Use the tools the user names.",
		"tools":        []string{"mcp.everything.echo", "mcp.memory.search_nodes", "mcp.web.echo"}})
	require.NoError(t, err)
	text := "call mcp.everything.echo, then mcp.memory.search_nodes, then mcp.web.echo"
	run, evs := runToEnd(t, admin, "agt_mcp", text)
	require.Equal(t, store.RunCompleted, run.Status, "%+v", run.Error)
	calls := toolCalls(t, evs)
	require.Len(t, calls, 3, "%+v", calls)
	for i, id := range []string{"mcp.everything.echo", "mcp.memory.search_nodes", "mcp.web.echo"} {
		require.Equal(t, id, calls[i].ToolID)
		require.Equal(t, "ok", calls[i].Status, "%s: %+v", id, calls[i].Error)
	}
	require.Contains(t, string(calls[0].Output), "Echo: "+text)
	require.Contains(t, string(calls[1].Output), "entities")
	require.Contains(t, run.Output.Text, "Echo: Echo: "+text)

	t.Run("another tenant neither sees nor calls them", func(t *testing.T) {
		_, err := admin.CreateTenant(ctx, map[string]any{"tenant_id": "tnt_mcp_other", "name": "other"})
		require.NoError(t, err)
		other := &apiclient.Client{BaseURL: admin.BaseURL, Token: admin.Token, TenantID: "tnt_mcp_other"}
		list, err := other.ListMCPServers(ctx)
		require.NoError(t, err)
		require.Empty(t, list)
		_, err = other.GetMCPServer(ctx, "everything")
		require.True(t, errors.Is(err, errs.ErrNotFound), "%v", err)
		registry, _, err := other.ListRegistryTools(ctx)
		require.NoError(t, err)
		for _, tl := range registry {
			require.False(t, strings.HasPrefix(tl.ToolID, "mcp."), tl.ToolID)
		}
		_, err = other.PutAgent(ctx, "agt_mcp", map[string]any{"name": "thief", "model_ref": "tier:fast",
			"tools": []string{"mcp.everything.echo"}})
		require.True(t, errors.Is(err, errs.ErrInvalid), "%v", err)
		require.Contains(t, err.Error(), `unknown tool "mcp.everything.echo"`)
	})

	t.Run("stdio server killed mid-call, then restarted", func(t *testing.T) {
		_, err := admin.PutAgent(ctx, "agt_long", map[string]any{"name": "long", "model_ref": "tier:fast",
			"tools": []string{"mcp.everything.trigger-long-running-operation"}})
		require.NoError(t, err)
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		r, err := admin.CreateRun(cctx, "agt_long", "take your time", nil)
		require.NoError(t, err)
		var evs []store.Event
		killed := false
		require.NoError(t, admin.StreamEvents(cctx, r.RunID, 0, func(e store.Event) error {
			evs = append(evs, e)
			if e.Type == store.EventToolCallRequested && !killed {
				// The event is on record just before the call is sent;
				// the operation then lasts 10 s (its default duration).
				// Killing 2 s in puts the kill inside the call.
				killed = true
				pid := findProcessWithEnv(t, mark)
				time.Sleep(2 * time.Second)
				require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
			}
			return nil
		}))
		require.True(t, killed)
		calls := toolCalls(t, evs)
		require.Len(t, calls, 1)
		require.Equal(t, "error", calls[0].Status)
		require.Equal(t, "dependency_unavailable", calls[0].Error.Code)
		require.Contains(t, calls[0].Error.Message, "MCP server everything (stdio) is unavailable")
		r, err = admin.GetRun(cctx, r.RunID)
		require.NoError(t, err)
		require.Equal(t, store.RunCompleted, r.Status, "the agent goes on after a tool error (on_tool_error continue)")

		run, evs := runToEnd(t, admin, "agt_mcp", "call mcp.everything.echo again")
		require.Equal(t, store.RunCompleted, run.Status)
		calls = toolCalls(t, evs)
		require.Len(t, calls, 1)
		require.Equal(t, "ok", calls[0].Status, "the next call starts the server again: %+v", calls[0].Error)
	})

	t.Run("HTTP server gone: dependency_unavailable naming it", func(t *testing.T) {
		require.NoError(t, httpCmd.Process.Kill())
		_ = httpCmd.Wait()
		run, evs := runToEnd(t, admin, "agt_mcp", "call mcp.web.echo")
		require.Equal(t, store.RunCompleted, run.Status)
		calls := toolCalls(t, evs)
		require.Len(t, calls, 1)
		require.Equal(t, "error", calls[0].Status)
		require.Equal(t, "dependency_unavailable", calls[0].Error.Code)
		require.Contains(t, calls[0].Error.Message, "MCP server web is unavailable")
	})
}

// TestMCPEndpointClients: the official Go SDK client and the official
// Node SDK client (@modelcontextprotocol/sdk) list a real node's agents
// as MCP tools and run one through /mcp.
func TestMCPEndpointClients(t *testing.T) {
	t.Parallel()
	m := needMCPNpm(t)
	n := testnode.Start(t, testnode.Options{})
	creds := n.Credentials()
	admin := &apiclient.Client{BaseURL: n.URL("orchestrator"), Token: creds.TenantAdmin.Token}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := admin.PutAgent(ctx, "agt_mcp_echo", map[string]any{"name": "Echo over MCP", "description": "Echoes its input.",
		"model_ref": "tier:fast", "tools": []string{"tool.echo"}})
	require.NoError(t, err)
	token := creds.TenantAdmin.Token
	// A thread with one finished turn: a resource agentos://threads/{id}.
	th, err := admin.CreateThread(ctx, map[string]string{"user": "u_mcp_interop"})
	require.NoError(t, err)
	turn, err := admin.CreateThreadRun(ctx, th.ThreadID, "agt_mcp_echo", "hello thread", "", nil)
	require.NoError(t, err)
	for turn.Status != store.RunCompleted {
		require.False(t, turn.Status.Terminal(), "the thread's run ended %s", turn.Status)
		select {
		case <-ctx.Done():
			t.Fatal("the thread's run did not complete")
		case <-time.After(50 * time.Millisecond):
		}
		turn, err = admin.GetRun(ctx, turn.RunID)
		require.NoError(t, err)
	}
	threadURI := "agentos://threads/" + th.ThreadID

	t.Run("Go SDK", func(t *testing.T) {
		c := mcp.NewClient(&mcp.Implementation{Name: "agentos-interop-go", Version: "1"}, &mcp.ClientOptions{})
		s, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: n.URL("orchestrator") + "/mcp",
			HTTPClient: &http.Client{Transport: bearer{token: token}}}, nil)
		require.NoError(t, err)
		defer s.Close()
		list, err := s.ListTools(ctx, nil)
		require.NoError(t, err)
		var names []string
		for _, tl := range list.Tools {
			names = append(names, tl.Name)
		}
		require.Contains(t, names, "run_agent_agt_mcp_echo")
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "run_agent_agt_mcp_echo", Arguments: map[string]any{"input": "hello from go"}})
		require.NoError(t, err)
		require.False(t, res.IsError)
		require.Contains(t, res.Content[0].(*mcp.TextContent).Text, "hello from go")
		rr, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: threadURI})
		require.NoError(t, err)
		var thread struct {
			Thread   store.Thread          `json:"thread"`
			Messages []store.ThreadMessage `json:"messages"`
		}
		require.NoError(t, json.Unmarshal([]byte(rr.Contents[0].Text), &thread))
		require.Equal(t, th.ThreadID, thread.Thread.ThreadID)
		require.Equal(t, "hello thread", thread.Messages[0].Content)
	})

	t.Run("Node SDK", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, m.node, "client.mjs")
		cmd.Dir = m.dir
		cmd.Env = append(nodeEnv(), "MCP_URL="+n.URL("orchestrator")+"/mcp", "MCP_TOKEN="+token, "MCP_AGENT=agt_mcp_echo", "MCP_THREAD="+th.ThreadID)
		raw, err := cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("node client.mjs: %v\n%s\n%s", err, raw, ee.Stderr)
		}
		require.NoError(t, err)
		var out struct {
			Server struct{ Name string } `json:"server"`
			Tools  []struct {
				Name     string   `json:"name"`
				Required []string `json:"required"`
			} `json:"tools"`
			Result struct {
				IsError    bool           `json:"isError"`
				Text       string         `json:"text"`
				Structured map[string]any `json:"structured"`
			} `json:"result"`
			Progress []string `json:"progress"`
			Resource struct {
				Run store.Run `json:"run"`
			} `json:"resource"`
			Listed []string `json:"listed"`
			Thread struct {
				Thread   store.Thread          `json:"thread"`
				Messages []store.ThreadMessage `json:"messages"`
			} `json:"thread"`
		}
		require.NoError(t, json.Unmarshal(raw, &out), string(raw))
		require.Equal(t, "agentos", out.Server.Name)
		var found bool
		for _, tl := range out.Tools {
			if tl.Name == "run_agent_agt_mcp_echo" {
				found = true
				require.Equal(t, []string{"input"}, tl.Required)
			}
		}
		require.True(t, found, "%+v", out.Tools)
		require.False(t, out.Result.IsError, out.Result.Text)
		require.Contains(t, out.Result.Text, "hello from the node mcp client")
		require.Equal(t, "completed", out.Result.Structured["status"])
		require.NotEmpty(t, out.Progress, "progress notifications per run event")
		require.True(t, strings.HasPrefix(out.Progress[0], store.EventRunCreated), out.Progress)
		require.Equal(t, store.RunCompleted, out.Resource.Run.Status)
		require.Equal(t, out.Result.Structured["run_id"], out.Resource.Run.RunID)
		require.Contains(t, out.Listed, threadURI)
		require.Equal(t, th.ThreadID, out.Thread.Thread.ThreadID)
		require.Equal(t, "user", out.Thread.Messages[0].Role)
		require.Equal(t, "hello thread", out.Thread.Messages[0].Content)
	})
}

// bearer sends an API token with every request.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}
