package agentorchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/store"
)

type shoutIn struct {
	Text string `json:"text"`
}

// newShoutServer is a tenant's MCP server (the Go SDK's, streamable HTTP
// on loopback) with one tool, shout.
func newShoutServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "shouter", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "shout", Description: "Upper-cases text."},
		func(_ context.Context, req *mcp.CallToolRequest, in shoutIn) (*mcp.CallToolResult, any, error) {
			if auth := req.Extra.Header.Get("Authorization"); auth != "Bearer mcp-secret-0123" {
				return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "bad credentials: " + auth}}}, nil, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.ToUpper(in.Text)}}}, nil, nil
		})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(hs.Close)
	return hs
}

func TestMCPServerAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{mcpAllow: "127.0.0.1"})
	hs := newShoutServer(t)
	adminA := []string{"Authorization", adminToken(t, b, "tnt_a", auth.RoleTenantAdmin)}
	adminB := []string{"Authorization", adminToken(t, b, "tnt_b", auth.RoleTenantAdmin)}
	platform := []string{"Authorization", adminToken(t, b, "tnt_a", auth.RolePlatformAdmin), "X-Tenant-Id", "tnt_a"}

	put := func(name string, body any, hdr []string) (*http.Response, map[string]any) {
		return b.do("PUT", "/v1/admin/mcp-servers/"+name, "", body, hdr...)
	}
	httpBody := map[string]any{"mcp_server": map[string]any{"url": hs.URL, "secret": "mcp-secret-0123",
		"headers": map[string]string{"X-Team": "blue"}, "timeout_ms": 5000}}

	t.Run("bad input names the field and stores nothing", func(t *testing.T) {
		for _, c := range []struct {
			name  string
			body  any
			field string
		}{
			{"Bad.Name", httpBody, "name"},
			{"x", map[string]any{"url": "ftp://example.com"}, "mcp_server.url"},
			{"x", map[string]any{"url": "https://u:p@example.com/mcp"}, "mcp_server.url"},
			{"x", map[string]any{"url": "https://example.com/mcp", "secret": "short"}, "mcp_server.secret"},
			{"x", map[string]any{"url": "https://example.com/mcp", "headers": map[string]string{"Bad Header": "v"}}, "mcp_server.headers"},
			{"x", map[string]any{"url": "https://example.com/mcp", "command": "node"}, "mcp_server.command"},
			{"x", map[string]any{"transport": "sse", "url": "https://example.com/mcp"}, "mcp_server.transport"},
			{"x", map[string]any{"url": "https://example.com/mcp", "timeout_ms": -1}, "mcp_server.timeout_ms"},
		} {
			resp, out := put(c.name, c.body, adminA)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s %v: %v", c.name, c.body, out)
			require.Contains(t, out["error"].(map[string]any)["message"], c.field)
		}
		resp, out := b.do("GET", "/v1/admin/mcp-servers", "", nil, adminA...)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Empty(t, out["mcp_servers"])
	})

	t.Run("at most 32 servers a tenant", func(t *testing.T) {
		for i := range maxMCPServers {
			resp, out := b.do("PUT", fmt.Sprintf("/v1/admin/mcp-servers/s%d", i), "", map[string]any{"url": "https://mcp.example.com/mcp"}, adminB...)
			require.Equal(t, http.StatusCreated, resp.StatusCode, out)
		}
		resp, out := b.do("PUT", "/v1/admin/mcp-servers/one-more", "", map[string]any{"url": "https://mcp.example.com/mcp"}, adminB...)
		require.Equal(t, http.StatusConflict, resp.StatusCode, out)
		resp, out = b.do("PUT", "/v1/admin/mcp-servers/s0", "", map[string]any{"url": "https://mcp.example.com/v2"}, adminB...)
		require.Equal(t, http.StatusOK, resp.StatusCode, "replacing one is not one more: %v", out)
		for i := range maxMCPServers {
			resp, _ := b.do("DELETE", fmt.Sprintf("/v1/admin/mcp-servers/s%d", i), "", nil, adminB...)
			require.Equal(t, http.StatusNoContent, resp.StatusCode)
		}
	})

	t.Run("stdio is for platform admins only", func(t *testing.T) {
		resp, out := put("local", map[string]any{"transport": "stdio", "command": "node", "args": []string{"server.js"}}, adminA)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, out)
		require.Contains(t, out["error"].(map[string]any)["message"], "platform_admin")
		resp, out = put("local", map[string]any{"transport": "stdio", "command": "node", "args": []string{"server.js"},
			"env": map[string]string{"TOKEN": "env-secret"}}, platform)
		require.Equal(t, http.StatusCreated, resp.StatusCode, out)
		v := out["mcp_server"].(map[string]any)
		require.Equal(t, []any{"TOKEN"}, v["env_names"])
		require.NotContains(t, mustJSON(t, out), "env-secret")
		resp, out = b.do("DELETE", "/v1/admin/mcp-servers/local", "", nil, adminA...)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, out)
		resp, _ = b.do("DELETE", "/v1/admin/mcp-servers/local", "", nil, platform...)
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	})

	t.Run("register, secrets write-only, tools in the registry", func(t *testing.T) {
		resp, out := put("shouter", httpBody, adminA)
		require.Equal(t, http.StatusCreated, resp.StatusCode, out)
		raw := mustJSON(t, out)
		require.NotContains(t, raw, "mcp-secret-0123")
		require.NotContains(t, raw, "blue")
		v := out["mcp_server"].(map[string]any)
		require.Equal(t, true, v["has_secret"])
		require.Equal(t, []any{"X-Team"}, v["header_names"])
		require.Equal(t, "mcp.shouter.", v["tool_prefix"])

		// Replacing without the secret keeps it.
		resp, out = put("shouter", map[string]any{"url": hs.URL, "timeout_ms": 6000}, adminA)
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
		require.Equal(t, true, out["mcp_server"].(map[string]any)["has_secret"])

		resp, out = b.do("GET", "/v1/admin/mcp-servers/shouter", "", nil, adminA...)
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
		v = out["mcp_server"].(map[string]any)
		require.Equal(t, "available", v["status"], out)
		require.Equal(t, []any{"mcp.shouter.shout"}, v["tools"])

		resp, out = b.do("GET", "/v1/admin/tools", "", nil, adminA...)
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
		var found map[string]any
		for _, tl := range out["tools"].([]any) {
			if m := tl.(map[string]any); m["tool_id"] == "mcp.shouter.shout" {
				found = m
			}
		}
		require.NotNil(t, found, out)
		require.Equal(t, "mcp", found["kind"])
		require.Equal(t, "Upper-cases text.", found["description"])
		require.Equal(t, "string", found["input_schema"].(map[string]any)["properties"].(map[string]any)["text"].(map[string]any)["type"])
		require.Equal(t, float64(6000), found["timeout_ms"])
	})

	t.Run("tenant B neither sees nor calls A's server", func(t *testing.T) {
		resp, _ := b.do("GET", "/v1/admin/mcp-servers/shouter", "", nil, adminB...)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		resp, out := b.do("GET", "/v1/admin/tools", "", nil, adminB...)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.NotContains(t, mustJSON(t, out), "mcp.shouter")
		resp, out = b.do("PUT", "/v1/admin/agents/agt_mcp", "", map[string]any{"name": "m", "model_ref": "tier:fast",
			"tools": []string{"mcp.shouter.shout"}}, adminB...)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, out)
		require.Contains(t, out["error"].(map[string]any)["message"], `unknown tool "mcp.shouter.shout"`)
		resp, _ = b.do("DELETE", "/v1/admin/mcp-servers/shouter", "", nil, adminB...)
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	})

	t.Run("an agent run calls the MCP tool", func(t *testing.T) {
		resp, out := b.do("PUT", "/v1/admin/agents/agt_mcp", "", map[string]any{"name": "m", "model_ref": "tier:fast",
			"tools": []string{"mcp.shouter.shout"}}, adminA...)
		require.Equal(t, http.StatusCreated, resp.StatusCode, out)
		// The tool's input schema wants "text"; the scripted model sends it.
		runID := b.createRun("tnt_a", "agt_mcp", map[string]any{"input": "hello mcp"})
		run := b.waitStatus("tnt_a", runID, store.RunCompleted)
		require.Contains(t, run.Output.Text, "HELLO MCP")
		evs := b.streamEvents("tnt_a", runID)
		var done map[string]any
		for _, e := range evs {
			if e.Type == store.EventToolCallCompleted {
				require.NoError(t, json.Unmarshal(e.Payload, &done))
			}
		}
		require.Equal(t, "mcp.shouter.shout", done["tool_id"])
		require.Equal(t, "ok", done["status"], done)

		// Tenant B's agent with the same id cannot reach it either: the
		// run's tool is not found in B.
		resp, out = b.do("GET", "/v1/admin/tools/mcp.shouter.shout", "", nil, adminB...)
		require.Equal(t, http.StatusNotFound, resp.StatusCode, out)
	})

	t.Run("a deleted server's tools are gone", func(t *testing.T) {
		resp, _ := b.do("DELETE", "/v1/admin/mcp-servers/shouter", "", nil, adminA...)
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		runID := b.createRun("tnt_a", "agt_mcp", map[string]any{"input": "again"})
		b.waitStatus("tnt_a", runID, store.RunCompleted)
		evs := b.streamEvents("tnt_a", runID)
		for _, e := range evs {
			require.NotEqual(t, store.EventToolCallCompleted, e.Type, "the model is not offered a tool that is gone")
		}
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// headerClient is an HTTP client that sends the given headers.
type headerRT struct {
	hdr  http.Header
	base http.RoundTripper
}

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.hdr {
		r.Header[k] = v
	}
	return h.base.RoundTrip(r)
}

func connectMCP(t *testing.T, b *testBundle, hdr http.Header, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "go-test", Version: "1"}, opts)
	s, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: b.http.URL + "/mcp",
		HTTPClient: &http.Client{Transport: headerRT{hdr: hdr, base: http.DefaultTransport}}}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestMCPEndpoint: the Go SDK client against /mcp: agents are tools, a
