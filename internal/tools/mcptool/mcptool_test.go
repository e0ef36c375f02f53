package mcptool

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/builtin"
)

type greetIn struct {
	Name string `json:"name" jsonschema:"who to greet"`
}

// newGoServer serves an in-process MCP server (the Go SDK's own) over
// streamable HTTP on loopback.
func newGoServer(t testing.TB) (*mcp.Server, *httptest.Server) {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "test-server", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "greet", Description: "Greets someone."},
		func(_ context.Context, req *mcp.CallToolRequest, in greetIn) (*mcp.CallToolResult, any, error) {
			if in.Name == "nobody" {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "nobody to greet"}}}, nil, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "hello " + in.Name}}}, nil, nil
		})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(hs.Close)
	return srv, hs
}

func guarded(t testing.TB, allow string) *http.Client {
	t.Helper()
	rules, err := builtin.ParseAllow(allow)
	require.NoError(t, err)
	return builtin.GuardedClient(builtin.HTTPFetchConfig{Allow: rules})
}

func newManager(t *testing.T, allow string) *Manager {
	t.Helper()
	m, err := New(Config{HTTPClient: guarded(t, allow), RetryAfter: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func httpDef(tenantID, name, url string) store.MCPServer {
	return store.MCPServer{TenantID: tenantID, Name: name, Transport: store.MCPTransportHTTP, URL: url, TimeoutMs: 10000}
}

func requireCode(t *testing.T, err error, code errs.Code) *errs.Error {
	t.Helper()
	require.Error(t, err)
	e := errs.As(err)
	require.Equal(t, code, e.Code, "%v", err)
	return e
}

func TestSplitToolID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string][2]string{
		"mcp.everything.echo":        {"everything", "echo"},
		"mcp.memory.create_entities": {"memory", "create_entities"},
		"mcp.fs.dir.list":            {"fs", "dir.list"},
	} {
		s, tl, ok := SplitToolID(id)
		require.True(t, ok, id)
		require.Equal(t, want, [2]string{s, tl})
		require.Equal(t, id, ToolID(s, tl))
	}
	for _, id := range []string{"tool.echo", "mcp.", "mcp.x", "mcp.Upper.echo", "mcp.x.", "mcp.x.a b"} {
		_, _, ok := SplitToolID(id)
		require.False(t, ok, id)
	}
}

// TestHTTPServerToolsCallsAndListChanged: a streamable-HTTP server's tools
// become tools.Tool with their schemas, calls go through tools.InvokeTool,
// a tool error is a clear error, and a tool added later appears after the
// server's notifications/tools/list_changed.
func TestHTTPServerToolsCallsAndListChanged(t *testing.T) {
	t.Parallel()
	srv, hs := newGoServer(t)
	m := newManager(t, "127.0.0.1")
	def := httpDef("tnt_a", "greeter", hs.URL)
	ctx := context.Background()

	list, err := m.Tools(ctx, def)
	require.NoError(t, err)
	require.Len(t, list, 1)
	spec := list[0].Spec()
	require.Equal(t, "mcp.greeter.greet", spec.ToolID)
	require.Equal(t, "mcp_greeter_greet", spec.Name)
	require.Equal(t, "Greets someone.", spec.Description)
	require.JSONEq(t, `"string"`, string(mustGet(t, spec.InputSchema, "properties", "name", "type")))
	require.NoError(t, tools.CheckSpec(tools.Spec{ToolID: "tool.x", Name: spec.Name, Description: spec.Description,
		InputSchema: spec.InputSchema}), "the schema is one the tool port accepts")

	out, err := tools.InvokeTool(ctx, list[0], tools.Call{TenantID: "tnt_a", Input: json.RawMessage(`{"name":"ada"}`)}, 0)
	require.NoError(t, err)
	require.JSONEq(t, `{"content":[{"type":"text","text":"hello ada"}]}`, string(out))

	_, err = tools.InvokeTool(ctx, list[0], tools.Call{TenantID: "tnt_a", Input: json.RawMessage(`{"name":"nobody"}`)}, 0)
	e := requireCode(t, err, errs.InvalidRequest)
	require.Contains(t, e.Message, "nobody to greet")
	require.Contains(t, e.Message, "greeter")

	_, found := m.Tool(ctx, def, "wave")
	require.False(t, found)
	mcp.AddTool(srv, &mcp.Tool{Name: "wave", Description: "Waves."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "~"}}}, nil, nil
		})
	require.Eventually(t, func() bool {
		_, found := m.Tool(ctx, def, "wave")
		return found
	}, 10*time.Second, 20*time.Millisecond, "list_changed makes the new tool appear")
}

