package store

import "slices"

// Allows reports whether an entitlement list allows v: "*" allows
// everything; otherwise v must be listed (an empty list allows nothing).
func Allows(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

// AllowsTool reports whether the tenant may use the tool with this id.
func (e Entitlements) AllowsTool(id string) bool { return Allows(e.ToolIDsAllowed, id) }

// AllowsTier reports whether the tenant may use this model tier.
func (e Entitlements) AllowsTier(tier string) bool { return Allows(e.ModelTiersAllowed, tier) }

// AllowsBackend reports whether the tenant may use this model backend.
func (e Entitlements) AllowsBackend(backend string) bool {
	return Allows(e.ModelBackendsAllowed, backend)
}
