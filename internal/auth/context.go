// Package auth turns credentials into an Auth Context (CONTRACT §3): JWTs
// verified against configured keys, opaque API tokens stored as hashes, and
// (demo/dev only) X-Tenant-Id headers. Every request runs in exactly one tenant.
package auth

import (
	"context"
	"slices"
)

// Scopes (CONTRACT §3).
const (
	ScopeRunsCreate   = "runs:create"
	ScopeRunsRead     = "runs:read"
	ScopeRunsCancel   = "runs:cancel"
	ScopeAgentsRead   = "agents:read"
	ScopeAgentsWrite  = "agents:write"
	ScopeToolsInvoke  = "tools:invoke"
	ScopeMemoryRead   = "memory:read"
	ScopeMemoryWrite  = "memory:write"
	ScopeModelsInvoke = "models:invoke"
	ScopeModelsList   = "models:list"
	ScopePolicyCheck  = "policy:check"
	ScopeRunsForward  = "runs:forward"
	ScopeEventsRead   = "events:read"
	ScopeEventsIngest = "events:ingest"
	ScopeAdmin        = "admin"
)

// AllScopes lists every scope.
var AllScopes = []string{ScopeRunsCreate, ScopeRunsRead, ScopeRunsCancel, ScopeAgentsRead,
	ScopeAgentsWrite, ScopeToolsInvoke, ScopeMemoryRead, ScopeMemoryWrite, ScopeModelsInvoke,
	ScopeModelsList, ScopePolicyCheck, ScopeRunsForward, ScopeEventsRead, ScopeEventsIngest, ScopeAdmin}

// HeaderUserScopes are the scopes of a demo/dev X-Tenant-Id caller: a
// tenant_user with the run, agent-read, tool, memory, model, policy and
// event scopes. events:ingest is among them because the original
// implementation's federation e2e script ingests its own tenant's events
// with header credentials; the ingest still only accepts events of the
// caller's tenant.
var HeaderUserScopes = []string{ScopeRunsCreate, ScopeRunsRead, ScopeRunsCancel, ScopeAgentsRead,
	ScopeToolsInvoke, ScopeMemoryRead, ScopeMemoryWrite, ScopeModelsInvoke, ScopeModelsList,
	ScopePolicyCheck, ScopeEventsRead, ScopeEventsIngest}

// Roles (CONTRACT §3).
const (
	RolePlatformAdmin = "platform_admin"
	RoleTenantAdmin   = "tenant_admin"
	RoleTenantUser    = "tenant_user"
	RoleTenantService = "tenant_service"
)

// Credential kinds, recorded in Context.Method.
const (
	MethodJWT    = "jwt"
	MethodToken  = "api_token"
	MethodHeader = "header"
)

// Principal is who is calling.
type Principal struct {
	PrincipalID   string `json:"principal_id"`
	PrincipalType string `json:"principal_type"` // user | service
	DisplayName   string `json:"display_name,omitempty"`
}

// PolicyContext carries data-handling context for policy decisions.
type PolicyContext struct {
	DataClassification string   `json:"data_classification,omitempty"`
	Region             string   `json:"region,omitempty"`
	Purpose            string   `json:"purpose,omitempty"`
	ConsentTags        []string `json:"consent_tags,omitempty"`
}

// Context is the Auth Context carried on every port call and in
// model-policy / federation bodies.
type Context struct {
	TenantID      string         `json:"tenant_id"`
	Principal     Principal      `json:"principal"`
	Scopes        []string       `json:"scopes"`
	Roles         []string       `json:"roles"`
	Session       map[string]any `json:"session,omitempty"`
	PolicyContext PolicyContext  `json:"policy_context"`
	// Method is how the caller authenticated (not sent on the wire).
	Method string `json:"-"`
	// Actor is the principal that authenticated when it acts on behalf of
	// Principal (a node token's "act" claim, or a delegating service that
	// named Principal in a body's auth object); "" when Principal itself
	// authenticated. Audit records name Actor as the principal and
	// Principal as on_behalf_of. Not sent on the wire.
	Actor string `json:"-"`
}

// HasRole reports whether c holds role.
func (c Context) HasRole(role string) bool { return slices.Contains(c.Roles, role) }

// HasScope reports whether c holds scope. A platform_admin, or a holder of
// the admin scope, holds every scope.
func (c Context) HasScope(scope string) bool {
	return c.HasRole(RolePlatformAdmin) || slices.Contains(c.Scopes, ScopeAdmin) || slices.Contains(c.Scopes, scope)
}

// IsAdminOf reports whether c may administer tenantID.
func (c Context) IsAdminOf(tenantID string) bool {
	if c.HasRole(RolePlatformAdmin) {
		return true
	}
	return c.HasRole(RoleTenantAdmin) && c.TenantID == tenantID
}

type ctxKey struct{}

// With returns ctx carrying c.
func With(ctx context.Context, c Context) context.Context { return context.WithValue(ctx, ctxKey{}, c) }

// From returns the Auth Context of ctx.
func From(ctx context.Context) (Context, bool) {
	c, ok := ctx.Value(ctxKey{}).(Context)
	return c, ok
}
