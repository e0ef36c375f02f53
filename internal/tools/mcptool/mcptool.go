// Package mcptool is the MCP ToolPort adapter: the tools of the Model
// Context Protocol servers a tenant registered (store.MCPServer) are that
// tenant's tools "mcp.<server>.<tool>", called through the official Go SDK
// (github.com/modelcontextprotocol/go-sdk).
//
// A Manager holds one client session per (tenant, server): a tenant's
// sessions are keyed by its id and found only through its own server
// definitions, so one tenant never reaches another's servers. A session is
// opened on first use and kept:
//
//   - stdio servers run as a child process of the node with only PATH,
//     HOME and the server's configured env (the node's own environment,
//     credentials included, is not inherited). A child that dies ends its
//     session; the call in flight fails with dependency_unavailable naming
//     the server, and the next call starts the server again.
//   - streamable-HTTP servers are reached through the SSRF guard
//     (builtin.GuardedClient with AGENTOS_MCP_HTTP_ALLOW), with the
//     server's headers and bearer secret. A server that cannot be reached
//     is marked unavailable for RetryAfter: calls fail at once with
//     dependency_unavailable naming the server, then a call tries again.
//
// The tool list is cached per session and fetched again after the server
// sends notifications/tools/list_changed.
package mcptool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/outbound"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/version"
)

// IDPrefix starts the id of every MCP tool: "mcp.<server>.<tool>".
const IDPrefix = "mcp."

// DefaultTimeout bounds one tool call when the server sets no timeout_ms.
const DefaultTimeout = 30 * time.Second

// DefaultRetryAfter is how long an unreachable HTTP server stays marked
// unavailable before a call tries to reach it again.
const DefaultRetryAfter = 5 * time.Second

// codeRejectedByTransport is the code of the Go SDK's error for a request
// its transport could not deliver (jsonrpc2.ErrRejected).
const codeRejectedByTransport = -32005

// connectTimeout bounds starting a session (process start or HTTP
// handshake, then initialize and the first tools/list).
const connectTimeout = 20 * time.Second

