package agentorchestrator

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/mcptool"
)

// Limits of a registered MCP server (PUT /v1/admin/mcp-servers/{name}).
const (
	maxMCPHeaders   = 32
	maxMCPHeaderLen = 8192
	minMCPSecret    = 8
	maxMCPSecret    = 4096
	maxMCPArgs      = 64
	maxMCPArgLen    = 4096
	maxMCPEnv       = 64
	// maxMCPServers bounds a tenant's servers: each holds a session (a
	// stdio one a child process) for as long as the node runs.
	maxMCPServers = 32
	// mcpListTimeout bounds how long GET /v1/admin/tools waits for each
	// server's tool list.
	mcpListTimeout = 15 * time.Second
)

var (
	headerNameRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// mcpServerPut is the body of PUT /v1/admin/mcp-servers/{name}. Headers,
// Secret and Env left out keep the stored ones on replace.
type mcpServerPut struct {
	Name      string             `json:"name"`
	Transport string             `json:"transport"`
	URL       string             `json:"url"`
	Headers   *map[string]string `json:"headers"`
	Secret    string             `json:"secret"`
	Command   string             `json:"command"`
	Args      []string           `json:"args"`
	Env       *map[string]string `json:"env"`
	TimeoutMs int                `json:"timeout_ms"`
}

// mcpServerView is what the admin API shows of a server: never header
// values, the secret or env values (write-only credentials), only their
// names.
type mcpServerView struct {
	TenantID    string    `json:"tenant_id"`
	Name        string    `json:"name"`
	Transport   string    `json:"transport"`
	URL         string    `json:"url,omitempty"`
	HeaderNames []string  `json:"header_names"`
	HasSecret   bool      `json:"has_secret"`
	Command     string    `json:"command,omitempty"`
	Args        []string  `json:"args"`
	EnvNames    []string  `json:"env_names"`
	TimeoutMs   int       `json:"timeout_ms"`
	ToolPrefix  string    `json:"tool_prefix"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// Status and the rest are set by GET of one server only: it connects.
	Status string   `json:"status,omitempty"` // available | unavailable
	Error  *errView `json:"error,omitempty"`
	Tools  []string `json:"tools,omitempty"`
}

type errView struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func viewMCPServer(d store.MCPServer) mcpServerView {
	args := d.Args
	if args == nil {
		args = []string{}
	}
	return mcpServerView{TenantID: d.TenantID, Name: d.Name, Transport: d.Transport, URL: d.URL,
		HeaderNames: sortedKeys(d.Headers), HasSecret: d.Secret != "", Command: d.Command, Args: args,
		EnvNames: sortedKeys(d.Env), TimeoutMs: d.TimeoutMs, ToolPrefix: mcptool.ToolID(d.Name, ""),
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func checkMCPServerName(name string) error {
	if !mcptool.ServerNameRE.MatchString(name) {
		return errs.Field("name", "must be 1-32 lowercase letters, digits, _ or -, starting with a letter or digit (it becomes part of tool ids mcp.<name>.<tool>), got %q", name)
	}
	return nil
}

// validateMCPServer turns a request into a definition. prev is the server
// being replaced (nil on create): its credentials are kept when the
// request leaves them out.
func validateMCPServer(ac auth.Context, name, tenantID string, in *mcpServerPut, prev *store.MCPServer) (store.MCPServer, error) {
	d := store.MCPServer{TenantID: tenantID, Name: name, Transport: in.Transport, URL: strings.TrimSpace(in.URL),
		Secret: in.Secret, Command: strings.TrimSpace(in.Command), Args: in.Args, TimeoutMs: in.TimeoutMs}
	if in.Name != "" && in.Name != name {
		return d, errs.Field("mcp_server.name", "must match the path's name %q, got %q", name, in.Name)
	}
	if d.Transport == "" {
		switch {
		case d.Command != "" && d.URL == "":
			d.Transport = store.MCPTransportStdio
		default:
			d.Transport = store.MCPTransportHTTP
		}
	}
	switch d.Transport {
	case store.MCPTransportHTTP:
		if err := validateMCPHTTP(&d, in, prev); err != nil {
			return d, err
		}
	case store.MCPTransportStdio:
		if !ac.HasRole(auth.RolePlatformAdmin) {
			return d, errs.E(errs.Forbidden, "mcp_server.transport: a stdio MCP server runs a command on the node; only a platform_admin may register one").
				WithDetails(map[string]any{"field": "mcp_server.transport"})
		}
		if err := validateMCPStdio(&d, in, prev); err != nil {
			return d, err
		}
	default:
		return d, errs.Field("mcp_server.transport", "must be %q or %q, got %q", store.MCPTransportHTTP, store.MCPTransportStdio, d.Transport)
	}
	if d.TimeoutMs == 0 {
		d.TimeoutMs = defaultToolTimeMs
	}
	if d.TimeoutMs < 1 || d.TimeoutMs > maxToolTimeoutMs {
		return d, errs.Field("mcp_server.timeout_ms", "must be between 1 and %d", maxToolTimeoutMs)
	}
	return d, nil
}

func validateMCPHTTP(d *store.MCPServer, in *mcpServerPut, prev *store.MCPServer) error {
	if d.Command != "" || len(d.Args) > 0 || in.Env != nil {
		return errs.Field("mcp_server.command", "command, args and env are for transport stdio, not http")
	}
	if err := checkWebhookURL(d.URL); err != nil {
		e := errs.As(err)
		return errs.Field("mcp_server.url", "%s", strings.TrimPrefix(e.Message, "tool.url: "))
	}
	switch {
	case in.Headers != nil:
		d.Headers = *in.Headers
	case prev != nil && prev.Transport == store.MCPTransportHTTP:
		d.Headers = prev.Headers
	}
	if len(d.Headers) > maxMCPHeaders {
		return errs.Field("mcp_server.headers", "must have at most %d headers", maxMCPHeaders)
	}
	for k, v := range d.Headers {
		switch {
		case !headerNameRE.MatchString(k):
			return errs.Field("mcp_server.headers", "%q is not a valid header name", k)
		case strings.EqualFold(k, "Host") || strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "Mcp-Session-Id"):
			return errs.Field("mcp_server.headers", "header %s is set by the MCP client itself", k)
		case strings.ContainsAny(v, "\r\n\x00") || len(v) > maxMCPHeaderLen:
			return errs.Field("mcp_server.headers", "the value of %s must be at most %d characters without line breaks", k, maxMCPHeaderLen)
		}
	}
	if d.Secret == "" && prev != nil && prev.Transport == store.MCPTransportHTTP {
		d.Secret = prev.Secret
	}
	if n := len(d.Secret); n != 0 && (n < minMCPSecret || n > maxMCPSecret || strings.ContainsAny(d.Secret, "\r\n\x00 ")) {
		return errs.Field("mcp_server.secret", "must be %d to %d characters without spaces or line breaks (it is sent as Authorization: Bearer <secret>)", minMCPSecret, maxMCPSecret)
	}
	if d.Secret != "" {
		for k := range d.Headers {
			if strings.EqualFold(k, "Authorization") {
				return errs.Field("mcp_server.headers", "set either an Authorization header or secret, not both")
			}
		}
	}
	d.Args, d.Env = []string{}, map[string]string{}
	return nil
}

func validateMCPStdio(d *store.MCPServer, in *mcpServerPut, prev *store.MCPServer) error {
	if d.URL != "" || in.Headers != nil || d.Secret != "" {
		return errs.Field("mcp_server.url", "url, headers and secret are for transport http, not stdio")
	}
	if d.Command == "" {
		return errs.Field("mcp_server.command", "is required for transport stdio (e.g. \"node\" or \"npx\")")
	}
	if !utf8.ValidString(d.Command) || strings.ContainsRune(d.Command, 0) || len(d.Command) > maxMCPArgLen {
		return errs.Field("mcp_server.command", "must be valid text of at most %d bytes", maxMCPArgLen)
	}
	if len(d.Args) > maxMCPArgs {
		return errs.Field("mcp_server.args", "must have at most %d arguments", maxMCPArgs)
	}
	for i, a := range d.Args {
		if strings.ContainsRune(a, 0) || len(a) > maxMCPArgLen {
			return errs.Field("mcp_server.args", "argument %d must be at most %d bytes without NUL", i, maxMCPArgLen)
		}
	}
	if d.Args == nil {
		d.Args = []string{}
	}
	switch {
	case in.Env != nil:
		d.Env = *in.Env
	case prev != nil && prev.Transport == store.MCPTransportStdio:
		d.Env = prev.Env
	}
	if len(d.Env) > maxMCPEnv {
		return errs.Field("mcp_server.env", "must have at most %d variables", maxMCPEnv)
	}
	for k, v := range d.Env {
		if !envNameRE.MatchString(k) || strings.ContainsRune(v, 0) {
			return errs.Field("mcp_server.env", "%q is not a valid variable name (or its value has a NUL)", k)
		}
	}
	if d.Env == nil {
		d.Env = map[string]string{}
	}
	d.Headers = map[string]string{}
	return nil
}

// handlePutMCPServer registers an MCP server for the caller's tenant (201)
// or replaces it (200). It does not connect: the first use does.
func (s *Server) handlePutMCPServer(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireToolAdmin(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := checkMCPServerName(name); err != nil {
		return err
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var wrapped struct {
		Server *mcpServerPut `json:"mcp_server"`
	}
	if err := httpx.DecodeBytes(body, &wrapped); err != nil {
		return err
	}
	in := wrapped.Server
	if in == nil {
		in = &mcpServerPut{}
		if err := httpx.DecodeBytes(body, in); err != nil {
			return err
		}
	}
	ctx := r.Context()
	var prev *store.MCPServer
	old, err := s.cfg.Store.GetMCPServer(ctx, ac.TenantID, name)
	switch {
	case err == nil:
		prev = &old
	case !errors.Is(err, errs.ErrNotFound):
		return err
	}
	if prev == nil {
		existing, err := s.cfg.Store.ListMCPServers(ctx, ac.TenantID)
		if err != nil {
			return err
		}
		if len(existing) >= maxMCPServers {
			return errs.E(errs.Conflict, "tenant %s already has %d MCP servers, the most it may register; delete one first", ac.TenantID, len(existing)).
				WithDetails(map[string]any{"limit": maxMCPServers})
		}
	}
	if prev != nil && prev.Transport == store.MCPTransportStdio && !ac.HasRole(auth.RolePlatformAdmin) {
		return errs.E(errs.Forbidden, "MCP server %s runs a command on the node; only a platform_admin may replace it", name)
	}
	d, err := validateMCPServer(ac, name, ac.TenantID, in, prev)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	status := http.StatusCreated
	d.CreatedAt, d.UpdatedAt = now, now
	if prev != nil {
		status = http.StatusOK
		d.CreatedAt = prev.CreatedAt
	}
	if err := s.cfg.Store.PutMCPServer(ctx, d); err != nil {
		return err
	}
	s.mcp.Forget(ac.TenantID, name)
	details := map[string]any{"transport": d.Transport, "created": prev == nil,
		"secret_changed": prev == nil || prev.Secret != d.Secret, "header_names": sortedKeys(d.Headers)}
	if d.Transport == store.MCPTransportStdio {
		details["command"], details["args"], details["env_names"] = d.Command, d.Args, sortedKeys(d.Env)
	} else {
		details["url"] = d.URL
	}
	s.audit(r, ac, ac.TenantID, "mcp_server.put", "mcp-server/"+name, details)
	httpx.JSON(w, r, status, map[string]any{"mcp_server": viewMCPServer(d)})
	return nil
}

// handleListMCPServers lists the caller's tenant's servers (without
// connecting).
func (s *Server) handleListMCPServers(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireToolAdmin(r)
	if err != nil {
		return err
	}
	defs, err := s.cfg.Store.ListMCPServers(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	out := make([]mcpServerView, 0, len(defs))
	for _, d := range defs {
		out = append(out, viewMCPServer(d))
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"mcp_servers": out})
	return nil
}

// handleGetMCPServer shows one server, connecting to it to report its
// status and tool ids.
func (s *Server) handleGetMCPServer(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireToolAdmin(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	d, err := s.cfg.Store.GetMCPServer(r.Context(), ac.TenantID, name)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "MCP server %s is not registered in tenant %s", name, ac.TenantID)
	} else if err != nil {
		return err
	}
	v := viewMCPServer(d)
	ctx, cancel := context.WithTimeout(r.Context(), mcpListTimeout)
	defer cancel()
	list, err := s.mcp.Tools(ctx, d)
	if err != nil {
		e := errs.As(err)
		v.Status, v.Error = "unavailable", &errView{Code: string(e.Code), Message: e.Message}
	} else {
		v.Status, v.Tools = "available", []string{}
		for _, t := range list {
			v.Tools = append(v.Tools, t.Spec().ToolID)
		}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"mcp_server": v})
	return nil
}

// handleDeleteMCPServer unregisters a server and ends its session. Agents
// naming its tools keep the ids; their runs get not_found for them.
func (s *Server) handleDeleteMCPServer(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireToolAdmin(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	ctx := r.Context()
	d, err := s.cfg.Store.GetMCPServer(ctx, ac.TenantID, name)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "MCP server %s is not registered in tenant %s", name, ac.TenantID)
	} else if err != nil {
		return err
	}
	if d.Transport == store.MCPTransportStdio && !ac.HasRole(auth.RolePlatformAdmin) {
		return errs.E(errs.Forbidden, "MCP server %s runs a command on the node; only a platform_admin may delete it", name)
	}
	if err := s.cfg.Store.DeleteMCPServer(ctx, ac.TenantID, name); errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "MCP server %s is not registered in tenant %s", name, ac.TenantID)
	} else if err != nil {
		return err
	}
	s.mcp.Forget(ac.TenantID, name)
	s.audit(r, ac, ac.TenantID, "mcp_server.delete", "mcp-server/"+name, nil)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// resolveMCPTool finds the MCP tool id ("mcp.<server>.<tool>") of
// tenantID: the tenant's own server only, so another tenant's servers are
// never reached.
func (s *Server) resolveMCPTool(ctx context.Context, tenantID, toolID string) (tools.Tool, bool, error) {
	server, name, ok := mcptool.SplitToolID(toolID)
	if !ok {
		return nil, false, nil
	}
	def, err := s.cfg.Store.GetMCPServer(ctx, tenantID, server)
	switch {
	case errors.Is(err, errs.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, mcpListTimeout)
	defer cancel()
	t, found := s.mcp.Tool(ctx, def, name)
	return t, found, nil
}

// mcpToolDefs lists the tools of every MCP server of tenantID as registry
// entries (kind "mcp"), and the servers that could not be listed.
func (s *Server) mcpToolDefs(ctx context.Context, tenantID string) ([]store.ToolDef, []map[string]any, error) {
	defs, err := s.cfg.Store.ListMCPServers(ctx, tenantID)
	if err != nil {
		return nil, nil, err
	}
	out := []store.ToolDef{}
	unavailable := []map[string]any{}
	for _, d := range defs {
		lctx, cancel := context.WithTimeout(ctx, mcpListTimeout)
		list, err := s.mcp.Tools(lctx, d)
		cancel()
		if err != nil {
			e := errs.As(err)
			unavailable = append(unavailable, map[string]any{"name": d.Name, "code": e.Code, "message": e.Message})
			continue
		}
		for _, t := range list {
			sp := t.Spec()
			out = append(out, store.ToolDef{TenantID: tenantID, ToolID: sp.ToolID, Name: sp.Name, Description: sp.Description,
				InputSchema: sp.InputSchema, Kind: "mcp", URL: d.URL, Idempotent: sp.Idempotent,
				TimeoutMs: int(sp.DefaultTimeout.Milliseconds()), CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt})
		}
	}
	return out, unavailable, nil
}
