package agentorchestrator

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nexixai/agentos/internal/auth"
	"github.com/nexixai/agentos/internal/errs"
	"github.com/nexixai/agentos/internal/httpx"
	"github.com/nexixai/agentos/internal/store"
	"github.com/nexixai/agentos/internal/store/storecache"
	"github.com/nexixai/agentos/internal/tenancy"
)

func (s *Server) registerAdminRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/admin/tenants", httpx.H(s.handleListTenants))
	mux.Handle("POST /v1/admin/tenants", httpx.H(s.handleCreateTenant))
	mux.Handle("GET /v1/admin/tenants/{tenant_id}", httpx.H(s.handleGetTenant))
	mux.Handle("PATCH /v1/admin/tenants/{tenant_id}", httpx.H(s.handlePatchTenant))
	mux.Handle("GET /v1/admin/tenants/{tenant_id}/tokens", httpx.H(s.handleListTokens))
	mux.Handle("POST /v1/admin/tenants/{tenant_id}/tokens", httpx.H(s.handleIssueToken))
	mux.Handle("DELETE /v1/admin/tenants/{tenant_id}/tokens/{token_id}", httpx.H(s.handleRevokeToken))
	mux.Handle("PUT /v1/admin/agents/{agent_id}", httpx.H(s.handlePutAgent))
	mux.Handle("GET /v1/admin/tools", httpx.H(s.handleListTools))
	mux.Handle("PUT /v1/admin/tools/{tool_id}", httpx.H(s.handlePutTool))
	mux.Handle("GET /v1/admin/tools/{tool_id}", httpx.H(s.handleGetTool))
	mux.Handle("DELETE /v1/admin/tools/{tool_id}", httpx.H(s.handleDeleteTool))
	mux.Handle("GET /v1/admin/mcp-servers", httpx.H(s.handleListMCPServers))
	mux.Handle("PUT /v1/admin/mcp-servers/{name}", httpx.H(s.handlePutMCPServer))
	mux.Handle("GET /v1/admin/mcp-servers/{name}", httpx.H(s.handleGetMCPServer))
	mux.Handle("DELETE /v1/admin/mcp-servers/{name}", httpx.H(s.handleDeleteMCPServer))
	mux.Handle("GET /v1/admin/audit", httpx.H(s.handleListAudit))
}

// requireAdmin returns the caller if it may administer tenantID. Another
// tenant's admin gets 404: it must not learn that the tenant exists.
func requireAdmin(r *http.Request, tenantID string) (auth.Context, error) {
	ac, err := auth.Require(r.Context(), auth.ScopeAdmin)
	if err != nil {
		return ac, err
	}
	if tenantID != "" && !ac.IsAdminOf(tenantID) {
		if ac.HasRole(auth.RoleTenantAdmin) {
			return ac, errs.E(errs.NotFound, "tenant %s not found", tenantID)
		}
		return ac, errs.E(errs.Forbidden, "administering tenant %s needs the platform_admin or its tenant_admin role", tenantID)
	}
	if tenantID == "" && !ac.HasRole(auth.RolePlatformAdmin) && !ac.HasRole(auth.RoleTenantAdmin) {
		return ac, errs.E(errs.Forbidden, "the admin API needs the platform_admin or tenant_admin role")
	}
	return ac, nil
}

// audit records an admin action that has been committed. A failure to
// record it does not undo the action or turn the answer into an error (the
// caller would retry a change that happened); the record is logged in full
// at error level instead, so it is not lost.
func (s *Server) audit(r *http.Request, ac auth.Context, tenantID, action, target string, details map[string]any) {
	rec := store.AuditRecord{TenantID: tenantID, PrincipalID: ac.ActorID(), OnBehalfOf: ac.OnBehalfOf(),
		Action: action, Target: target, Outcome: "ok", Details: details}
	if _, err := s.cfg.Audit.Record(r.Context(), rec); err != nil {
		s.log.ErrorContext(r.Context(), "audit record not stored", "err", err, "tenant_id", tenantID,
			"principal_id", rec.PrincipalID, "action", action, "target", target, "details", details)
	}
}

