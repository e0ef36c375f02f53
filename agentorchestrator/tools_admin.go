package agentorchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/config"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/tools"
	"github.com/nexixai/agentos/internal/tools/a2atool"
	"github.com/nexixai/agentos/internal/tools/builtin"
	"github.com/nexixai/agentos/internal/tools/mcptool"
	"github.com/nexixai/agentos/internal/tools/webhook"
)

// Limits of a registered tool (PUT /v1/admin/tools/{tool_id}).
const (
	minToolSecret      = 16
	maxToolSecret      = 512
	maxToolURL         = 2048
	maxToolDescription = 4096
	maxToolTimeoutMs   = 300000
	defaultToolTimeMs  = 30000
)

var (
	toolIDRE   = regexp.MustCompile(`^tool\.[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$`)
	toolNameRE = regexp.MustCompile(`^[A-Za-z0-9_\-]{1,64}$`)
)

// defaultWebhookClient is the client of webhook tools when Config sets
// none: the SSRF guard of tool.http.fetch with the node's allowlist.
func defaultWebhookClient(node config.Config) (*http.Client, error) {
	allow, err := builtin.ParseAllow(node.HTTPFetchAllow)
	if err != nil {
		return nil, err
	}
	return builtin.GuardedClient(builtin.HTTPFetchConfig{Allow: allow}), nil
}

