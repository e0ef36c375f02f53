package auth

import (
	"slices"
	"strings"
)

// Principals the platform itself uses. No tenant admin may issue a token
// for one of them (or for any name under ReservedPrefixes), a demo header
// caller may not claim one, a peer stack may not send one as an identity
// token's sub, and only a platform_admin may name one in a request body's
// auth object: audit records name these principals, so whoever could
// take their name could act in the platform's name.
const (
	// PlatformAdminPrincipalID is the platform admin that `agentos up`
	// provisions (tenancy seeds its token).
	PlatformAdminPrincipalID = "usr_platform_admin"
	// OrchestratorPrincipalID is the agent orchestrator acting for a run's
	// principal: the actor of the model-policy calls a run makes.
	OrchestratorPrincipalID = "svc_agentos_orchestrator"
	// ValidateProbePrincipalID is `agentos validate`'s probe principal.
	ValidateProbePrincipalID = "usr_agentos_probe"
)

// ReservedPrefixes start principal ids kept for the platform, now and for
// principals it adds later: usr_platform_*, svc_agentos_*, svc_platform_*,
// agentos_* and sys_*.
var ReservedPrefixes = []string{"usr_platform_", "svc_agentos_", "svc_platform_", "agentos_", "sys_"}

// reservedPrincipals are the reserved principal ids outside ReservedPrefixes.
//
// AnonymousPrincipalID is not reserved: it names no one in particular (every
// demo header caller without X-Principal-Id is it), so a token or a peer
// naming it gains nothing.
var reservedPrincipals = []string{BootstrapPrincipalID, ValidateProbePrincipalID}

// ReservedPrincipal reports whether id is one of the platform's principals
// (see the constants above and ReservedPrefixes). Case is ignored, so a
// look-alike such as USR_Platform_Admin is reserved too.
func ReservedPrincipal(id string) bool {
	l := strings.ToLower(id)
	if slices.Contains(reservedPrincipals, l) {
		return true
	}
	for _, p := range ReservedPrefixes {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// ValidPrincipalID reports whether id has the shape of a principal id
// (1-128 of A-Z a-z 0-9 _ . : -), as token issue requires.
func ValidPrincipalID(id string) bool { return tenantHeaderRE.MatchString(id) }

// Default scopes of a token issued without "scopes", by role. A token
// holding several roles gets the union.
var (
	// DefaultUserScopes: what a demo header caller gets (HeaderUserScopes).
	DefaultUserScopes = HeaderUserScopes
	// DefaultServiceScopes: a tenant's backend service: the user scopes
	// (runs, agents:read, tools, memory, models:invoke, models:list,
	// policy:check, events:read) plus runs:forward.
	DefaultServiceScopes = append(slices.Clone(HeaderUserScopes), ScopeRunsForward)
	// DefaultTenantAdminScopes: the user scopes plus agents:write and admin.
	DefaultTenantAdminScopes = append(slices.Clone(HeaderUserScopes), ScopeAgentsWrite, ScopeAdmin)
	// DefaultPlatformAdminScopes: every scope.
	DefaultPlatformAdminScopes = AllScopes
)

// DefaultScopes returns the union of the default scopes of roles, in
// AllScopes order.
func DefaultScopes(roles []string) []string {
	var want []string
	for _, r := range roles {
		switch r {
		case RoleTenantUser:
			want = append(want, DefaultUserScopes...)
		case RoleTenantService:
			want = append(want, DefaultServiceScopes...)
		case RoleTenantAdmin:
			want = append(want, DefaultTenantAdminScopes...)
		case RolePlatformAdmin:
			want = append(want, DefaultPlatformAdminScopes...)
		}
	}
	out := []string{}
	for _, s := range AllScopes {
		if slices.Contains(want, s) {
			out = append(out, s)
		}
	}
	return out
}

// MayActOnBehalf reports whether c's roles allow it to name another
// principal of its tenant in a request body's auth object (delegation):
// tenant_service and platform_admin may; tenant_user and tenant_admin act
// only as themselves.
func (c Context) MayActOnBehalf() bool {
	return c.HasRole(RoleTenantService) || c.HasRole(RolePlatformAdmin)
}

// ActorID is the principal that authenticated: Actor when c acts on
// behalf of Principal, else Principal.
func (c Context) ActorID() string {
	if c.Actor != "" {
		return c.Actor
	}
	return c.Principal.PrincipalID
}

// OnBehalfOf is the principal c acts for when that is not who
// authenticated, else "".
func (c Context) OnBehalfOf() string {
	if c.Actor != "" && c.Actor != c.Principal.PrincipalID {
		return c.Principal.PrincipalID
	}
	return ""
}