func (s *Server) handleListTenants(w http.ResponseWriter, r *http.Request) error {
	ac, err := requireAdmin(r, "")
	if err != nil {
		return err
	}
	var out []store.Tenant
	if ac.HasRole(auth.RolePlatformAdmin) {
		if out, err = s.cfg.Store.ListTenants(r.Context()); err != nil {
			return err
		}
	} else {
		t, err := s.cfg.Store.GetTenant(r.Context(), ac.TenantID)
		if err != nil {
			return err
		}
		out = []store.Tenant{t}
	}
	if out == nil {
		out = []store.Tenant{}
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"tenants": out})
	return nil
}

func (s *Server) handleCreateTenant(w http.ResponseWriter, r *http.Request) error {
	ac, err := auth.Require(r.Context(), auth.ScopeAdmin)
	if err != nil {
		return err
	}
	if !ac.HasRole(auth.RolePlatformAdmin) {
		return errs.E(errs.Forbidden, "creating tenants needs the platform_admin role")
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var wrapped struct {
		TenantCreate json.RawMessage `json:"tenant_create"`
	}
	if err := httpx.DecodeBytes(body, &wrapped); err != nil {
		return err
	}
	inner := body
	if len(wrapped.TenantCreate) > 0 && string(wrapped.TenantCreate) != "null" {
		inner = wrapped.TenantCreate
	}
	var head struct {
		TenantID string `json:"tenant_id"`
		Name     string `json:"name"`
	}
	if err := httpx.DecodeBytes(inner, &head); err != nil {
		return err
	}
	if head.TenantID == "" {
		return errs.Field("tenant_id", "is required")
	}
	if head.Name == "" {
		head.Name = head.TenantID
	}
	t, err := tenancy.MergePatch(tenancy.NewTenant(head.TenantID, head.Name, s.cfg.Node), inner)
	if err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	t.TenantID, t.CreatedAt, t.UpdatedAt = head.TenantID, now, now
	if err := tenancy.ValidateTenant(t); err != nil {
		return err
	}
	if err := s.cfg.Store.CreateTenant(r.Context(), t); errors.Is(err, errs.ErrConflict) {
		return errs.E(errs.Conflict, "tenant %s already exists", t.TenantID)
	} else if err != nil {
		return err
	}
	s.audit(r, ac, t.TenantID, "tenant.create", "tenant/"+t.TenantID, nil)
	w.Header().Set("Location", "/v1/admin/tenants/"+t.TenantID)
	httpx.JSON(w, r, http.StatusCreated, map[string]any{"tenant": t})
	return nil
}

func (s *Server) loadTenant(r *http.Request, id string) (store.Tenant, error) {
	t, err := s.cfg.Store.GetTenant(r.Context(), id)
	if errors.Is(err, errs.ErrNotFound) {
		return t, errs.E(errs.NotFound, "tenant %s not found", id)
	}
	return t, err
}

func (s *Server) handleGetTenant(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("tenant_id")
	if _, err := requireAdmin(r, id); err != nil {
		return err
	}
	t, err := s.loadTenant(r, id)
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"tenant": t})
	return nil
}