// call runs the agent with progress per event, runs are resources, and a
// tenant sees only its own.
func TestMCPEndpoint(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	ctx := context.Background()
	var mu sync.Mutex
	var progress []string
	s := connectMCP(t, b, http.Header{"X-Tenant-Id": {"tnt_a"}}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			progress = append(progress, req.Params.Message)
			mu.Unlock()
		}})

	list, err := s.ListTools(ctx, nil)
	require.NoError(t, err)
	var names []string
	for _, tl := range list.Tools {
		names = append(names, tl.Name)
	}
	require.Contains(t, names, "run_agent_agt_echo")

	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "run_agent_agt_echo", Arguments: map[string]any{"input": "hi over mcp"},
		Meta: mcp.Meta{"progressToken": "tok-1"}})
	require.NoError(t, err)
	require.False(t, res.IsError, "%+v", res.Content)
	require.Contains(t, res.Content[0].(*mcp.TextContent).Text, "hi over mcp")
	st := res.StructuredContent.(map[string]any)
	require.Equal(t, "completed", st["status"])
	runID := st["run_id"].(string)
	// The SDK hands notifications to the handler on its own goroutine: the
	// result may be seen before the last of them.
	var got []string
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		got = append([]string(nil), progress...)
		return len(got) > 0 && strings.HasPrefix(got[len(got)-1], store.EventRunCompleted)
	}, 10*time.Second, 5*time.Millisecond, "progress until run.completed: %v", got)
	require.True(t, strings.HasPrefix(got[0], store.EventRunCreated), got)
	require.Contains(t, strings.Join(got, "\n"), "agentos.tool.call.completed tool_id=tool.echo status=ok")
	require.True(t, strings.HasPrefix(got[len(got)-1], store.EventRunCompleted), got)

	rr, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "agentos://runs/" + runID})
	require.NoError(t, err)
	require.Contains(t, rr.Contents[0].Text, `"status":"completed"`)
	resources, err := s.ListResources(ctx, nil)
	require.NoError(t, err)
	require.NotEmpty(t, resources.Resources)

	// Bad arguments: a tool error, no run.
	res, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "run_agent_agt_echo", Arguments: map[string]any{"input": 3}})
	if err == nil {
		require.True(t, res.IsError)
	}

	// Tenant B: its own agents only; A's run is not a resource it can read.
	sb := connectMCP(t, b, http.Header{"X-Tenant-Id": {"tnt_b"}}, nil)
	_, err = sb.ReadResource(ctx, &mcp.ReadResourceParams{URI: "agentos://runs/" + runID})
	require.Error(t, err)
	rb, err := sb.ListResources(ctx, nil)
	require.NoError(t, err)
	for _, r := range rb.Resources {
		require.NotEqual(t, "agentos://runs/"+runID, r.URI)
	}

	// The SDK's own HTTP errors come as the usual envelope too.
	resp, out := b.do("POST", "/mcp", "tnt_a", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "Accept", "application/json")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "invalid_request", out["error"].(map[string]any)["code"], out)
	require.Contains(t, out["error"].(map[string]any)["message"], "text/event-stream")
	resp, out = b.do("GET", "/mcp", "tnt_a", nil)
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, out)

	// No credentials: the usual 401 envelope, before any MCP.
	resp, err = http.Post(b.http.URL+"/mcp", "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// TestMCPThreadResources: the Go SDK client lists the tenant's threads as
// resources and reads one with its messages; another tenant neither lists
// nor reads it.
func TestMCPThreadResources(t *testing.T) {
	t.Parallel()
	b := setup(t, bundleOpts{})
	ctx := context.Background()
	threadID := newThread(t, b, "tnt_a", map[string]string{"user": "u_mcp"})
	for _, text := range []string{"first turn", "second turn"} {
		resp, out := threadRun(b, "tnt_a", threadID, map[string]any{"input": text})
		require.Equal(t, http.StatusCreated, resp.StatusCode, out)
		b.waitStatus("tnt_a", runID(out), store.RunCompleted)
	}
	uri := "agentos://threads/" + threadID

	s := connectMCP(t, b, http.Header{"X-Tenant-Id": {"tnt_a"}}, nil)
	resources, err := s.ListResources(ctx, nil)
	require.NoError(t, err)
	var uris []string
	for _, r := range resources.Resources {
		uris = append(uris, r.URI)
	}
	require.Contains(t, uris, uri)
	templates, err := s.ListResourceTemplates(ctx, nil)
	require.NoError(t, err)
	var tmpls []string
	for _, tm := range templates.ResourceTemplates {
		tmpls = append(tmpls, tm.URITemplate)
	}
	require.Contains(t, tmpls, "agentos://threads/{thread_id}")

	rr, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
	require.NoError(t, err)
	require.Equal(t, "application/json", rr.Contents[0].MIMEType)
	var got struct {
		Thread   store.Thread          `json:"thread"`
		Messages []store.ThreadMessage `json:"messages"`
		Omitted  bool                  `json:"older_messages_omitted"`
	}
	require.NoError(t, json.Unmarshal([]byte(rr.Contents[0].Text), &got))
	require.Equal(t, threadID, got.Thread.ThreadID)
	require.Equal(t, "u_mcp", got.Thread.Metadata["user"])
	require.False(t, got.Omitted)
	var users []string
	for _, m := range got.Messages {
		if m.Role == "user" {
			users = append(users, m.Content)
		}
	}
	require.Equal(t, []string{"first turn", "second turn"}, users)
	require.Equal(t, "assistant", got.Messages[len(got.Messages)-1].Role)

	_, err = s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "agentos://threads/thr_nope"})
	require.Error(t, err)

	// Tenant B: not listed, not readable.
	sb := connectMCP(t, b, http.Header{"X-Tenant-Id": {"tnt_b"}}, nil)
	_, err = sb.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
	require.Error(t, err)
	rb, err := sb.ListResources(ctx, nil)
	require.NoError(t, err)
	for _, r := range rb.Resources {
		require.NotEqual(t, uri, r.URI)
	}
}