// ServerNameRE is what a server name looks like: it is a segment of tool
// ids, so it has no dots.
var ServerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// toolNameRE is what an MCP tool name must look like to become part of a
// tool id (the MCP specification's recommended characters).
var toolNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,128}$`)

// ToolID returns the id of tool of server.
func ToolID(server, tool string) string { return IDPrefix + server + "." + tool }

// SplitToolID splits "mcp.<server>.<tool>"; ok=false for any other id.
func SplitToolID(id string) (server, tool string, ok bool) {
	rest, ok := strings.CutPrefix(id, IDPrefix)
	if !ok {
		return "", "", false
	}
	server, tool, ok = strings.Cut(rest, ".")
	if !ok || !ServerNameRE.MatchString(server) || !toolNameRE.MatchString(tool) {
		return "", "", false
	}
	return server, tool, true
}

// Config configures a Manager.
type Config struct {
	// HTTPClient reaches streamable-HTTP servers; it should be
	// builtin.GuardedClient (the SSRF guard). Required.
	HTTPClient *http.Client
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// RetryAfter defaults to DefaultRetryAfter.
	RetryAfter time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager keeps the client sessions of every tenant's MCP servers. It is
// safe for concurrent use.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	conns map[connKey]*conn
}

type connKey struct{ tenantID, name string }

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.HTTPClient == nil {
		return nil, errors.New("mcptool: HTTPClient is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{cfg: cfg, log: cfg.Logger.With("component", "mcp-client"), conns: map[connKey]*conn{}}, nil
}

// conn is the session with one tenant's server, as defined by def.
type conn struct {
	m   *Manager
	def store.MCPServer

	mu      sync.Mutex
	session *mcp.ClientSession
	cmd     *exec.Cmd // stdio: the running child
	tools   []*mcp.Tool
	// stale says the tools must be listed again; atomic, because the SDK
	// delivers list_changed on its own goroutine while a list may hold mu.
	stale     atomic.Bool
	downErr   error     // HTTP: why the server is unavailable
	downUntil time.Time // HTTP: no new attempt before this
}

// conn returns the session holder for def, replacing one made for an older
// definition of the same server.
func (m *Manager) conn(def store.MCPServer) (*conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := connKey{def.TenantID, def.Name}
	if c, ok := m.conns[k]; ok {
		if sameDef(c.def, def) {
			return c, nil
		}
		go c.close()
	}
	c := &conn{m: m, def: def}
	m.conns[k] = c
	return c, nil
}

func sameDef(a, b store.MCPServer) bool {
	return a.Transport == b.Transport && a.URL == b.URL && a.Secret == b.Secret && a.Command == b.Command &&
		a.TimeoutMs == b.TimeoutMs && slices.Equal(a.Args, b.Args) && mapsEqual(a.Headers, b.Headers) && mapsEqual(a.Env, b.Env)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Forget closes the session with a tenant's server (after it was deleted
// or replaced).
func (m *Manager) Forget(tenantID, name string) {
	m.mu.Lock()
	c := m.conns[connKey{tenantID, name}]
	delete(m.conns, connKey{tenantID, name})
	m.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// Close ends every session (stdio children are stopped). The Manager
// stays usable: a later call starts a new session.
func (m *Manager) Close() error {
	m.mu.Lock()
	conns := m.conns
	m.conns = map[connKey]*conn{}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(c.close)
	}
	wg.Wait()
	return nil
}

// Tools returns the tools of def's server, connecting to it if needed.
// Errors are dependency_unavailable naming the server.
func (m *Manager) Tools(ctx context.Context, def store.MCPServer) ([]tools.Tool, error) {
	c, err := m.conn(def)
	if err != nil {
		return nil, err
	}
	list, err := c.list(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]tools.Tool, 0, len(list))
	for _, t := range list {
		out = append(out, c.tool(t))
	}
	return out, nil
}

// Tool returns the tool name of def's server. found=false when the server
// answers but has no such tool; when the server cannot be reached, Tool
// returns a tool whose calls fail with that error (dependency_unavailable
// naming the server), so that a run's tool call records why.
func (m *Manager) Tool(ctx context.Context, def store.MCPServer, name string) (tools.Tool, bool) {
	c, err := m.conn(def)
	if err == nil {
		var list []*mcp.Tool
		if list, err = c.list(ctx); err == nil {
			for _, t := range list {
				if t.Name == name {
					return c.tool(t), true
				}
			}
			return nil, false
		}
	}
	return &unavailableTool{spec: tools.Spec{ToolID: ToolID(def.Name, name), Name: modelName(def.Name, name),
		Description: fmt.Sprintf("Tool %s of the MCP server %s (unavailable: %s)", name, def.Name, errs.As(err).Message),
		InputSchema: json.RawMessage(`{"type":"object"}`), DefaultTimeout: timeoutOf(def)}, err: err}, true
}

// list returns the server's tools, connecting and listing as needed.
func (c *conn) list(ctx context.Context) ([]*mcp.Tool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.sessionLocked(ctx)
	if err != nil {
		return nil, err
	}
	if !c.stale.Load() && c.tools != nil {
		return c.tools, nil
	}
	var list []*mcp.Tool
	for t, err := range s.Tools(ctx, nil) {
		if err != nil {
			return nil, c.failedLocked(s, err, "listing its tools")
		}
		if !toolNameRE.MatchString(t.Name) {
			c.m.log.Warn("MCP tool skipped: its name cannot be part of a tool id", "tenant_id", c.def.TenantID,
				"server", c.def.Name, "tool", t.Name)
			continue
		}
		list = append(list, t)
	}
	if list == nil {
		list = []*mcp.Tool{}
	}
	c.tools = list
	c.stale.Store(false)
	return list, nil
}

// sessionLocked returns the live session, starting one if there is none.
func (c *conn) sessionLocked(ctx context.Context) (*mcp.ClientSession, error) {
	if c.session != nil {
		return c.session, nil
	}
	if c.downErr != nil && c.m.cfg.Now().Before(c.downUntil) {
		return nil, c.downErr
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "agentos", Version: version.Version}, &mcp.ClientOptions{
		Logger: c.m.log,
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			c.stale.Store(true)
		},
	})
	var transport mcp.Transport
	var cmd *exec.Cmd
	switch c.def.Transport {
	case store.MCPTransportStdio:
		// Not CommandContext: the child outlives the call that started it.
		cmd = exec.Command(c.def.Command, c.def.Args...)
		cmd.Env = childEnv(c.def.Env)
		cmd.Stderr = &logWriter{log: c.m.log, tenantID: c.def.TenantID, server: c.def.Name}
		transport = &mcp.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}
	default:
		hc := *c.m.cfg.HTTPClient
		hc.Transport = &headerTransport{base: hc.Transport, headers: c.def.Headers, secret: c.def.Secret}
		// Redirects are not followed: the guard checks every address, but a
		// server's credentials must not be replayed to wherever it points.
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		transport = &mcp.StreamableClientTransport{Endpoint: c.def.URL, HTTPClient: &hc, MaxRetries: 1}
	}
	s, err := client.Connect(ctx, transport, nil)
	if err != nil {
		e := c.unavailable(err, "connecting")
		if c.def.Transport != store.MCPTransportStdio {
			c.downErr, c.downUntil = e, c.m.cfg.Now().Add(c.m.cfg.RetryAfter)
		}
		return nil, e
	}
	c.session, c.cmd, c.downErr = s, cmd, nil
	c.stale.Store(true)
	go c.watch(s)
	c.m.log.Info("MCP session started", "tenant_id", c.def.TenantID, "server", c.def.Name, "transport", c.def.Transport)
	return s, nil
}

// watch forgets s when it ends (a stdio child exited, an HTTP session was
// closed), so the next call starts a new one.
func (c *conn) watch(s *mcp.ClientSession) {
	err := s.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == s {
		c.session, c.cmd = nil, nil
		c.stale.Store(true)
		c.m.log.Warn("MCP session ended", "tenant_id", c.def.TenantID, "server", c.def.Name, "err", err)
	}
}

// failedLocked handles a failed request on s: a JSON-RPC error from the
// server leaves the session alone; anything else (the connection broke)
// ends the session, and for HTTP marks the server unavailable for a while.
func (c *conn) failedLocked(s *mcp.ClientSession, err error, doing string) error {
	var rpcErr *jsonrpc.Error
	// -32005 is the SDK's own "rejected by transport": the HTTP request
	// failed, the server said nothing.
	if errors.As(err, &rpcErr) && rpcErr.Code != codeRejectedByTransport {
		return errs.E(errs.InvalidRequest, "MCP server %s refused %s: %s", c.def.Name, doing, rpcErr.Message).
			WithDetails(map[string]any{"mcp_server": c.def.Name, "jsonrpc_code": rpcErr.Code})
	}
	e := c.unavailable(err, doing)
	if c.session == s {
		c.session, c.cmd = nil, nil
		c.stale.Store(true)
		go func() { _ = s.Close() }()
		if c.def.Transport != store.MCPTransportStdio {
			c.downErr, c.downUntil = e, c.m.cfg.Now().Add(c.m.cfg.RetryAfter)
		}
	}
	return e
}

func (c *conn) unavailable(err error, doing string) *errs.Error {
	what := "is unavailable"
	if c.def.Transport == store.MCPTransportStdio {
		what = "(stdio) is unavailable; it is started again on the next call"
	}
	return errs.Wrap(errs.DependencyUnavailable, err, "MCP server %s %s: %s failed: %v", c.def.Name, what, doing, err).
		WithDetails(map[string]any{"mcp_server": c.def.Name, "transport": c.def.Transport})
}

// call calls the tool name with args on the live session.
func (c *conn) call(ctx context.Context, name string, args json.RawMessage) (json.RawMessage, error) {
	c.mu.Lock()
	s, err := c.sessionLocked(ctx)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		if ctx.Err() != nil {
			return nil, tools.ContextError(ctx, ToolID(c.def.Name, name))
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return nil, c.failedLocked(s, err, "calling tool "+name)
	}
	out, err := json.Marshal(result{Content: res.Content, StructuredContent: res.StructuredContent})
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "MCP server %s: tool %s returned content that cannot be encoded", c.def.Name, name)
	}
	if res.IsError {
		return nil, errs.E(errs.InvalidRequest, "MCP tool %s of server %s reported an error: %s", name, c.def.Name, textOf(res.Content)).
			WithDetails(map[string]any{"mcp_server": c.def.Name, "result": json.RawMessage(out)})
	}
	return out, nil
}

// result is a tool's output: the MCP CallToolResult's content (and
// structured content when the tool has an output schema).
type result struct {
	Content           []mcp.Content `json:"content"`
	StructuredContent any           `json:"structuredContent,omitempty"`
}

// textOf joins the text parts of content (the error message of a failed
// tool), at most 500 bytes.
func textOf(content []mcp.Content) string {
	var parts []string
	for _, c := range content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, t.Text)
		}
	}
	s := strings.Join(parts, " ")
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	if s == "" {
		s = "(no text)"
	}
	return s
}

func (c *conn) close() {
	c.mu.Lock()
	s := c.session
	c.session, c.cmd = nil, nil
	c.mu.Unlock()
	if s != nil {
		_ = s.Close()
	}
}

// pid returns the process id of a stdio server's child (0 when none runs).
func (c *conn) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// tool wraps t as a tools.Tool.
func (c *conn) tool(t *mcp.Tool) tools.Tool {
	schema, err := json.Marshal(t.InputSchema)
	if err != nil || t.InputSchema == nil || tools.CheckSchema(schema) != nil {
		// The model still sees an object; the server validates.
		schema = json.RawMessage(`{"type":"object"}`)
	}
	desc := strings.TrimSpace(t.Description)
	if desc == "" {
		desc = strings.TrimSpace(t.Title)
	}
	if desc == "" {
		desc = fmt.Sprintf("Tool %s of the MCP server %s", t.Name, c.def.Name)
	}
	// Never Idempotent: the executor would call a failed tool again, and
	// idempotentHint is a hint from a server the node does not trust (the
	// MCP specification says not to decide on annotations of untrusted
	// servers). A failed call is reported; the model or the next run
	// decides.
	return &mcpTool{conn: c, name: t.Name, spec: tools.Spec{ToolID: ToolID(c.def.Name, t.Name),
		Name: modelName(c.def.Name, t.Name), Description: desc, InputSchema: schema,
		DefaultTimeout: timeoutOf(c.def)}}
}

// modelName is the function name a model sees: letters, digits, _ and -,
// at most 64 characters.
func modelName(server, tool string) string {
	n := strings.Map(func(r rune) rune {
		if r == '.' {
			return '_'
		}
		return r
	}, "mcp_"+server+"_"+tool)
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

func timeoutOf(def store.MCPServer) time.Duration {
	if def.TimeoutMs > 0 {
		return time.Duration(def.TimeoutMs) * time.Millisecond
	}
	return DefaultTimeout
}

type mcpTool struct {
	conn *conn
	name string
	spec tools.Spec
}

func (t *mcpTool) Spec() tools.Spec { return t.spec }

func (t *mcpTool) Invoke(ctx context.Context, c tools.Call) (json.RawMessage, error) {
	return t.conn.call(ctx, t.name, c.Input)
}

type unavailableTool struct {
	spec tools.Spec
	err  error
}

func (t *unavailableTool) Spec() tools.Spec { return t.spec }

func (t *unavailableTool) Invoke(context.Context, tools.Call) (json.RawMessage, error) {
	return nil, t.err
}

// childEnv is a stdio server's environment: PATH and HOME of the node (so
// that "node" or "npx" are found), then the server's own env.
func childEnv(env map[string]string) []string {
	out := []string{}
	if v, ok := os.LookupEnv("PATH"); ok {
		out = append(out, "PATH="+v)
	}
	if v, ok := os.LookupEnv("HOME"); ok {
		out = append(out, "HOME="+v)
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// headerTransport adds a server's headers and bearer secret to every request.
type headerTransport struct {
	base    http.RoundTripper
	headers map[string]string
	secret  string
}

// defaultTransport is outbound's bounded transport with its default
// timeouts (never http.DefaultTransport, which has none).
var defaultTransport = outbound.Transport(outbound.Timeouts{}, nil)

func (h *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.headers {
		r.Header.Set(k, v)
	}
	if h.secret != "" {
		r.Header.Set("Authorization", "Bearer "+h.secret)
	}
	base := h.base
	if base == nil {
		// An injected client without a transport: the bounded default.
		base = defaultTransport
	}
	return base.RoundTrip(r)
}

// logWriter logs what a stdio server writes to its stderr, line by line
// (bounded: a chatty server cannot fill the node's memory).
type logWriter struct {
	log              *slog.Logger
	tenantID, server string
}

func (w *logWriter) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	if s != "" {
		w.log.Debug("MCP server stderr", "tenant_id", w.tenantID, "server", w.server, "text", s)
	}
	return len(p), nil
}