func (s *Server) handlePatchTenant(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("tenant_id")
	ac, err := requireAdmin(r, id)
	if err != nil {
		return err
	}
	if !ac.HasRole(auth.RolePlatformAdmin) {
		// A tenant admin may view its quotas but not raise them.
		return errs.E(errs.Forbidden, "changing a tenant needs the platform_admin role")
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	var probe map[string]json.RawMessage
	if err := httpx.DecodeBytes(body, &probe); err != nil {
		return err
	}
	if v, ok := probe["tenant_id"]; ok && strings.Trim(string(v), `"`) != id {
		return errs.Field("tenant_id", "cannot be changed")
	}
	// Read-modify-write from the stored tenant (not a cached copy), written
	// only if nobody changed it meanwhile; else the patch is applied again
	// to what they wrote, so concurrent patches never undo each other (a
	// rename racing a disable cannot re-enable the tenant).
	s.tenantPatchMu.Lock()
	defer s.tenantPatchMu.Unlock()
	var nt store.Tenant
	for attempt := 0; ; attempt++ {
		t, err := s.loadTenant(r.WithContext(storecache.Bypass(r.Context())), id)
		if err != nil {
			return err
		}
		if nt, err = tenancy.MergePatch(t, body); err != nil {
			return err
		}
		// Stores keep microseconds; every write must change updated_at.
		nt.TenantID, nt.CreatedAt = t.TenantID, t.CreatedAt
		nt.UpdatedAt = s.cfg.Now().UTC().Truncate(time.Microsecond)
		if !nt.UpdatedAt.After(t.UpdatedAt) {
			nt.UpdatedAt = t.UpdatedAt.Add(time.Microsecond)
		}
		if err := tenancy.ValidateTenant(nt); err != nil {
			return err
		}
		err = s.cfg.Store.UpdateTenant(r.Context(), nt, t.UpdatedAt)
		if err == nil {
			break
		}
		if !errors.Is(err, errs.ErrConflict) || attempt >= 10 {
			return err
		}
		time.Sleep(time.Duration(1+rand.IntN(10*(attempt+1))) * time.Millisecond) // another process is patching too
	}
	fields := make([]string, 0, len(probe))
	for k := range probe {
		fields = append(fields, k)
	}
	slices.Sort(fields)
	s.audit(r, ac, id, "tenant.update", "tenant/"+id, map[string]any{"fields": fields, "status": nt.Status})
	httpx.JSON(w, r, http.StatusOK, map[string]any{"tenant": nt})
	return nil
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("tenant_id")
	ac, err := requireAdmin(r, id)
	if err != nil {
		return err
	}
	if _, err := s.loadTenant(r, id); err != nil {
		return err
	}
	toks, err := s.visibleTokens(r, ac, id)
	if err != nil {
		return err
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"tokens": toks})
	return nil
}

// visibleTokens lists the tenant's tokens the caller may see and revoke: a
// tenant admin does not see platform_admin tokens (a platform admin's
// token can be homed in a customer tenant), so it can neither list nor
// revoke them, nor reuse their principal ids.
func (s *Server) visibleTokens(r *http.Request, ac auth.Context, tenantID string) ([]store.Token, error) {
	toks, err := s.cfg.Store.ListTokens(r.Context(), tenantID)
	if err != nil {
		return nil, err
	}
	out := []store.Token{}
	for _, t := range toks {
		if ac.HasRole(auth.RolePlatformAdmin) || !slices.Contains(t.Roles, auth.RolePlatformAdmin) {
			out = append(out, t)
		}
	}
	return out, nil
}

// platformPrincipal reports whether principalID holds a platform_admin
// token in the tenant.
func (s *Server) platformPrincipal(r *http.Request, tenantID, principalID string) (bool, error) {
	toks, err := s.cfg.Store.ListTokens(r.Context(), tenantID)
	if err != nil {
		return false, err
	}
	for _, t := range toks {
		if t.PrincipalID == principalID && slices.Contains(t.Roles, auth.RolePlatformAdmin) {
			return true, nil
		}
	}
	return false, nil
}

