package auth

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReservedPrincipal(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"usr_platform_admin", "usr_bootstrap_admin", "usr_agentos_probe",
		"USR_Platform_Admin", "usr_platform_ops", "svc_agentos_orchestrator", "svc_agentos_x", "svc_platform_billing",
		"agentos_node", "sys_cron"} {
		require.True(t, ReservedPrincipal(id), id)
	}
	for _, id := range []string{"usr_anonymous", "usr_alice", "usr_tnt_demo_admin", "svc_backend", "usr_platformer", "system", "usr_sys_x"} {
		require.False(t, ReservedPrincipal(id), id)
	}
}

func TestDefaultScopes(t *testing.T) {
	t.Parallel()
	require.Equal(t, HeaderUserScopes, DefaultScopes([]string{RoleTenantUser}))
	svc := DefaultScopes([]string{RoleTenantService})
	require.Contains(t, svc, ScopeModelsInvoke)
	require.Contains(t, svc, ScopeRunsCreate)
	require.Contains(t, svc, ScopeRunsForward)
	require.NotContains(t, svc, ScopeAdmin)
	adm := DefaultScopes([]string{RoleTenantAdmin})
	require.Contains(t, adm, ScopeAdmin)
	require.Contains(t, adm, ScopeAgentsWrite)
	require.Equal(t, AllScopes, DefaultScopes([]string{RolePlatformAdmin}))
	// A union, in AllScopes order, without repeats.
	both := DefaultScopes([]string{RoleTenantUser, RoleTenantService})
	require.Equal(t, svc, both)
	require.Empty(t, DefaultScopes(nil))
	require.NotNil(t, DefaultScopes(nil))
}

// A demo header caller may not claim a platform principal.
func TestHeaderPrincipalReserved(t *testing.T) {
	t.Parallel()
	a := setup(t, ModeDemo).auth
	_, err := a.Authenticate(req(HeaderTenantID, "tnt_a", HeaderPrincipalID, "usr_platform_admin"))
	require.ErrorContains(t, err, "X-Principal-Id")
	ac, err := a.Authenticate(req(HeaderTenantID, "tnt_a", HeaderPrincipalID, "usr_alice"))
	require.NoError(t, err)
	require.Equal(t, "usr_alice", ac.Principal.PrincipalID)
}