func mustGet(t *testing.T, raw json.RawMessage, path ...string) json.RawMessage {
	t.Helper()
	for _, p := range path {
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(raw, &m), string(raw))
		raw = m[p]
	}
	return raw
}

// TestHTTPServerSSRFGuard: without an allow-list entry a loopback MCP URL
// is refused by the guard, as tool.http.fetch's would be.
func TestHTTPServerSSRFGuard(t *testing.T) {
	t.Parallel()
	_, hs := newGoServer(t)
	m := newManager(t, "")
	_, err := m.Tools(context.Background(), httpDef("tnt_a", "greeter", hs.URL))
	e := requireCode(t, err, errs.DependencyUnavailable)
	require.Contains(t, e.Message, "MCP server greeter")
}

// TestHTTPServerDownIsUnavailable: a server that goes away is marked
// unavailable: the call fails with dependency_unavailable naming the
// server, and so does the next one, at once, until RetryAfter passes.
func TestHTTPServerDownIsUnavailable(t *testing.T) {
	t.Parallel()
	_, hs := newGoServer(t)
	m := newManager(t, "127.0.0.1")
	def := httpDef("tnt_a", "greeter", hs.URL)
	ctx := context.Background()
	tl, found := m.Tool(ctx, def, "greet")
	require.True(t, found)
	hs.CloseClientConnections()
	hs.Close()

	_, err := tools.InvokeTool(ctx, tl, tools.Call{Input: json.RawMessage(`{"name":"ada"}`)}, 0)
	e := requireCode(t, err, errs.DependencyUnavailable)
	require.Contains(t, e.Message, "MCP server greeter is unavailable")
	require.Equal(t, "greeter", e.Details["mcp_server"])

	again, found := m.Tool(ctx, def, "greet")
	require.True(t, found, "an unavailable server's tool still resolves, so its calls say why they fail")
	_, err = tools.InvokeTool(ctx, again, tools.Call{Input: json.RawMessage(`{}`)}, 0)
	e = requireCode(t, err, errs.DependencyUnavailable)
	require.Contains(t, e.Message, "MCP server greeter")
}

// TestTenantsHaveTheirOwnSessions: two tenants naming a server alike get
// two sessions; forgetting one leaves the other.
func TestTenantsHaveTheirOwnSessions(t *testing.T) {
	t.Parallel()
	_, hs := newGoServer(t)
	m := newManager(t, "127.0.0.1")
	ctx := context.Background()
	_, err := m.Tools(ctx, httpDef("tnt_a", "greeter", hs.URL))
	require.NoError(t, err)
	_, err = m.Tools(ctx, httpDef("tnt_b", "greeter", hs.URL))
	require.NoError(t, err)
	m.mu.Lock()
	a, b := m.conns[connKey{"tnt_a", "greeter"}], m.conns[connKey{"tnt_b", "greeter"}]
	m.mu.Unlock()
	require.NotSame(t, a, b)
	m.Forget("tnt_a", "greeter")
	b.mu.Lock()
	require.NotNil(t, b.session)
	b.mu.Unlock()
}