type tokenIssue struct {
	PrincipalID string     `json:"principal_id"`
	Scopes      []string   `json:"scopes"`
	Roles       []string   `json:"roles"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

func (s *Server) handleIssueToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("tenant_id")
	ac, err := requireAdmin(r, id)
	if err != nil {
		return err
	}
	var in tokenIssue
	if err := httpx.Decode(r, &in); err != nil {
		return err
	}
	if _, err := s.loadTenant(r, id); err != nil {
		return err
	}
	if !ac.HasRole(auth.RolePlatformAdmin) {
		if slices.Contains(in.Roles, auth.RolePlatformAdmin) {
			return errs.E(errs.Forbidden, "roles: only a platform_admin can grant platform_admin")
		}
		// Audit records name the token's principal: a tenant admin may not
		// act under the platform's names (in any tenant) nor under the
		// name of a platform admin homed in this tenant.
		if auth.ReservedPrincipal(in.PrincipalID) {
			return errs.Field("principal_id", "%q is reserved for the platform (usr_platform_admin, usr_bootstrap_admin, usr_agentos_probe and the prefixes %s); only a platform_admin may issue it",
				in.PrincipalID, strings.Join(auth.ReservedPrefixes, " "))
		}
		if taken, err := s.platformPrincipal(r, id, in.PrincipalID); err != nil {
			return err
		} else if taken {
			return errs.E(errs.Forbidden, "principal_id: %s is a platform admin's principal", in.PrincipalID).
				WithDetails(map[string]any{"field": "principal_id"})
		}
	}
	if len(in.Roles) == 0 {
		in.Roles = []string{auth.RoleTenantUser}
	}
	// Omitted (or null) scopes: the roles' defaults. An explicit empty
	// list would make a token that can do nothing, so it is refused.
	if in.Scopes == nil {
		if err := auth.ValidateRoles("roles", in.Roles); err != nil {
			return err
		}
		in.Scopes = auth.DefaultScopes(in.Roles)
	} else if len(in.Scopes) == 0 {
		return errs.Field("scopes", "an empty list grants nothing; omit scopes for the roles' defaults")
	}
	tok, secret, err := auth.IssueToken(r.Context(), s.cfg.Store, auth.IssueParams{TenantID: id, PrincipalID: in.PrincipalID,
		Scopes: in.Scopes, Roles: in.Roles, ExpiresAt: in.ExpiresAt, Now: s.cfg.Now()})
	if err != nil {
		return err
	}
	s.audit(r, ac, id, "token.issue", "token/"+tok.TokenID, map[string]any{"principal_id": tok.PrincipalID, "roles": tok.Roles})
	httpx.JSON(w, r, http.StatusCreated, map[string]any{"token": map[string]any{
		"token_id": tok.TokenID, "secret": secret, "principal_id": tok.PrincipalID, "scopes": tok.Scopes,
		"roles": tok.Roles, "created_at": tok.CreatedAt, "expires_at": tok.ExpiresAt}})
	return nil
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	id, tokID := r.PathValue("tenant_id"), r.PathValue("token_id")
	ac, err := requireAdmin(r, id)
	if err != nil {
		return err
	}
	if !ac.HasRole(auth.RolePlatformAdmin) {
		visible, err := s.visibleTokens(r, ac, id)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(visible, func(t store.Token) bool { return t.TokenID == tokID }) {
			return errs.E(errs.NotFound, "token %s not found in tenant %s", tokID, id)
		}
	}
	if err := s.cfg.Store.RevokeToken(r.Context(), id, tokID, s.cfg.Now().UTC()); errors.Is(err, errs.ErrNotFound) {
		return errs.E(errs.NotFound, "token %s not found in tenant %s", tokID, id)
	} else if err != nil {
		return err
	}
	s.audit(r, ac, id, "token.revoke", "token/"+tokID, nil)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleListAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	ac, err := requireAdmin(r, "")
	if err != nil {
		return err
	}
	p := store.ListAuditParams{TenantID: ac.TenantID, Limit: 100}
	if t := q.Get("tenant_id"); t != "" {
		if !ac.IsAdminOf(t) {
			return errs.E(errs.NotFound, "tenant %s not found", t)
		}
		p.TenantID = t
	} else if ac.HasRole(auth.RolePlatformAdmin) && q.Get("all") == "true" {
		p.TenantID = ""
	}
	if v := q.Get("after_seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errs.Field("after_seq", "must be a non-negative integer")
		}
		p.AfterSeq = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errs.Field("limit", "must be an integer between 1 and 1000")
		}
		p.Limit = n
	}
	recs, err := s.cfg.Store.ListAudit(r.Context(), p)
	if err != nil {
		return err
	}
	if recs == nil {
		recs = []store.AuditRecord{}
	}
	next := p.AfterSeq
	if len(recs) > 0 {
		next = recs[len(recs)-1].Seq
	}
	httpx.JSON(w, r, http.StatusOK, map[string]any{"records": recs, "next_after_seq": next})
	return nil
}
