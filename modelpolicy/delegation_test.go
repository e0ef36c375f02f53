package modelpolicy

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nexixai/agentos/internal/store"
)

// A body principal other than the credential's is delegation: a
// tenant_service may act for a principal of its tenant (audited as the
// actor, on behalf of that principal), a tenant_user may not (403), and
// nobody but a platform_admin may name one of the platform's principals
// (400), in /v1/models:invoke and /v1/policy:check alike.
func TestBodyPrincipalDelegation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.addTenant(tenant("tnt_a"))
	invoke := func(principal string, hdr ...string) reply {
		body := chatBody("tnt_a", "tier:fast", []map[string]any{user("hello")}, nil)
		body["auth"].(map[string]any)["principal_id"] = principal
		return b.do("POST", "/v1/models:invoke", "tnt_a", body, hdr...)
	}
	check := func(principal string, hdr ...string) reply {
		return b.do("POST", "/v1/policy:check", "tnt_a", map[string]any{
			"auth":         map[string]any{"tenant_id": "tnt_a", "principal": map[string]any{"principal_id": principal}},
			"policy_check": map[string]any{"request_id": "req_1", "content": map[string]any{"type": "text", "text": "hi"}}}, hdr...)
	}
	svc := []string{"X-Test-Principal", "svc_backend", "X-Test-Roles", "tenant_service"}

	// tenant_user: itself is fine, anyone else is 403 naming the field.
	r := invoke("usr_alice", "X-Test-Principal", "usr_alice")
	require.Equal(t, 200, r.status, string(r.raw))
	r = invoke("usr_bob", "X-Test-Principal", "usr_alice")
	require.Equal(t, 403, r.status, string(r.raw))
	require.Equal(t, "auth.principal_id", dig(r.body, "error", "details", "field"))
	r = check("usr_bob", "X-Test-Principal", "usr_alice")
	require.Equal(t, 403, r.status, string(r.raw))
	require.Equal(t, "auth.principal.principal_id", dig(r.body, "error", "details", "field"))

	// tenant_service: on behalf of a tenant principal, not of the platform's.
	r = invoke("usr_bob", svc...)
	require.Equal(t, 200, r.status, string(r.raw))
	r = check("usr_bob", svc...)
	require.Equal(t, 200, r.status, string(r.raw))
	for _, reserved := range []string{"usr_platform_admin", "usr_bootstrap_admin", "USR_Platform_Admin", "svc_agentos_orchestrator", "sys_cron"} {
		r = invoke(reserved, svc...)
		require.Equal(t, 400, r.status, reserved+": "+string(r.raw))
		require.Equal(t, "invalid_request", errCode(r))
		require.Equal(t, "auth.principal_id", dig(r.body, "error", "details", "field"))
	}
	r = invoke("usr bob<script>", svc...)
	require.Equal(t, 400, r.status, string(r.raw))
	require.Equal(t, "auth.principal_id", dig(r.body, "error", "details", "field"))
	// A platform_admin may.
	r = invoke("usr_platform_admin", "X-Test-Principal", "usr_ops", "X-Test-Roles", "platform_admin")
	require.Equal(t, 200, r.status, string(r.raw))

	b.flush()
	aud, err := b.db.ListAudit(context.Background(), store.ListAuditParams{TenantID: "tnt_a"})
	require.NoError(t, err)
	type who struct{ actor, onBehalfOf, action string }
	var got []who
	for _, a := range aud {
		got = append(got, who{a.PrincipalID, a.OnBehalfOf, a.Action})
	}
	require.Equal(t, []who{
		{"usr_alice", "", "model.invoke"},
		{"svc_backend", "usr_bob", "model.invoke"},
		{"svc_backend", "usr_bob", "policy.check"},
		{"usr_ops", "usr_platform_admin", "model.invoke"},
	}, got, "refused calls write no record; delegated ones name both")
	// Usage is the principal's the call was made for.
	use, err := b.db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a", PrincipalID: "usr_bob"})
	require.NoError(t, err)
	require.Len(t, use, 1)
	require.Equal(t, "svc_backend", use[0].ActorID)
	own, err := b.db.ListUsage(context.Background(), store.UsageFilter{TenantID: "tnt_a", PrincipalID: "usr_alice"})
	require.NoError(t, err)
	require.Len(t, own, 1)
	require.Empty(t, own[0].ActorID, "an undelegated call has no separate actor")
}