// npmServer returns the path of an installed npm MCP server's entry point,
// skipping when tests/interop/mcp was not installed (.ci/run installs it).
func npmServer(t testing.TB, pkg, entry string) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	p, err := filepath.Abs(filepath.Join("..", "..", "..", "tests", "interop", "mcp", "node_modules", "@modelcontextprotocol", pkg, entry))
	require.NoError(t, err)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("npm MCP servers not installed: run `npm ci` in tests/interop/mcp (%v)", err)
	}
	return p
}

// TestStdioServerKilledMidCall: the real server-everything over stdio; its
// process killed during a long call gives that call a clear
// dependency_unavailable error naming the server, and the next call starts
// it again and works.
func TestStdioServerKilledMidCall(t *testing.T) {
	t.Parallel()
	entry := npmServer(t, "server-everything", "dist/index.js")
	m := newManager(t, "")
	def := store.MCPServer{TenantID: "tnt_a", Name: "everything", Transport: store.MCPTransportStdio,
		Command: "node", Args: []string{entry, "stdio"}, TimeoutMs: 60000}
	ctx := context.Background()

	echo, found := m.Tool(ctx, def, "echo")
	require.True(t, found)
	out, err := tools.InvokeTool(ctx, echo, tools.Call{Input: json.RawMessage(`{"message":"one"}`)}, 0)
	require.NoError(t, err)
	require.Contains(t, string(out), "Echo: one")

	long, found := m.Tool(ctx, def, "trigger-long-running-operation")
	require.True(t, found)
	m.mu.Lock()
	c := m.conns[connKey{"tnt_a", "everything"}]
	m.mu.Unlock()
	pid := c.pid()
	require.NotZero(t, pid)

	done := make(chan error, 1)
	go func() {
		_, err := tools.InvokeTool(ctx, long, tools.Call{Input: json.RawMessage(`{"duration":30,"steps":30}`)}, 0)
		done <- err
	}()
	// Let the request reach the child (were it killed first, the call
	// would fail the same way: the session is gone), then kill it.
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the call did not fail after its server was killed")
	}
	e := requireCode(t, err, errs.DependencyUnavailable)
	require.Contains(t, e.Message, "MCP server everything (stdio) is unavailable")

	out, err = tools.InvokeTool(ctx, echo, tools.Call{Input: json.RawMessage(`{"message":"two"}`)}, 0)
	require.NoError(t, err, "the next call starts the server again")
	require.Contains(t, string(out), "Echo: two")
	require.NotEqual(t, pid, c.pid())
}

// TestStdioMemoryServer: server-memory over stdio, its env (the memory
// file) passed to the child.
func TestStdioMemoryServer(t *testing.T) {
	t.Parallel()
	entry := npmServer(t, "server-memory", "dist/index.js")
	m := newManager(t, "")
	def := store.MCPServer{TenantID: "tnt_a", Name: "memory", Transport: store.MCPTransportStdio,
		Command: "node", Args: []string{entry}, Env: map[string]string{"MEMORY_FILE_PATH": filepath.Join(t.TempDir(), "memory.jsonl")}}
	ctx := context.Background()
	create, found := m.Tool(ctx, def, "create_entities")
	require.True(t, found)
	_, err := tools.InvokeTool(ctx, create, tools.Call{Input: json.RawMessage(
		`{"entities":[{"name":"Ada","entityType":"person","observations":["wrote the first program"]}]}`)}, 0)
	require.NoError(t, err)
	search, found := m.Tool(ctx, def, "search_nodes")
	require.True(t, found)
	out, err := tools.InvokeTool(ctx, search, tools.Call{Input: json.RawMessage(`{"query":"Ada"}`)}, 0)
	require.NoError(t, err)
	require.Contains(t, string(out), "wrote the first program")
	_, err = os.Stat(def.Env["MEMORY_FILE_PATH"])
	require.NoError(t, err, "the server wrote where its env told it")
}