// resolveTool finds the tool toolID for a run or agent of tenantID: a
// builtin of the node's registry first, else a tool the tenant registered
// (invoked through its webhook). found=false when neither exists; err only
// when the store could not be read.
func (s *Server) resolveTool(ctx context.Context, tenantID, toolID string) (tools.Tool, bool, error) {
	if t, ok := s.cfg.Tools.Get(toolID); ok {
		return t, true, nil
	}
	if strings.HasPrefix(toolID, mcptool.IDPrefix) {
		return s.resolveMCPTool(ctx, tenantID, toolID)
	}
	if !strings.HasPrefix(toolID, tools.IDPrefix) {
		return nil, false, nil
	}
	def, err := s.cfg.Store.GetTool(ctx, tenantID, toolID)
	switch {
	case errors.Is(err, errs.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	case def.Kind == a2atool.Kind:
		// A remote A2A agent, through the same SSRF-guarded client.
		return a2atool.New(def, s.cfg.WebhookClient), true, nil
	case def.Kind != store.ToolKindWebhook:
		return nil, false, nil
	}
	return webhook.New(def, s.cfg.WebhookClient), true, nil
}

// knownToolIDs lists the builtin tool ids and those tenantID registered,
// sorted (for error messages).
func (s *Server) knownToolIDs(ctx context.Context, tenantID string) []string {
	known := s.cfg.Tools.IDs()
	if defs, err := s.cfg.Store.ListTools(ctx, tenantID); err == nil {
		for _, d := range defs {
			known = append(known, d.ToolID)
		}
	}
	if defs, err := s.cfg.Store.ListMCPServers(ctx, tenantID); err == nil {
		for _, d := range defs {
			known = append(known, mcptool.ToolID(d.Name, "*"))
		}
	}
	sort.Strings(known)
	return known
}

// toolPut is the body of PUT /v1/admin/tools/{tool_id}.
type toolPut struct {
	ToolID      string          `json:"tool_id"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
	Kind        string          `json:"kind"`
	URL         string          `json:"url"`
	Secret      string          `json:"secret"`
	Idempotent  bool            `json:"idempotent"`
	TimeoutMs   int             `json:"timeout_ms"`
	// RequiresApproval: every call waits for a person (approval.go).
	RequiresApproval bool `json:"requires_approval"`
}

// requireToolAdmin returns the caller if it may register tools in its
// tenant (a platform admin names the tenant with X-Tenant-Id).
func requireToolAdmin(r *http.Request) (auth.Context, error) {
	ac, err := requireTenant(r.Context(), auth.ScopeAdmin)
	if err != nil {
		return ac, err
	}
	if !ac.IsAdminOf(ac.TenantID) {
		return ac, errs.E(errs.Forbidden, "registering tools needs the tenant_admin or platform_admin role")
	}
	return ac, nil
}

// checkToolID validates a tool id from the path: format, then no collision
// with a builtin (conflict).
func (s *Server) checkToolID(id string) error {
	if !toolIDRE.MatchString(id) {
		return errs.Field("tool_id", "must start with %q followed by 1-128 letters, digits, _ . - (got %q)", tools.IDPrefix, id)
	}
	if _, ok := s.cfg.Tools.Get(id); ok {
		return errs.E(errs.Conflict, "tool_id: %s is a builtin tool of this node; choose another id", id).
			WithDetails(map[string]any{"field": "tool_id"})
	}
	return nil
}

// validateTool turns a request into a definition. prev is the tool being
// replaced (nil on create): its secret is kept when the request sets none.
func validateTool(id, tenantID string, in *toolPut, prev *store.ToolDef) (store.ToolDef, error) {
	d := store.ToolDef{TenantID: tenantID, ToolID: id, Name: strings.TrimSpace(in.Name),
		Description: strings.TrimSpace(in.Description), InputSchema: in.InputSchema, Kind: in.Kind,
		URL: strings.TrimSpace(in.URL), Secret: in.Secret, Idempotent: in.Idempotent, TimeoutMs: in.TimeoutMs,
		RequiresApproval: in.RequiresApproval}
	if in.ToolID != "" && in.ToolID != id {
		return d, errs.Field("tool.tool_id", "must match the path's tool_id %q, got %q", id, in.ToolID)
	}
	if d.Name == "" {
		return d, errs.Field("tool.name", "is required")
	}
	if !toolNameRE.MatchString(d.Name) {
		return d, errs.Field("tool.name", "must be 1-64 letters, digits, _ or - (models see it as a function name)")
	}
	if d.Description == "" {
		return d, errs.Field("tool.description", "is required (the model reads it to decide when to call the tool)")
	}
	if utf8.RuneCountInString(d.Description) > maxToolDescription {
		return d, errs.Field("tool.description", "must be at most %d characters", maxToolDescription)
	}
	if d.Kind == a2atool.Kind && len(bytes.TrimSpace(d.InputSchema)) == 0 {
		d.InputSchema = a2atool.DefaultInputSchema
	}
	if err := tools.CheckSchema(d.InputSchema); err != nil {
		return d, errs.Field("tool.input_schema", "%s", err.Error())
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, d.InputSchema); err != nil {
		return d, errs.Field("tool.input_schema", "%v", err)
	}
	d.InputSchema = json.RawMessage(compact.Bytes())
	switch d.Kind {
	case "":
		d.Kind = store.ToolKindWebhook
	case store.ToolKindWebhook, a2atool.Kind:
	default:
		return d, errs.Field("tool.kind", "must be %q or %q, got %q", store.ToolKindWebhook, a2atool.Kind, d.Kind)
	}
	if err := checkWebhookURL(d.URL); err != nil {
		return d, err
	}
	if d.Secret == "" && prev != nil {
		d.Secret = prev.Secret
	}
	switch n := len(d.Secret); {
	case n == 0 && d.Kind == a2atool.Kind:
		// An A2A tool's secret is the remote's bearer token: optional.
	case n == 0:
		return d, errs.Field("tool.secret", "is required: the webhook verifies every call's HMAC-SHA256 signature with it")
	case n < minToolSecret || n > maxToolSecret:
		return d, errs.Field("tool.secret", "must be %d to %d characters", minToolSecret, maxToolSecret)
	}
	if d.TimeoutMs == 0 {
		d.TimeoutMs = defaultToolTimeMs
	}
	if d.TimeoutMs < 1 || d.TimeoutMs > maxToolTimeoutMs {
		return d, errs.Field("tool.timeout_ms", "must be between 1 and %d", maxToolTimeoutMs)
	}
	spec := webhook.New(d, nil).Spec()
	if d.Kind == a2atool.Kind {
		spec = a2atool.New(d, nil).Spec()
	}
	if err := tools.CheckSpec(spec); err != nil {
		return d, err
	}
	return d, nil
}

// checkWebhookURL accepts absolute http and https URLs with a host and
// without credentials. Where the URL may lead is checked again on every
// call by the SSRF guard (AGENTOS_HTTP_FETCH_ALLOW).
func checkWebhookURL(raw string) error {
	if raw == "" {
		return errs.Field("tool.url", "is required")
	}
	if len(raw) > maxToolURL {
		return errs.Field("tool.url", "must be at most %d characters", maxToolURL)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errs.Field("tool.url", "is not a valid URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return errs.Field("tool.url", "must be an http or https URL, got scheme %q", u.Scheme)
	case u.Hostname() == "":
		return errs.Field("tool.url", "must name a host")
	case u.User != nil:
		return errs.Field("tool.url", "must not carry credentials; the call is authenticated by its signature")
	case u.Fragment != "":
		return errs.Field("tool.url", "must not have a fragment")
	}
	return nil
}

// handlePutTool registers a tool for the caller's tenant (201) or replaces
// it (200).
func (s *Server) handlePutTool(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireToolAdmin(r)
	if err != nil {
		return err
	}
	id := r.PathValue("tool_id")
	if err := s.checkToolID(id); err != nil {
		return err
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var wrapped struct {
		Tool *toolPut `json:"tool"`
	}
	if err := httpx.DecodeBytes(body, &wrapped); err != nil {
		return err
	}
	in := wrapped.Tool
	if in == nil {
		in = &toolPut{}
		if err := httpx.DecodeBytes(body, in); err != nil {
			return err
		}
	}
	ctx := r.Context()
	var prev *store.ToolDef
	old, err := s.cfg.Store.GetTool(ctx, ac.TenantID, id)
	switch {
	case err == nil:
		prev = &old
	case !errors.Is(err, errs.ErrNotFound):
		return err
	}
	d, err := validateTool(id, ac.TenantID, in, prev)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond) // what the store keeps
	status := http.StatusCreated
	d.CreatedAt, d.UpdatedAt = now, now
	if prev != nil {
		status = http.StatusOK
		d.CreatedAt = prev.CreatedAt
	}
	if err := s.cfg.Store.PutTool(ctx, d); err != nil {
		return err
	}
	details := map[string]any{"kind": d.Kind, "url": d.URL, "created": prev == nil,
		"secret_changed": prev == nil || prev.Secret != d.Secret}
	s.audit(r, ac, ac.TenantID, "tool.put", "tool/"+id, details)
	httpx.JSON(w, r, status, map[string]any{"tool": d})
	return nil
}

// handleListTools lists the tools the caller's tenant registered and the
// tools of its MCP servers (kind "mcp", listed from each server; servers
// that could not be reached are named in mcp_servers_unavailable).
// Builtins are not listed; secrets never are.
func (s *Server) handleListTools(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireToolAdmin(r)
	if err != nil {
		return err
	}
	defs, err := s.cfg.Store.ListTools(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	if defs == nil {
		defs = []store.ToolDef{}
	}
	mcpDefs, unavailable, err := s.mcpToolDefs(r.Context(), ac.TenantID)
	if err != nil {
		return err
	}
	defs = append(defs, mcpDefs...)
	httpx.JSON(w, r, http.StatusOK, map[string]any{"tools": defs, "mcp_servers_unavailable": unavailable})
	return nil
}

func (s *Server) handleGetTool(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireToolAdmin(r)
	if err != nil {
		return err
	}
	id := r.PathValue("tool_id")
	d, err := s.cfg.Store.GetTool(r.Context(), ac.TenantID, id)
	if errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "tool %s is not registered in tenant %s", id, ac.TenantID)
	} else if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"tool": d})
	return nil
}

// handleDeleteTool unregisters a tool. Agents naming it keep the id; their
// runs get not_found for it until it is registered again.
func (s *Server) handleDeleteTool(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireToolAdmin(r)
	if err != nil {
		return err
	}
	id := r.PathValue("tool_id")
	if err := s.cfg.Store.DeleteTool(r.Context(), ac.TenantID, id); errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "tool %s is not registered in tenant %s", id, ac.TenantID)
	} else if err != nil {
		return err
	}
	s.audit(r, ac, ac.TenantID, "tool.delete", "tool/"+id, nil)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// toolFieldError names an agent's tool that cannot be used.
func toolFieldError(i int, format string, args ...any) error {
	return errs.Field(fmt.Sprintf("agent.tools[%d]", i), format, args...)
}
